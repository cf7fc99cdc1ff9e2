//! `Stack`: the whole test environment (slapd, redis, LemonLDAP::NG, our server) started from
//! configurations generated in a temporary directory, on free loopback ports, and stopped when
//! dropped. `Stack::builder().start().await` is all a test needs.

pub mod containers;
pub mod gateway;
pub mod keycloak;
mod llng;
pub mod pki;
pub mod ports;
pub mod process;
pub mod provider;
pub mod redis;
pub mod server;
pub mod slapd;
pub mod wait;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use mail_oidc_server::config::Config;
use rand::Rng;
use rand::distr::Alphanumeric;
use tempfile::TempDir;

use self::gateway::{Gateway, GatewaySettings};
use self::keycloak::KeycloakRealm;
use self::llng::{Llng, issuer_for_port};
use self::ports::free_port;
use self::process::{ChildProcess, tail_file};
pub use self::provider::Idp;
use self::provider::Provider;
pub use self::server::ServerHandle;
use crate::idp::IdpSettings;
use crate::keys::RsaKeyPair;
use crate::realm::{Realm, RealmUser, ldap_attributes};
use crate::suites::{Account, IdpTarget, MailTarget};
use crate::tokens::TokenForge;

/// Lines of each log printed when a test fails.
const FAILURE_LOG_LINES: usize = 80;
/// Audience of forged tokens: the realm's main client.
const FORGE_AUDIENCE: &str = "mail-oidc";

/// Where the services run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// Containers when an engine answers and every image is present, else native; the choice
    /// and its reason are logged.
    #[default]
    Auto,
    /// Local processes (slapd, redis-server, the IdP, Apache, the server binary).
    Native,
    /// Official images under testcontainers (Keycloak, OpenLDAP, Redis, APISIX, the server).
    Containers,
}

/// Every address a client or test needs.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// IMAP with STARTTLS.
    pub imap: SocketAddr,
    /// IMAP over implicit TLS.
    pub imaps: SocketAddr,
    /// Submission with STARTTLS.
    pub submission: SocketAddr,
    /// Submission over implicit TLS.
    pub submissions: SocketAddr,
    /// Inbound SMTP (no AUTH).
    pub smtp: SocketAddr,
    /// POP3 with STLS.
    pub pop3: SocketAddr,
    /// POP3 over implicit TLS.
    pub pop3s: SocketAddr,
    /// ManageSieve with STARTTLS (RFC 5804).
    pub sieve: SocketAddr,
    /// The server's own HTTP listener (JMAP; Basic, Bearer and gateway-asserted X-User).
    pub http: SocketAddr,
    /// `http://127.0.0.1:<port>/.well-known/jmap` on the server itself ("" without HTTP).
    pub jmap_session: String,
    /// Base URL of the OIDC gateway, `https://127.0.0.1:<port>` ("" without one), certificate
    /// from [`Endpoints::ca_cert`]: token-checked routes under `/oidc/` (e.g.
    /// `/oidc/.well-known/jmap`), pass-through routes at the root.
    pub gateway: String,
    /// The server's back-channel logout receiver, registered for every client at the IdP
    /// ("" without a server).
    pub backchannel_logout_url: String,
    /// The secret the gateway sends the server in `http.auth.x_user_secret_header`.
    pub x_user_secret: String,
    /// `http://localhost:<port>` (LemonLDAP::NG needs a host under its cookie domain).
    pub issuer: String,
    pub discovery_url: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub authorization_endpoint: String,
    pub introspection_endpoint: String,
    /// RP-initiated logout (`id_token_hint`), if the IdP has one.
    pub end_session_endpoint: Option<String>,
    /// What a browser visits (with its SSO cookie) to log out at the IdP.
    pub logout_url: String,
    /// `ldap://127.0.0.1:<port>`.
    pub ldap_url: String,
    /// `redis://127.0.0.1:<port>` (LemonLDAP::NG's sessions use databases 0 and 1).
    pub redis_url: String,
    /// PEM file of the CA that signed the server's certificate.
    pub ca_cert: PathBuf,
    pub ca_pem: String,
}

/// A user created for one test; unique per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestUser {
    pub uid: String,
    pub mail: String,
    pub password: String,
}

impl TestUser {
    pub fn account(&self) -> Account {
        Account {
            mail: self.mail.clone(),
            password: self.password.clone(),
        }
    }
}

type ConfigEdit = Box<dyn FnOnce(&mut Config) + Send>;

/// Configures and starts a [`Stack`].
#[must_use]
pub struct StackBuilder {
    backend: Backend,
    idp: Idp,
    /// A Keycloak of its own (the demo) rather than a realm in the shared one (tests).
    dedicated_idp: bool,
    realm: Realm,
    edits: Vec<ConfigEdit>,
    with_server: bool,
    profile: server::Profile,
}

impl std::fmt::Debug for StackBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackBuilder")
            .field("backend", &self.backend)
            .field("with_server", &self.with_server)
            .field("profile", &self.profile)
            .field("server_config_edits", &self.edits.len())
            .finish()
    }
}

impl StackBuilder {
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The identity provider (LemonLDAP::NG by default). With Keycloak, every stack of the
    /// process gets a realm of one shared Keycloak unless [`StackBuilder::dedicated_idp`].
    pub fn idp(mut self, idp: Idp) -> Self {
        self.idp = idp;
        self
    }

    /// A Keycloak of the stack's own, with the realm imported at start (the demo).
    pub fn dedicated_idp(mut self) -> Self {
        self.dedicated_idp = true;
        self
    }

    /// Another realm than [`Realm::demo`]. The forge's audience stays `mail-oidc`.
    pub fn realm(mut self, realm: Realm) -> Self {
        self.realm = realm;
        self
    }

    /// The demo's server settings (`mail-oidc up`): the server's documented defaults and the
    /// gateway's HTTPS URL as `http.public_url`, instead of the test stacks' relaxed ones
    /// (see [`server::Profile`]).
    pub fn demo(mut self) -> Self {
        self.profile = server::Profile::Demo;
        self
    }

    /// The server settings [`StackBuilder::start`] will use.
    pub fn profile(&self) -> server::Profile {
        self.profile
    }

    /// Edits the base server configuration before the server starts (calls compose in order).
    pub fn server_config(mut self, edit: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// Skips our server (IdP, LDAP and Redis only, e.g. to test another mail server). The
    /// server endpoints are then `0.0.0.0:0`.
    pub fn without_server(mut self) -> Self {
        self.with_server = false;
        self
    }

    pub async fn start(self) -> anyhow::Result<Stack> {
        // Keys, the gateway's secret and passwords are written below; the services inherit it.
        crate::private::restrict_umask();
        match self.backend {
            Backend::Native => Stack::start_native(self).await,
            Backend::Containers => Stack::start_containers(self).await,
            // Containers run Keycloak only: LemonLDAP::NG is always native.
            Backend::Auto if self.idp == Idp::LemonLdap => Stack::start_native(self).await,
            Backend::Auto => match containers::unavailable().await {
                None => {
                    tracing::info!(
                        "backend: containers (an engine answers, every image is present)"
                    );
                    Stack::start_containers(self).await
                }
                Some(why) => {
                    tracing::info!(%why, "backend: native");
                    Stack::start_native(self).await
                }
            },
        }
    }
}

/// IdP state shared by `forge()` (sync) and the async IdP operations.
/// A stack's own temporary directory (removed when the stack drops).
fn stack_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("mail-oidc-stack-")
        .tempdir()
        .context("creating the stack's temporary directory")
}

struct SigningState {
    key: RsaKeyPair,
    kid: String,
}

impl SigningState {
    fn of(provider: &Provider) -> Self {
        Self {
            key: provider.key().clone(),
            kid: provider.kid().to_string(),
        }
    }
}

/// The running environment. Dropping it stops every process (and prints their logs if the
/// thread is panicking, i.e. a test failed).
pub struct Stack {
    // Drop order matters: the gateway and the server first, the temp dir (configs, data, logs)
    // last.
    gateway: Option<Gateway>,
    server: Option<ServerHandle>,
    idp: tokio::sync::Mutex<Provider>,
    idp_kind: Idp,
    redis: tokio::sync::Mutex<Option<ChildProcess>>,
    /// The native Redis's ACL users (none for containers).
    redis_acl: Option<redis::RedisAcl>,
    slapd: Option<ChildProcess>,
    /// The containers of `Backend::Containers` (none natively).
    containers: Option<containers::Running>,
    endpoints: Endpoints,
    realm: Realm,
    base_config: Config,
    signing: Mutex<SigningState>,
    server_binary: Option<PathBuf>,
    extra_servers: AtomicUsize,
    start_duration: Duration,
    dir: TempDir,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("endpoints", &self.endpoints)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// Random ASCII letters and digits.
pub(crate) fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// An HTTP client for probing the IdP: no proxy (loopback), short timeouts.
fn probe_client() -> anyhow::Result<reqwest::Client> {
    mail_oidc_server::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")
}

/// `http.gateway_public_url` of a stack whose gateway listens on `port`.
fn gateway_url_for_port(port: u16) -> String {
    format!("https://127.0.0.1:{port}{}", gateway::OIDC_PREFIX)
}

fn discovery_url_of(issuer: &str) -> String {
    format!("{issuer}/.well-known/openid-configuration")
}

fn unbound() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
}

impl Stack {
    pub fn builder() -> StackBuilder {
        StackBuilder {
            backend: Backend::Auto,
            idp: Idp::default(),
            dedicated_idp: false,
            realm: Realm::demo(),
            edits: Vec::new(),
            with_server: true,
            profile: server::Profile::Tests,
        }
    }

    /// `Backend::Containers`: Keycloak, OpenLDAP, Redis, APISIX and the server as containers.
    async fn start_containers(builder: StackBuilder) -> anyhow::Result<Stack> {
        anyhow::ensure!(
            builder.idp == Idp::Keycloak,
            "the containers backend runs Keycloak; LemonLDAP::NG runs natively"
        );
        let started = Instant::now();
        let http = probe_client()?;
        let dir = stack_dir()?;
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("logs"))?;
        let server_binary = server::find_binary()?;
        let pki_dir = root.join("pki");
        let pki = tokio::task::spawn_blocking(move || pki::generate(&pki_dir))
            .await
            .context("certificate task")??;
        let key = tokio::task::spawn_blocking(RsaKeyPair::generate)
            .await
            .context("key generation task")??;
        let run = random_token(8).to_ascii_lowercase();
        let plan = containers::Plan::new(&run, free_port()?, &random_token(32));
        let realm = builder
            .realm
            .with_backchannel_logout(&plan.net.backchannel_logout_url());
        let realm_json = realm.to_keycloak_json(&crate::realm::KeycloakParams {
            realm_name: crate::compose::KEYCLOAK_REALM.into(),
            ldap_url: plan.net.ldap_url.clone(),
            signing_pkcs8_pem: Some(key.pkcs8_pem.clone()),
        });
        let mut base_config = containers::server_config(&plan)?;
        for edit in builder.edits {
            edit(&mut base_config);
        }
        let (port, admin_password) = (plan.keycloak_port, plan.keycloak_admin_password.clone());
        let issuer = plan.net.issuer();
        let running = containers::start(
            plan,
            &realm,
            &realm_json,
            &server_binary,
            &base_config,
            &pki.cert,
            &pki.key,
        )
        .await?;
        let kc = keycloak::Keycloak::external(port, port, &admin_password, running.keycloak_start);
        let provider = Provider::Keycloak(KeycloakRealm::external(kc, &realm_json, key).await?);
        let discovery_url = discovery_url_of(&issuer);
        let discovered = provider::discover(&http, &discovery_url, &issuer).await?;
        let local = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
        let endpoints = Endpoints {
            imap: local(running.imap),
            imaps: local(running.imaps),
            submission: local(running.submission),
            submissions: local(running.submissions),
            smtp: local(running.smtp),
            pop3: local(running.pop3),
            pop3s: local(running.pop3s),
            sieve: local(running.sieve),
            http: local(running.http),
            jmap_session: format!("http://127.0.0.1:{}/.well-known/jmap", running.http),
            gateway: format!("http://127.0.0.1:{}", running.gateway),
            backchannel_logout_url: running.plan.net.backchannel_logout_url(),
            x_user_secret: running.plan.net.gateway_secret.clone(),
            logout_url: discovered.end_session_endpoint.clone().unwrap_or_default(),
            issuer,
            discovery_url,
            token_endpoint: discovered.token_endpoint.clone(),
            jwks_uri: discovered.jwks_uri.clone(),
            authorization_endpoint: discovered.authorization_endpoint.clone(),
            introspection_endpoint: discovered.introspection_endpoint.clone(),
            end_session_endpoint: discovered.end_session_endpoint.clone(),
            ldap_url: format!("ldap://127.0.0.1:{}", running.ldap),
            redis_url: format!("redis://127.0.0.1:{}", running.redis),
            ca_cert: pki.ca_cert.clone(),
            ca_pem: pki.ca_pem.clone(),
        };
        let signing = SigningState::of(&provider);
        let start_duration = started.elapsed();
        tracing::info!(elapsed_ms = start_duration.as_millis() as u64, run = %running.plan.run, "container stack ready");
        Ok(Stack {
            gateway: None,
            server: None,
            idp_kind: provider.kind(),
            idp: tokio::sync::Mutex::new(provider),
            redis_acl: None,
            redis: tokio::sync::Mutex::new(None),
            slapd: None,
            containers: Some(running),
            endpoints,
            realm,
            base_config,
            signing: Mutex::new(signing),
            server_binary: None,
            extra_servers: AtomicUsize::new(0),
            start_duration,
            dir,
        })
    }

    async fn start_native(builder: StackBuilder) -> anyhow::Result<Stack> {
        let started = Instant::now();
        let http = probe_client()?;
        let dir = stack_dir()?;
        let root = dir.path().to_path_buf();
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs)?;
        let realm = builder.realm;
        // Fail before starting anything when the server cannot run.
        let server_binary = if builder.with_server {
            Some(server::find_binary()?)
        } else {
            None
        };

        // Independent pieces in parallel: certificates, the IdP key, slapd and redis.
        let pki_dir = root.join("pki");
        let pki = tokio::task::spawn_blocking(move || pki::generate(&pki_dir));
        let key = tokio::task::spawn_blocking(RsaKeyPair::generate);
        let (slapd_dir, redis_dir) = (root.join("slapd"), root.join("redis"));
        let (slapd_log, redis_log) = (logs.join("slapd.log"), logs.join("redis.log"));
        // The ACL is written for the server's default key prefix (checked after the edits).
        let redis_acl = redis::RedisAcl::generate(
            &mail_oidc_server::config::RevocationSection::default().key_prefix,
        );
        let (slapd, redis) = tokio::try_join!(
            slapd::start(&realm, &slapd_dir, &slapd_log),
            redis::start(&redis_dir, &redis_log, redis_acl),
        )?;
        let pki = pki.await.context("certificate task")??;
        let key = key.await.context("key generation task")??;
        tracing::debug!(after = ?started.elapsed(), "slapd, redis, keys ready");

        // The server first (it needs no IdP to start), so the IdP's configuration can name its
        // back-channel logout URL; the IdP's port is chosen now for the server's discovery URL.
        let idp_port = free_port()?;
        // The demo's own Keycloak holds the realm `mail` (as keycloak-realm/realm.json); a shared
        // one holds a realm per stack.
        let kc_realm = if builder.dedicated_idp {
            crate::compose::KEYCLOAK_REALM.to_string()
        } else {
            format!("mail-{}", random_token(10).to_ascii_lowercase())
        };
        let expected_issuer = match (builder.idp, builder.dedicated_idp) {
            (Idp::LemonLdap, _) => issuer_for_port(idp_port),
            (Idp::Keycloak, true) => format!("http://localhost:{idp_port}/realms/{kc_realm}"),
            (Idp::Keycloak, false) => keycloak::shared(&http).await?.issuer(&kc_realm),
        };
        let x_user_secret = random_token(32);
        // Operators' view of Redis (no credentials); the server connects over the socket.
        let redis_url = format!("redis://{}", redis.addr);
        let server_redis_url = redis.server_url();
        // Chosen now for the server's `http.gateway_public_url`, like the IdP's port.
        let gateway_port = free_port()?;
        let gateway_public_url = gateway_url_for_port(gateway_port);
        let mut base_config = server::config_for(
            builder.profile,
            &server::ServerEnv {
                realm: &realm,
                discovery_url: &discovery_url_of(&expected_issuer),
                ldap_url: &slapd.url,
                cert: &pki.cert,
                key: &pki.key,
                x_user_secret: &x_user_secret,
                redis_url: &server_redis_url,
                gateway_public_url: &gateway_public_url,
            },
        )?;
        // The builder's edits shape the stack's server and every extra server.
        for edit in builder.edits {
            edit(&mut base_config);
        }
        if base_config.revocation.key_prefix != redis.acl.key_prefix {
            anyhow::bail!(
                "revocation.key_prefix {:?} differs from the prefix the stack's Redis ACL allows ({:?})",
                base_config.revocation.key_prefix,
                redis.acl.key_prefix
            );
        }
        let server_dir = root.join("server");
        let server_log = logs.join("server.log");
        let mut server = match &server_binary {
            Some(bin) => Some(
                server::start_direct(bin, "server", base_config.clone(), &server_dir, &server_log)
                    .await?,
            ),
            None => None,
        };
        let backchannel_logout_url = server
            .as_ref()
            .and_then(|s| s.addrs.http)
            .map(|a| format!("http://{a}/backchannel-logout"))
            .unwrap_or_default();
        let realm = if backchannel_logout_url.is_empty() {
            realm
        } else {
            realm.with_backchannel_logout(&backchannel_logout_url)
        };

        let provider = match builder.idp {
            Idp::LemonLdap => Provider::Llng(Box::new(
                Llng::start(
                    &realm,
                    &root.join("llng"),
                    &logs.join("lemonldap-ng.log"),
                    idp_port,
                    &slapd.url,
                    {
                        let user = redis.acl.idp.clone().context("the IdP's Redis user")?;
                        crate::realm::LlngRedis {
                            socket: redis.socket.to_string_lossy().into_owned(),
                            username: user.name,
                            password: user.password,
                        }
                    },
                    key,
                    http.clone(),
                )
                .await?,
            )),
            Idp::Keycloak => {
                let json = realm.to_keycloak_json(&crate::realm::KeycloakParams {
                    realm_name: kc_realm.clone(),
                    ldap_url: slapd.url.clone(),
                    signing_pkcs8_pem: Some(key.pkcs8_pem.clone()),
                });
                let kc = if builder.dedicated_idp {
                    KeycloakRealm::start_owned(
                        &root.join("keycloak"),
                        &logs.join("keycloak.log"),
                        &json,
                        key,
                        idp_port,
                    )
                    .await?
                } else {
                    KeycloakRealm::create_shared(&json, key).await?
                };
                // The shared instance logs elsewhere: its log joins this stack's.
                if let (false, Some(log)) = (builder.dedicated_idp, kc.log_path()) {
                    let _ = std::os::unix::fs::symlink(log, logs.join("keycloak.log"));
                }
                Provider::Keycloak(kc)
            }
        };
        let issuer = provider.issuer();
        let discovery_url = provider.discovery_url();
        let discovered = provider::discover(&http, &discovery_url, &issuer)
            .await
            .context("the IdP's discovery document")?;
        tracing::debug!(after = ?started.elapsed(), idp = ?provider.kind(), "IdP ready");
        if discovery_url != discovery_url_of(&expected_issuer) {
            // The IdP had to move to another port: restart the server pointing at it, on the
            // HTTP port the IdP already knows.
            if let (Some(old), Some(bin)) = (server.take(), &server_binary) {
                let http = old.addrs.http;
                old.stop();
                if let Some(oidc) = base_config.oidc.as_mut() {
                    oidc.discovery_url = Some(discovery_url.clone());
                }
                let mut config = base_config.clone();
                config.http.listen = http;
                server = Some(
                    server::start_direct(bin, "server", config, &server_dir, &server_log).await?,
                );
            }
        }

        let mut addrs = server.as_ref().map(|s| s.addrs.clone()).unwrap_or_default();
        // The gateway fronts the stack's own server, with the (possibly edited) HTTP settings.
        let gateway = match addrs.http {
            Some(backend) => {
                let auth = &base_config.http.auth;
                let settings = GatewaySettings {
                    backend,
                    issuer: issuer.clone(),
                    jwks_uri: discovered.jwks_uri.clone(),
                    audiences: realm.client_ids(),
                    realm: auth.realm.clone(),
                    x_user_header: auth.x_user_header.clone(),
                    x_user_secret_header: auth.x_user_secret_header.clone(),
                    x_user_secret: auth
                        .x_user_secret
                        .clone()
                        .unwrap_or_else(|| x_user_secret.clone()),
                    leeway_seconds: base_config.oidc.as_ref().map_or(30, |o| o.leeway_seconds),
                    redis_addr: redis.addr.clone(),
                    redis_user: redis.acl.gateway.clone(),
                    key_prefix: base_config.revocation.key_prefix.clone(),
                    tls_cert: pki.cert.clone(),
                    tls_key: pki.key.clone(),
                };
                let gw = gateway::start(
                    &settings,
                    &root.join("gateway"),
                    &logs.join("gateway.log"),
                    &http,
                    &pki.ca_pem,
                    Some(gateway_port),
                )
                .await?;
                if gw.addr().port() != gateway_port {
                    // The gateway had to move: restart the server (same HTTP port, which the
                    // gateway and the IdP already know) with the gateway's real URL.
                    if let (Some(old), Some(bin)) = (server.take(), &server_binary) {
                        old.stop();
                        base_config.http.gateway_public_url =
                            Some(gateway_url_for_port(gw.addr().port()));
                        if builder.profile == server::Profile::Demo {
                            base_config.http.public_url =
                                Some(format!("https://127.0.0.1:{}", gw.addr().port()));
                        }
                        let mut config = base_config.clone();
                        config.http.listen = Some(backend);
                        let restarted =
                            server::start_direct(bin, "server", config, &server_dir, &server_log)
                                .await?;
                        addrs = restarted.addrs.clone();
                        server = Some(restarted);
                    }
                }
                tracing::debug!(after = ?started.elapsed(), took = ?gw.start_duration(), "gateway ready");
                Some(gw)
            }
            None => None,
        };
        let endpoints = Endpoints {
            imap: addrs.imap.unwrap_or_else(unbound),
            imaps: addrs.imap_tls.unwrap_or_else(unbound),
            submission: addrs.submission.unwrap_or_else(unbound),
            submissions: addrs.submission_tls.unwrap_or_else(unbound),
            smtp: addrs.smtp.unwrap_or_else(unbound),
            pop3: addrs.pop3.unwrap_or_else(unbound),
            pop3s: addrs.pop3_tls.unwrap_or_else(unbound),
            sieve: addrs.sieve.unwrap_or_else(unbound),
            http: addrs.http.unwrap_or_else(unbound),
            jmap_session: addrs
                .http
                .map(|a| format!("http://{a}/.well-known/jmap"))
                .unwrap_or_default(),
            gateway: gateway
                .as_ref()
                .map(|g| g.base_url().to_string())
                .unwrap_or_default(),
            backchannel_logout_url: addrs
                .http
                .map(|a| format!("http://{a}/backchannel-logout"))
                .unwrap_or_default(),
            x_user_secret: base_config
                .http
                .auth
                .x_user_secret
                .clone()
                .unwrap_or_default(),
            logout_url: match &provider {
                Provider::Llng(l) => l.logout_url(),
                // Keycloak's browser logout is the end-session endpoint (it asks to confirm).
                Provider::Keycloak(_) => {
                    discovered.end_session_endpoint.clone().unwrap_or_default()
                }
            },
            issuer,
            discovery_url,
            token_endpoint: discovered.token_endpoint,
            jwks_uri: discovered.jwks_uri,
            authorization_endpoint: discovered.authorization_endpoint,
            introspection_endpoint: discovered.introspection_endpoint,
            end_session_endpoint: discovered.end_session_endpoint,
            ldap_url: slapd.url.clone(),
            redis_url,
            ca_cert: pki.ca_cert.clone(),
            ca_pem: pki.ca_pem.clone(),
        };
        let signing = SigningState::of(&provider);
        let start_duration = started.elapsed();
        tracing::info!(
            elapsed_ms = start_duration.as_millis() as u64,
            dir = %root.display(),
            issuer = %endpoints.issuer,
            "native stack ready"
        );
        Ok(Stack {
            gateway,
            server,
            idp_kind: provider.kind(),
            idp: tokio::sync::Mutex::new(provider),
            redis_acl: Some(redis.acl),
            redis: tokio::sync::Mutex::new(Some(redis.process)),
            slapd: Some(slapd.process),
            containers: None,
            endpoints,
            realm,
            base_config,
            signing: Mutex::new(signing),
            server_binary,
            extra_servers: AtomicUsize::new(0),
            start_duration,
            dir,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn realm(&self) -> &Realm {
        &self.realm
    }

    /// How long [`StackBuilder::start`] took.
    pub fn start_duration(&self) -> Duration {
        self.start_duration
    }

    /// The temporary directory with every configuration, data directory and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Settings for an [`crate::idp::IdpClient`] acting as `client_id`.
    ///
    /// # Panics
    /// When the realm has no such client (a mistake in the test, not an input).
    pub fn idp_settings(&self, client_id: &str) -> IdpSettings {
        let client = self
            .realm
            .client(client_id)
            .unwrap_or_else(|| panic!("the realm has no client {client_id:?}"));
        IdpSettings {
            issuer: self.endpoints.issuer.clone(),
            client_id: client.client_id.clone(),
            client_secret: client.secret.clone(),
            redirect_uri: client.redirect_uris.first().cloned().unwrap_or_default(),
        }
    }

    /// The stack's server and gateway, for the suites.
    pub fn mail_target(&self) -> MailTarget {
        MailTarget::from_endpoints(&self.endpoints)
    }

    /// The realm's confidential client, its public web client and the browser logout URL, for
    /// the suites.
    ///
    /// # Panics
    /// When the realm has no public client (a realm without one is a test mistake).
    pub fn idp_target(&self) -> IdpTarget {
        let web = self
            .realm
            .web_client()
            .map(|c| c.client_id.clone())
            .unwrap_or_else(|| panic!("the realm has no public web client"));
        IdpTarget {
            confidential: self.idp_settings(FORGE_AUDIENCE),
            web: self.idp_settings(&web),
            logout_url: self.endpoints.logout_url.clone(),
        }
    }

    /// The realm's administrator (allowed to call `/admin/revoke`).
    ///
    /// # Panics
    /// When the realm has no administrator.
    pub fn admin_account(&self) -> Account {
        let admin = self
            .realm
            .admin()
            .unwrap_or_else(|| panic!("the realm has no administrator"));
        Account {
            mail: admin.mail.clone(),
            password: admin.password.clone(),
        }
    }

    /// `http://<server>/admin/revoke`.
    pub fn admin_revoke_url(&self) -> String {
        format!("http://{}/admin/revoke", self.endpoints.http)
    }

    /// Ends `user`'s IdP session without any back-channel call, as an IdP-side expiry or an
    /// admin purge would: LemonLDAP::NG's session tool deletes their SSO sessions; Keycloak
    /// revokes `token` (RFC 7009, which sends no logout token). Introspection answers
    /// `active: false` for `token` from then on.
    pub async fn kill_idp_sessions(&self, user: &TestUser, token: &str) -> anyhow::Result<()> {
        let idp = self.idp.lock().await;
        match &*idp {
            Provider::Llng(l) => {
                let killed = l.delete_sessions_of(&[&user.mail, &user.uid]).await?;
                anyhow::ensure!(killed > 0, "LemonLDAP::NG had no session of {}", user.mail);
                Ok(())
            }
            Provider::Keycloak(_) => {
                drop(idp);
                crate::idp::IdpClient::new(self.idp_settings(FORGE_AUDIENCE))?
                    .revoke(token)
                    .await
            }
        }
    }

    /// The IdP administrator logs `user` out of every session (Keycloak's admin API, which sends
    /// the back-channel logout tokens).
    pub async fn admin_logout_at_idp(&self, user: &TestUser) -> anyhow::Result<()> {
        match &*self.idp.lock().await {
            Provider::Keycloak(k) => k.admin_logout(&user.uid).await,
            Provider::Llng(_) => anyhow::bail!(
                "LemonLDAP::NG has no admin API that logs a user out with back-channel calls"
            ),
        }
    }

    /// Which IdP the stack runs.
    pub fn idp(&self) -> Idp {
        self.idp_kind
    }

    /// A forge holding the IdP's current signing key and `kid`, audience `mail-oidc`.
    pub fn forge(&self) -> TokenForge {
        let signing = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        TokenForge {
            private_pem: signing.key.private_pem.clone(),
            public_pem: signing.key.public_pem.clone(),
            kid: signing.kid.clone(),
            issuer: self.endpoints.issuer.clone(),
            audience: FORGE_AUDIENCE.to_string(),
        }
    }

    /// Adds a fresh LDAP user `<prefix>-<random>` with mail `<uid>@example.com` and a random
    /// password; the IdP and the server see it at once.
    pub async fn create_user(&self, prefix: &str) -> anyhow::Result<TestUser> {
        let uid = format!("{prefix}-{}", random_token(10).to_ascii_lowercase());
        let user = RealmUser {
            mail: format!("{uid}@example.com"),
            password: random_token(24),
            given_name: "Test".into(),
            family_name: uid.clone(),
            uid,
        };
        let attrs: Vec<(String, HashSet<String>)> = ldap_attributes(&user)
            .into_iter()
            .map(|(name, values)| (name, values.into_iter().collect()))
            .collect();
        let mut ldap = slapd::admin_connection(&self.endpoints.ldap_url, &self.realm).await?;
        let dn = self.realm.user_dn(&user.uid);
        ldap.add(&dn, attrs)
            .await?
            .success()
            .with_context(|| format!("adding {dn}"))?;
        let _ = ldap.unbind().await;
        tracing::debug!(uid = %user.uid, "test user created");
        Ok(TestUser {
            uid: user.uid,
            mail: user.mail,
            password: user.password,
        })
    }

    /// Stops the IdP (Starman); discovery, JWKS and token requests fail until
    /// [`Stack::start_idp`].
    pub async fn stop_idp(&self) {
        self.idp.lock().await.stop();
    }

    /// Starts the IdP again on the same port and configuration.
    ///
    /// # Panics
    /// When it does not come back (see [`Stack::try_start_idp`]).
    pub async fn start_idp(&self) {
        if let Err(e) = self.try_start_idp().await {
            panic!("restarting the IdP failed: {e:#}");
        }
    }

    /// Starts the IdP again on the same port and configuration.
    pub async fn try_start_idp(&self) -> anyhow::Result<()> {
        self.idp.lock().await.restart().await
    }

    /// The native Redis's ACL users and passwords (tests use them to show what each may do).
    pub fn redis_acl(&self) -> Option<&redis::RedisAcl> {
        self.redis_acl.as_ref()
    }

    /// Stops Redis (the revocation store, and the IdP's sessions) until [`Stack::start_redis`].
    pub async fn stop_redis(&self) {
        if let Some(mut r) = self.redis.lock().await.take() {
            r.terminate();
        }
    }

    /// Starts Redis again on the same port with the same data (its append-only file).
    pub async fn start_redis(&self) -> anyhow::Result<()> {
        let mut guard = self.redis.lock().await;
        if guard.is_some() {
            return Ok(());
        }
        let port = self
            .endpoints
            .redis_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .context("the stack's Redis URL has no port")?;
        let acl = self
            .redis_acl
            .clone()
            .context("only the native stack restarts its Redis")?;
        let restarted = redis::start_on(
            &self.dir.path().join("redis"),
            &self.dir.path().join("logs").join("redis.log"),
            Some(port),
            acl,
        )
        .await?;
        *guard = Some(restarted.process);
        Ok(())
    }

    /// Replaces the IdP's signing key (new `kid`, next configuration number) and returns once
    /// the JWKS serves only the new key; [`Stack::forge`] uses it from then on.
    pub async fn rotate_signing_key(&self) -> anyhow::Result<String> {
        let key = tokio::task::spawn_blocking(RsaKeyPair::generate)
            .await
            .context("key generation task")??;
        let mut idp = self.idp.lock().await;
        let kid = idp.rotate(key).await?;
        let mut signing = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        signing.key = idp.key().clone();
        signing.kid = kid.clone();
        Ok(kid)
    }

    /// The stack's server configuration (builder edits included), the base for extra servers.
    pub fn server_config(&self) -> Config {
        self.base_config.clone()
    }

    /// Starts another server process on the same IdP and LDAP with an edited copy of
    /// [`Stack::server_config`]. Dropping the handle stops it.
    pub async fn start_server(
        &self,
        edit: impl FnOnce(&mut Config),
    ) -> anyhow::Result<ServerHandle> {
        let binary = match &self.server_binary {
            Some(b) => b.clone(),
            None => server::find_binary()?,
        };
        let mut config = self.server_config();
        edit(&mut config);
        let n = self.extra_servers.fetch_add(1, Ordering::Relaxed) + 2;
        let name = format!("server-{n}");
        let log = self.dir.path().join("logs").join(format!("{name}.log"));
        server::start_direct(
            &binary,
            &name,
            config,
            &self.dir.path().join("server"),
            &log,
        )
        .await
    }

    /// The OIDC gateway in front of the stack's own server, if it has one.
    pub fn gateway(&self) -> Option<&Gateway> {
        self.gateway.as_ref()
    }

    /// The stack's own server, if it has one.
    pub fn server(&self) -> Option<&ServerHandle> {
        self.server.as_ref()
    }

    /// Everything the stack's own server logged so far ("" without a server).
    pub fn server_log(&self) -> String {
        self.server
            .as_ref()
            .map(ServerHandle::log)
            .unwrap_or_default()
    }

    /// The lines the stack's own server logged for the connection from `client` (its spans
    /// carry `peer=<client>`), so a test ties evidence to that one connection.
    pub fn server_log_of(&self, client: std::net::SocketAddr) -> Vec<String> {
        let tag = format!("peer={client}");
        self.server_log()
            .lines()
            .filter(|line| {
                line.match_indices(&tag).any(|(i, _)| {
                    // Not a longer port that starts with the same digits.
                    !line[i + tag.len()..].starts_with(|c: char| c.is_ascii_digit())
                })
            })
            .map(str::to_string)
            .collect()
    }

    /// PIDs of every process the stack started directly (gateway, server, Starman, redis,
    /// slapd).
    pub async fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Some(g) = &self.gateway {
            pids.push(g.pid());
        }
        if let Some(s) = &self.server {
            pids.push(s.pid());
        }
        if let Some(p) = self.idp.lock().await.pid() {
            pids.push(p);
        }
        if let Some(r) = self.redis.lock().await.as_ref() {
            pids.push(r.pid());
        }
        if let Some(s) = &self.slapd {
            pids.push(s.pid());
        }
        pids
    }

    /// The tail of every process log, one section per process.
    pub fn logs(&self) -> String {
        self.log_tails(FAILURE_LOG_LINES)
    }

    fn log_tails(&self, lines: usize) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("logs"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        let mut out = String::new();
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push_str(&format!("----- {name} (last {lines} lines) -----\n"));
            out.push_str(&tail_file(&file, lines));
            out.push('\n');
        }
        out
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "mail-oidc stack in {} (logs follow):\n{}",
                self.dir.path().display(),
                self.log_tails(FAILURE_LOG_LINES)
            );
        }
        // Processes stop in field order (gateway, server, IdP, redis, slapd) before the
        // directory goes.
        if let Some(mut gateway) = self.gateway.take() {
            gateway.stop();
        }
        if let Some(server) = self.server.take() {
            server.stop();
        }
        self.idp.get_mut().stop();
        if let Some(redis) = self.redis.get_mut() {
            redis.terminate();
        }
        if let Some(slapd) = &mut self.slapd {
            slapd.terminate();
        }
        // Removes the containers (and the run's network with the last of them).
        self.containers.take();
        if std::env::var_os("MAIL_OIDC_KEEP_STACK_DIR").is_some() {
            let path = self.dir.path().to_path_buf();
            eprintln!("mail-oidc stack directory kept: {}", path.display());
            // Replace the guard by one for a fresh empty dir, and forget the real one.
            if let Ok(empty) = tempfile::tempdir() {
                let _kept = std::mem::replace(&mut self.dir, empty).keep();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn stack_can_be_shared_and_its_futures_spawned() {
        assert_send_sync::<Stack>();
        assert_send_sync::<ServerHandle>();
        assert_send(&Stack::builder().start());
        let _ = |stack: &'static Stack| {
            assert_send(&stack.create_user("x"));
            assert_send(&stack.rotate_signing_key());
            assert_send(&stack.start_idp());
            assert_send(&stack.stop_idp());
            assert_send(&stack.start_server(|_| {}));
        };
    }
}
