//! Builds every service from the config, binds the listeners and runs them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::AuthBackends;
use crate::auth::directory::{
    CachingDirectory, Directory, LdapDirectory, LdapDirectoryConfig, StaticDirectory,
};
use crate::auth::oidc::{OidcValidator, OidcValidatorConfig, TokenValidator};
use crate::auth::revocation::{
    MemoryRevocationStore, RedisRevocationConfig, RedisRevocationStore,
    RevocationCheckingDirectory, RevocationCheckingValidator, RevocationService, RevocationStore,
    SessionRegistry,
};
use crate::auth::sasl::{Protocol, SaslMechanism, SaslRegistry, default_mechanisms};
use crate::auth::throttle::{
    FailureBudget, LoginThrottle, MemoryBudget, Policy, RedisBudget, ThrottleSettings,
};
use crate::config::ThrottleStoreKind;
use crate::config::{Config, ConfigError, DirectorySection, RevocationStoreKind, StoreKind};
use crate::imap::{ImapContext, ImapListenerKind};
use crate::limits::{ListenerLimits, Shutdown};
use crate::managesieve::{ScriptCheck, SieveContext};
use crate::pop3::{MaildropLocks, Pop3Context, Pop3ListenerKind};
use crate::sieve::SieveFilter;
use crate::smtp::{SmtpContext, SmtpListenerKind};
use crate::store::{MailStore, MemoryStore, ScriptLimits, SieveScripts};
use crate::tls;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr} (config key `{key}`): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// The addresses actually bound (port 0 in the config becomes a real port here). Written as JSON
/// to `--ready-file` so a harness learns the ports without racing for them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BoundAddrs {
    pub imap: Option<SocketAddr>,
    pub imap_tls: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub submission_tls: Option<SocketAddr>,
    pub smtp: Option<SocketAddr>,
    /// POP3 with STLS.
    pub pop3: Option<SocketAddr>,
    /// POP3 over implicit TLS.
    pub pop3_tls: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// ManageSieve (STARTTLS).
    pub sieve: Option<SocketAddr>,
}

/// A started server: its bound addresses and the tasks serving them.
pub struct RunningServer {
    pub addrs: BoundAddrs,
    pub store: Arc<dyn MailStore>,
    pub scripts: Arc<SieveScripts>,
    /// Background work (revocation events, introspection re-checks): aborted on shutdown.
    tasks: JoinSet<()>,
    /// One task per listener, each owning its sessions.
    listeners: JoinSet<()>,
    shutdown: Shutdown,
    grace: std::time::Duration,
}

impl RunningServer {
    /// Serves until every listener stops (they stop only on fatal errors).
    pub async fn wait(mut self) {
        while self.listeners.join_next().await.is_some() {}
        while self.tasks.join_next().await.is_some() {}
    }

    /// Serves until `stop` resolves (e.g. SIGTERM), then shuts down gracefully.
    pub async fn serve_until(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = stop => {}
            () = async { while self.listeners.join_next().await.is_some() {} } => {}
        }
        self.shutdown().await;
    }

    /// Stops accepting, gives every session its protocol's goodbye, waits up to
    /// `limits.shutdown_grace_seconds` for them to end, then aborts whatever is left.
    pub async fn shutdown(mut self) {
        self.shutdown.trigger();
        let drained = tokio::time::timeout(self.grace, async {
            while self.listeners.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!(
                grace_seconds = self.grace.as_secs(),
                "sessions still open after the shutdown grace period: cut"
            );
        }
        self.listeners.abort_all();
        self.tasks.abort_all();
        while self.listeners.join_next().await.is_some() {}
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Everything the front ends share, built once.
pub struct Services {
    pub backends: AuthBackends,
    pub store: Arc<dyn MailStore>,
    /// Every user's Sieve scripts (ManageSieve writes them, delivery reads the active one).
    pub scripts: Arc<SieveScripts>,
    pub tls: Option<TlsAcceptor>,
    /// The deny-list and the live sessions of every protocol.
    pub revocation: Arc<RevocationService>,
    /// The validator without the revocation layer (the introspection re-check asks the IdP).
    pub raw_validator: Option<Arc<dyn TokenValidator>>,
    /// Recipients' Sieve scripts, run on every local delivery.
    pub filter: Arc<SieveFilter>,
    /// SASL mechanisms from outside this crate, known to every protocol's registry (each
    /// listener enables them by name in its `auth.mechanisms`).
    pub extra_mechanisms: Vec<Arc<dyn SaslMechanism>>,
    /// `server.max_in_flight_bytes`, shared by SMTP, IMAP and JMAP.
    pub inflight: crate::inflight::InFlight,
    /// The pool heavy commands run on (IMAP LIST/SEARCH, JMAP Email/query), off the workers.
    pub offload: crate::offload::Offload,
}

impl Services {
    /// Adds a mechanism built from the server's backends (directory, token validator): how
    /// another crate plugs in its own, the Rust answer to a class name in a config file.
    pub fn with_mechanism(
        mut self,
        build: impl FnOnce(&AuthBackends) -> Arc<dyn SaslMechanism>,
    ) -> Self {
        let mechanism = build(&self.backends);
        self.extra_mechanisms.push(mechanism);
        self
    }
}

fn revocation_store(config: &Config) -> Result<Arc<dyn RevocationStore>, StartError> {
    let r = &config.revocation;
    let ttl = std::time::Duration::from_secs(r.ttl_seconds);
    Ok(match r.store {
        RevocationStoreKind::Memory => Arc::new(MemoryRevocationStore::new(ttl)),
        RevocationStoreKind::Redis => {
            let url = r.redis_url.clone().ok_or_else(|| ConfigError::Invalid {
                key: "revocation.redis_url".into(),
                message: "required with store = \"redis\"".into(),
            })?;
            Arc::new(
                RedisRevocationStore::start(RedisRevocationConfig {
                    url,
                    key_prefix: r.key_prefix.clone(),
                    ttl,
                    timeout: std::time::Duration::from_millis(r.timeout_ms),
                })
                .map_err(|e| ConfigError::Invalid {
                    key: "revocation.redis_url".into(),
                    message: e.to_string(),
                })?,
            )
        }
    })
}

/// The failed-login budget of `[login_throttle]`, `None` when disabled.
fn login_throttle(config: &Config) -> Result<Option<Arc<LoginThrottle>>, StartError> {
    let t = &config.login_throttle;
    if !t.enabled {
        tracing::warn!(
            "login_throttle.enabled = false: failed logins are only counted per connection"
        );
        return Ok(None);
    }
    let budget: Arc<dyn FailureBudget> = match t.store {
        ThrottleStoreKind::Memory => Arc::new(MemoryBudget::new()),
        ThrottleStoreKind::Redis => {
            let invalid = |message: String| ConfigError::Invalid {
                key: "login_throttle.redis_url".into(),
                message,
            };
            let url = config
                .login_throttle_redis_url()
                .ok_or_else(|| invalid("required with store = \"redis\"".into()))?;
            Arc::new(
                RedisBudget::start(url, Duration::from_millis(t.timeout_ms))
                    .map_err(|e| invalid(e.to_string()))?,
            )
        }
    };
    if t.fail_open {
        tracing::warn!(
            "login_throttle.fail_open = true: logins are not throttled while its store is unreachable"
        );
    }
    let policy = |free_failures| Policy {
        free_failures,
        base_delay: Duration::from_secs(t.base_delay_seconds),
        max_delay: Duration::from_secs(t.max_delay_seconds),
    };
    Ok(Some(LoginThrottle::new(
        budget,
        ThrottleSettings {
            per_address: policy(t.free_failures_per_address),
            per_user: policy(t.free_failures_per_user),
            window: Duration::from_secs(t.window_seconds),
            fail_open: t.fail_open,
        },
        t.key_prefix.clone(),
    )))
}

pub fn build_services(config: &Config) -> Result<Services, StartError> {
    tls::install_crypto_provider();
    let directory: Arc<dyn Directory> =
        match &config.directory {
            DirectorySection::Ldap(ldap) => Arc::new(CachingDirectory::new(
                Arc::new(LdapDirectory::new(LdapDirectoryConfig::from(ldap))),
                Duration::from_secs(ldap.cache_seconds),
                ldap.cache_capacity,
            )),
            DirectorySection::Static(s) => Arc::new(StaticDirectory::load(&s.path).map_err(
                |e| ConfigError::Invalid {
                    key: "directory.path".into(),
                    message: e.to_string(),
                },
            )?),
        };
    let raw_validator: Option<Arc<dyn TokenValidator>> = match &config.oidc {
        Some(oidc) => {
            if !oidc.audience_check {
                tracing::warn!(
                    "oidc.audience_check = false: tokens issued for ANY audience are accepted, \
                     including tokens meant for other services"
                );
            }
            let cfg = OidcValidatorConfig::from_section(oidc)?;
            Some(Arc::new(OidcValidator::new(cfg, directory.clone())?))
        }
        None => None,
    };
    let recheck = config
        .oidc
        .as_ref()
        .and_then(|o| o.introspection.as_ref())
        .is_some_and(|i| i.recheck_seconds.is_some());
    let registry = SessionRegistry::with_bearer(config.session.end_at_token_expiry, recheck);
    let revocation = RevocationService::new(
        revocation_store(config)?,
        registry,
        config.revocation.fail_open,
    );
    if config.revocation.fail_open {
        tracing::warn!(
            "revocation.fail_open = true: tokens are accepted while the revocation store is unreachable"
        );
    }
    // Password logins ask the deny-list too; the token validator above only looks users up.
    let directory: Arc<dyn Directory> = Arc::new(RevocationCheckingDirectory::new(
        directory,
        revocation.clone(),
    ));
    let validator = raw_validator.clone().map(|v| {
        Arc::new(RevocationCheckingValidator::new(v, revocation.clone())) as Arc<dyn TokenValidator>
    });
    let quota = Some(config.store.quota_bytes);
    let limits = ScriptLimits {
        max_script_size: config.sieve.max_script_size,
        max_scripts: config.sieve.max_scripts,
    };
    let (store, scripts): (Arc<dyn MailStore>, Arc<SieveScripts>) = match config.store.kind {
        StoreKind::Memory => (
            Arc::new(MemoryStore::with_quota(quota)),
            Arc::new(SieveScripts::new(limits)),
        ),
        StoreKind::Disk => {
            // Validation makes the path present with this kind.
            let path = config.store.path.as_deref().unwrap_or(Path::new("."));
            let (store, scripts) = crate::store::disk::open(path, quota, limits)
                .map_err(|e| StartError::Other(format!("store.path: {e}")))?;
            (Arc::new(store), Arc::new(scripts))
        }
    };
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    Ok(Services {
        backends: AuthBackends {
            directory,
            validator,
            admins: config
                .server
                .admins
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            revocation: Some(revocation.clone()),
            throttle: login_throttle(config)?,
        },
        store,
        scripts: scripts.clone(),
        tls,
        revocation,
        raw_validator,
        filter: Arc::new(SieveFilter::new(scripts)),
        extra_mechanisms: Vec::new(),
        inflight: crate::inflight::InFlight::new(config.server.max_in_flight_bytes),
        offload: crate::offload::Offload::default(),
    })
}

fn registry(
    services: &Services,
    key: &str,
    names: &Option<Vec<String>>,
    protocol: Protocol,
) -> Result<SaslRegistry, ConfigError> {
    let names = names
        .clone()
        .unwrap_or_else(|| default_mechanisms(protocol));
    if names
        .iter()
        .any(|n| n.to_ascii_uppercase().starts_with("SCRAM-"))
        && !services.backends.directory.has_scram_secrets()
    {
        // Not an error (the directory may gain secrets later), but nobody can use it now.
        tracing::warn!(
            key,
            "SCRAM is enabled but the directory holds no SCRAM secrets: it is never offered"
        );
    }
    let mut registry = SaslRegistry::with_builtins(&services.backends);
    for mechanism in &services.extra_mechanisms {
        registry.register(mechanism.clone());
    }
    registry.enable(&names).map_err(|e| ConfigError::Invalid {
        key: key.into(),
        message: e.to_string(),
    })
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}

/// The IMAP and submission mechanism registries, in configured order.
pub fn registries(
    config: &Config,
    services: &Services,
) -> Result<(SaslRegistry, SaslRegistry), ConfigError> {
    Ok((
        registry(
            services,
            "imap.auth.mechanisms",
            &config.imap.auth.mechanisms,
            Protocol::Imap,
        )?,
        registry(
            services,
            "submission.auth.mechanisms",
            &config.submission.auth.mechanisms,
            Protocol::Smtp,
        )?,
    ))
}

/// The POP3 mechanism registry, in configured order.
pub fn pop3_registry(config: &Config, services: &Services) -> Result<SaslRegistry, ConfigError> {
    registry(
        services,
        "pop3.auth.mechanisms",
        &config.pop3.auth.mechanisms,
        Protocol::Pop3,
    )
}

/// The ManageSieve mechanism registry, in configured order.
pub fn sieve_registry(config: &Config, services: &Services) -> Result<SaslRegistry, ConfigError> {
    registry(
        services,
        "sieve.auth.mechanisms",
        &config.sieve.auth.mechanisms,
        Protocol::ManageSieve,
    )
}

/// PUTSCRIPT and CHECKSCRIPT compile with the interpreter that runs at delivery, so a stored
/// script is one delivery can run (the error reads `line N: message`).
fn compile_scripts() -> ScriptCheck {
    Arc::new(|source: &str| {
        crate::sieve::Script::compile(source)
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// Validates everything `start` would build, without binding anything (`--check`).
pub fn check(config: &Config) -> Result<(), StartError> {
    check_with(config, &build_services(config)?)
}

/// Like [`check`], with services built by the caller (e.g. an extra SASL mechanism).
pub fn check_with(config: &Config, services: &Services) -> Result<(), StartError> {
    registries(config, services)?;
    pop3_registry(config, services)?;
    sieve_registry(config, services)?;
    Ok(())
}

/// Binds every configured listener and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let services = build_services(&config)?;
    start_with(config, services).await
}

/// Like [`start`], with services built by the caller (e.g. an extra SASL mechanism).
pub async fn start_with(config: Config, services: Services) -> Result<RunningServer, StartError> {
    let mut tasks = JoinSet::new();
    let mut listeners = JoinSet::new();
    let mut addrs = BoundAddrs::default();
    let shutdown = Shutdown::new();
    let lim = &config.limits;
    let limits = |key: &'static str, section: &crate::config::ListenerLimitsSection| {
        ListenerLimits::new(key, section, shutdown.signal())
    };

    let (imap_registry, submission_registry) = registries(&config, &services)?;
    let pop3_registry = pop3_registry(&config, &services)?;
    let sieve_registry = sieve_registry(&config, &services)?;
    tasks.spawn(services.revocation.clone().listen());
    if let (Some(validator), Some(seconds)) = (
        services.raw_validator.clone(),
        config
            .oidc
            .as_ref()
            .and_then(|o| o.introspection.as_ref())
            .and_then(|i| i.recheck_seconds),
    ) {
        tasks.spawn(crate::auth::revocation::introspection_recheck(
            services.revocation.registry().clone(),
            validator,
            std::time::Duration::from_secs(seconds),
        ));
    }
    let inflight = services.inflight.clone();
    let imap_ctx = Arc::new(ImapContext {
        hostname: config.server.hostname.clone(),
        config: config.imap.clone(),
        registry: imap_registry,
        backends: services.backends.clone(),
        store: services.store.clone(),
        tls: services.tls.clone(),
        offload: services.offload.clone(),
        inflight: inflight.clone(),
    });
    let smtp_ctx = Arc::new(SmtpContext {
        hostname: config.server.hostname.clone(),
        submission: config.submission.clone(),
        inbound: config.smtp.clone(),
        registry: submission_registry,
        backends: services.backends.clone(),
        store: services.store.clone(),
        filter: services.filter.clone(),
        tls: services.tls.clone(),
        inflight: inflight.clone(),
    });
    let pop3_ctx = Arc::new(Pop3Context {
        hostname: config.server.hostname.clone(),
        config: config.pop3.clone(),
        registry: pop3_registry,
        backends: services.backends.clone(),
        store: services.store.clone(),
        tls: services.tls.clone(),
        locks: MaildropLocks::new(),
    });

    if let Some(addr) = config.imap.listen {
        let l = bind("imap.listen", addr).await?;
        addrs.imap = Some(
            l.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        listeners.spawn(crate::imap::serve_limited(
            l,
            ImapListenerKind::Plain,
            imap_ctx.clone(),
            limits("imap.listen", &lim.imap),
        ));
    }
    if let Some(addr) = config.imap.listen_tls {
        let l = bind("imap.listen_tls", addr).await?;
        addrs.imap_tls = Some(
            l.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        listeners.spawn(crate::imap::serve_limited(
            l,
            ImapListenerKind::ImplicitTls,
            imap_ctx.clone(),
            limits("imap.listen_tls", &lim.imap),
        ));
    }
    if let Some(addr) = config.submission.listen {
        let l = bind("submission.listen", addr).await?;
        addrs.submission = Some(
            l.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        listeners.spawn(crate::smtp::serve_limited(
            l,
            SmtpListenerKind::Submission,
            smtp_ctx.clone(),
            smtp_options(&lim.submission),
            limits("submission.listen", &lim.submission),
        ));
    }
    if let Some(addr) = config.submission.listen_tls {
        let l = bind("submission.listen_tls", addr).await?;
        addrs.submission_tls = Some(
            l.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        listeners.spawn(crate::smtp::serve_limited(
            l,
            SmtpListenerKind::SubmissionImplicitTls,
            smtp_ctx.clone(),
            smtp_options(&lim.submission),
            limits("submission.listen_tls", &lim.submission),
        ));
    }
    if let Some(addr) = config.smtp.listen {
        let l = bind("smtp.listen", addr).await?;
        addrs.smtp = Some(
            l.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        let mut inbound = limits("smtp.listen", &lim.smtp);
        // No login on an MX: only the command deadline applies.
        inbound.session.login_timeout = None;
        listeners.spawn(crate::smtp::serve_limited(
            l,
            SmtpListenerKind::Inbound,
            smtp_ctx.clone(),
            smtp_options(&lim.smtp),
            inbound,
        ));
    }
    if let Some(addr) = config.pop3.listen {
        let l = bind("pop3.listen", addr).await?;
        addrs.pop3 = Some(
            l.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        listeners.spawn(crate::pop3::serve_limited(
            l,
            Pop3ListenerKind::Plain,
            pop3_ctx.clone(),
            pop3_options(&config, &lim.pop3),
            limits("pop3.listen", &lim.pop3),
        ));
    }
    if let Some(addr) = config.pop3.listen_tls {
        let l = bind("pop3.listen_tls", addr).await?;
        addrs.pop3_tls = Some(
            l.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        listeners.spawn(crate::pop3::serve_limited(
            l,
            Pop3ListenerKind::ImplicitTls,
            pop3_ctx.clone(),
            pop3_options(&config, &lim.pop3),
            limits("pop3.listen_tls", &lim.pop3),
        ));
    }
    if let Some(addr) = config.sieve.listen {
        let l = bind("sieve.listen", addr).await?;
        addrs.sieve = Some(
            l.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        if services.tls.is_none() {
            tracing::warn!(
                "sieve.listen without [tls]: no STARTTLS, so password and bearer logins need \
                 sieve.allow_plaintext_auth (SCRAM-SHA-256 works without TLS)"
            );
        }
        let ctx = Arc::new(SieveContext {
            hostname: config.server.hostname.clone(),
            config: config.sieve.clone(),
            registry: sieve_registry,
            backends: services.backends.clone(),
            scripts: services.scripts.clone(),
            check: compile_scripts(),
            tls: services.tls.clone(),
        });
        listeners.spawn(crate::managesieve::serve_limited(
            l,
            ctx,
            crate::managesieve::ConnectionOptions {
                io_timeout: lim.sieve.write_timeout(),
            },
            limits("sieve.listen", &lim.sieve),
        ));
    }
    if let Some(addr) = config.http.listen {
        let l = bind("http.listen", addr).await?;
        let bound = l
            .local_addr()
            .map_err(|e| StartError::Other(e.to_string()))?;
        addrs.http = Some(bound);
        let ctx = crate::web::HttpContext::new_with(&config, bound, &services, shutdown.signal())?;
        listeners.spawn(crate::web::serve_limited(
            l,
            Arc::new(ctx),
            crate::web::HttpLimits::new(&lim.http, shutdown.signal()),
        ));
    }
    tracing::info!(?addrs, "listening");
    Ok(RunningServer {
        addrs,
        store: services.store,
        scripts: services.scripts,
        tasks,
        listeners,
        shutdown,
        grace: std::time::Duration::from_secs(config.limits.shutdown_grace_seconds),
    })
}

/// SMTP timeouts: the default idle time, the configured write deadline.
fn smtp_options(section: &crate::config::ListenerLimitsSection) -> crate::smtp::ConnectionOptions {
    crate::smtp::ConnectionOptions {
        io_timeout: section.write_timeout(),
        ..crate::smtp::ConnectionOptions::default()
    }
}

/// POP3 timeouts: `[pop3]`'s idle times, the configured write deadline.
fn pop3_options(
    config: &Config,
    section: &crate::config::ListenerLimitsSection,
) -> crate::pop3::ConnectionOptions {
    crate::pop3::ConnectionOptions {
        io_timeout: section.write_timeout(),
        ..crate::pop3::ConnectionOptions::from_config(&config.pop3)
    }
}
