//! Our mail server as a child process: binary lookup, the base configuration, start-up through
//! the `--ready-file` (JSON `BoundAddrs`), then the IMAP greeting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use mail_oidc_server::config::Config;
use mail_oidc_server::server::BoundAddrs;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::ports::{START_ATTEMPTS, free_port, is_bind_failure};
use super::process::{ChildProcess, tail};
use super::wait::Deadline;
use crate::realm::Realm;

const BINARY: &str = "mail-oidc-server";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const GREETING_TIMEOUT: Duration = Duration::from_secs(10);

/// A server process started by the stack. Dropping it stops the process.
pub struct ServerHandle {
    /// The addresses the server actually bound.
    pub addrs: BoundAddrs,
    /// The configuration it runs with.
    pub config: Config,
    process: ChildProcess,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addrs", &self.addrs)
            .field("process", &self.process)
            .finish()
    }
}

impl ServerHandle {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read(self.process.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// This server as a suite target (no gateway in front of it).
    pub fn mail_target(&self, ca_pem: &str) -> crate::suites::MailTarget {
        crate::suites::MailTarget {
            imaps: self.addrs.imap_tls,
            submissions: self.addrs.submission_tls,
            pop3s: self.addrs.pop3_tls,
            sieve: self.addrs.sieve,
            jmap_session: self
                .addrs
                .http
                .map(|a| format!("http://{a}/.well-known/jmap")),
            gateway_jmap_session: None,
            ca_pem: ca_pem.to_string(),
        }
    }

    /// Stops the server now (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(mut self) {
        self.process.terminate();
    }
}

/// `MAIL_OIDC_SERVER_BIN`, else `mail-oidc-server` next to the current executable or in its
/// parent directory (integration tests run from `target/<profile>/deps`).
pub fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MAIL_OIDC_SERVER_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("MAIL_OIDC_SERVER_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the current executable")?;
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join(BINARY));
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join(BINARY));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{BINARY} not found next to {} or in its parent directory; build it with \
             `cargo build -p mail-oidc-server` or set MAIL_OIDC_SERVER_BIN",
                exe.display()
            )
        })
}

/// Failed logins a test stack's server allows per address and per user name before delays.
pub const LOGIN_THROTTLE_FREE_FAILURES: u32 = 1_000_000;

/// What the stack's server is for; the two differ only in [`relax_for_tests`] and the public URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Test stacks: the failed-login budget and the per-address caps out of the way (every
    /// client is 127.0.0.1, and the failure suites fail logins by the hundred); the public URL
    /// is the server's own direct address, which is what the tests talk to (see
    /// [`start_direct`]).
    #[default]
    Tests,
    /// `mail-oidc up`: the server's documented defaults (failed-login budget, per-address
    /// caps but HTTP's, which every gateway request shares), and the gateway's HTTPS URL as
    /// the public URL, so its pass-through routes never send clients around it.
    Demo,
}

/// What the base configuration needs to know about the rest of the stack.
pub struct ServerEnv<'a> {
    pub realm: &'a Realm,
    pub discovery_url: &'a str,
    pub ldap_url: &'a str,
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Shared with the gateway: proves an `X-User` header came through it.
    pub x_user_secret: &'a str,
    /// `redis://127.0.0.1:<port>`: the revocation store every instance and the gateway share.
    pub redis_url: &'a str,
    /// `https://127.0.0.1:<gateway port>/oidc`: the base of URLs in answers to gateway requests.
    pub gateway_public_url: &'a str,
}

impl ServerEnv<'_> {
    /// The gateway's own base (`https://127.0.0.1:<port>`): its pass-through routes.
    pub fn gateway_base_url(&self) -> &str {
        self.gateway_public_url
            .strip_suffix(super::gateway::OIDC_PREFIX)
            .unwrap_or(self.gateway_public_url)
    }
}

/// The configuration of a stack's server for `profile`: [`base_config`], then the profile's own
/// settings. A test configuration has no `http.public_url` yet: [`start_direct`] gives it the
/// address it binds, so it is only valid once started that way.
pub fn config_for(profile: Profile, env: &ServerEnv<'_>) -> anyhow::Result<Config> {
    let mut config = base_config(env)?;
    match profile {
        Profile::Tests => relax_for_tests(&mut config),
        Profile::Demo => {
            config.http.public_url = Some(env.gateway_base_url().to_string());
            config
                .validate()
                .context("the demo's server configuration")?;
        }
    }
    Ok(config)
}

/// The test stacks' settings, applied by the stack builder (never by `mail-oidc up`): the
/// hostile-token and failure suites fail logins from 127.0.0.1 by the hundred, on purpose, so the
/// budget stays on (in memory, so a Redis outage test keeps password logins) but far out of
/// their way; every client (the gateway, the tests, `mail-oidc bench` with its ~110
/// connections) comes from 127.0.0.1, so the per-address caps are raised to the global ones.
pub fn relax_for_tests(config: &mut Config) {
    let t = &mut config.login_throttle;
    t.store = mail_oidc_server::config::ThrottleStoreKind::Memory;
    t.free_failures_per_address = LOGIN_THROTTLE_FREE_FAILURES;
    t.free_failures_per_user = LOGIN_THROTTLE_FREE_FAILURES;
    t.base_delay_seconds = 1;
    t.max_delay_seconds = 1;
    let l = &mut config.limits;
    for listener in [
        &mut l.imap,
        &mut l.submission,
        &mut l.smtp,
        &mut l.pop3,
        &mut l.sieve,
    ] {
        listener.max_connections_per_address = listener.max_connections;
    }
    l.http.max_connections_per_address = l.http.max_connections;
}

/// Every listener (ManageSieve too) on 127.0.0.1:0, TLS from the stack's CA, OIDC against the IdP (every client id
/// is an accepted audience, user from `email`), users from LDAP through the admin account, HTTP
/// (JMAP) accepting Bearer, Basic and the gateway's `X-User` (secret + loopback source), the
/// deny-list in the stack's Redis, the realm's administrator allowed to revoke.
/// Built from JSON so every key left out keeps the server's own default: the failed-login
/// budget is the documented one. No `http.public_url` (see [`config_for`]), so not validated.
pub fn base_config(env: &ServerEnv<'_>) -> anyhow::Result<Config> {
    let any = "127.0.0.1:0";
    let admins: Vec<&str> = env
        .realm
        .admin()
        .map(|a| a.mail.as_str())
        .into_iter()
        .collect();
    let value = json!({
        "server": {
            "hostname": "localhost",
            "log": "info,mail_oidc_server=debug",
            "admins": admins,
        },
        "tls": { "cert": env.cert, "key": env.key },
        "imap": { "listen": any, "listen_tls": any },
        "submission": { "listen": any, "listen_tls": any },
        "smtp": { "listen": any },
        "pop3": { "listen": any, "listen_tls": any },
        "sieve": { "listen": any },
        "http": {
            "listen": any,
            "gateway_public_url": env.gateway_public_url,
            "auth": {
                "strategies": ["bearer", "basic", "x-user"],
                "x_user_secret": env.x_user_secret,
                "x_user_trusted_sources": ["127.0.0.1/32"],
            },
        },
        "oidc": {
            "discovery_url": env.discovery_url,
            "audience": env.realm.client_ids(),
            "username_claim": "email",
        },
        "directory": {
            "kind": "ldap",
            "url": env.ldap_url,
            "base_dn": env.realm.people_dn,
            "bind_dn": env.realm.admin_dn,
            "bind_password": env.realm.admin_password,
        },
        "store": { "kind": "memory" },
        "revocation": { "store": "redis", "redis_url": env.redis_url },
        // Every HTTP request through the gateway comes from its address (README: raise it
        // there). A short grace keeps the stack's teardown within its SIGTERM wait.
        "limits": {
            "shutdown_grace_seconds": 2,
            "http": { "max_connections_per_address": 1024 },
        },
    });
    serde_json::from_value(value).context("building the server's base configuration")
}

/// [`start`] for a test server: with an HTTP listener and no `http.public_url`, it binds a
/// port chosen here and takes `http://127.0.0.1:<port>` as its public URL (the tests talk to
/// it directly); another port if that one was taken meanwhile.
pub async fn start_direct(
    binary: &Path,
    name: &str,
    config: Config,
    dir: &Path,
    log: &Path,
) -> anyhow::Result<ServerHandle> {
    let (Some(listen), None) = (config.http.listen, &config.http.public_url) else {
        return start(binary, name, config, dir, log).await;
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = match listen.port() {
            0 => free_port()?,
            port => port,
        };
        let addr = SocketAddr::new(listen.ip(), port);
        let mut config = config.clone();
        config.http.listen = Some(addr);
        config.http.public_url = Some(format!("http://{addr}"));
        match start(binary, name, config, dir, log).await {
            Err(e)
                if listen.port() == 0
                    && attempt < START_ATTEMPTS
                    && is_bind_failure(&format!("{e:#}")) =>
            {
                tracing::debug!(%addr, "server's HTTP port taken meanwhile; another one");
            }
            other => return other,
        }
    }
}

/// Writes `config` to `<dir>/<name>.toml` and starts the server; returns once the ready file
/// lists the bound addresses and (when there is a cleartext IMAP listener) IMAP greets.
pub async fn start(
    binary: &Path,
    name: &str,
    config: Config,
    dir: &Path,
    log: &Path,
) -> anyhow::Result<ServerHandle> {
    config
        .validate()
        .with_context(|| format!("invalid configuration for {name}"))?;
    std::fs::create_dir_all(dir)?;
    let config_path = dir.join(format!("{name}.toml"));
    let ready = dir.join(format!("{name}.ready.json"));
    let text = toml::to_string(&config).context("serialising the server configuration")?;
    std::fs::write(&config_path, text)?;
    let _ = std::fs::remove_file(&ready);
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(&config_path)
        .arg("--ready-file")
        .arg(&ready)
        .current_dir(dir);
    let mut process = ChildProcess::spawn(name, cmd, log)?;
    let deadline = Deadline::new(
        format!("{name} ready file {}", ready.display()),
        READY_TIMEOUT,
    );
    let addrs = loop {
        process.ensure_running()?;
        match read_ready(&ready) {
            Ok(addrs) => break addrs,
            Err(e) => {
                if let Err(timeout) = deadline.tick(&e).await {
                    bail!("{timeout}\n{}", tail(&process.log_of_this_run(), 40));
                }
            }
        }
    };
    // The listeners are bound before the ready file is written, so one attempt is enough: a
    // refused connection or a missing greeting is a broken server, not a slow one.
    if let Some(imap) = addrs.imap
        && let Err(e) = imap_greeting(imap).await
    {
        bail!(
            "{name} does not greet on IMAP {imap}: {e:#}\n{}",
            tail(&process.log_of_this_run(), 40)
        );
    }
    tracing::debug!(name, ?addrs, "server ready");
    Ok(ServerHandle {
        addrs,
        config,
        process,
    })
}

fn read_ready(path: &Path) -> anyhow::Result<BoundAddrs> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Connects and reads the first line; Ok when it is an untagged `* OK`.
pub async fn imap_greeting(addr: SocketAddr) -> anyhow::Result<String> {
    let probe = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut line = Vec::new();
        let mut buf = [0u8; 512];
        while !line.ends_with(b"\n") && line.len() < 4096 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            line.extend_from_slice(&buf[..n]);
        }
        anyhow::Ok(String::from_utf8_lossy(&line).into_owned())
    };
    let greeting = tokio::time::timeout(GREETING_TIMEOUT, probe)
        .await
        .context("no greeting in time")??;
    if greeting.starts_with("* OK") {
        Ok(greeting)
    } else {
        bail!("unexpected IMAP greeting {greeting:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_oidc_server::config::{DirectorySection, HttpStrategy};

    fn env(realm: &Realm) -> ServerEnv<'_> {
        ServerEnv {
            realm,
            discovery_url: "http://localhost:1/.well-known/openid-configuration",
            ldap_url: "ldap://127.0.0.1:2",
            cert: Path::new("/tmp/cert.pem"),
            key: Path::new("/tmp/key.pem"),
            x_user_secret: "gw-secret",
            redis_url: "redis://127.0.0.1:3",
            gateway_public_url: "https://127.0.0.1:4/oidc",
        }
    }

    /// The demo runs what README documents as the server's defaults, not the tests' budget,
    /// and sends pass-through clients to the gateway's HTTPS URL, not around it.
    #[test]
    fn the_demo_config_has_the_documented_defaults_and_the_gateways_public_url() {
        let realm = Realm::demo();
        let config = config_for(Profile::Demo, &env(&realm)).expect("demo config");
        let text = toml::to_string(&config).expect("toml");
        let demo = Config::parse(&text, Path::new("server.toml")).expect("valid as written");
        let defaults = Config::default();
        assert_eq!(demo.login_throttle, defaults.login_throttle);
        assert!(demo.login_throttle.enabled);
        assert_eq!(demo.login_throttle.free_failures_per_address, 10);
        assert_eq!(demo.login_throttle.free_failures_per_user, 5);
        assert_eq!(demo.login_throttle.max_delay_seconds, 300);
        let (l, d) = (&demo.limits, &defaults.limits);
        assert_eq!(
            [&l.imap, &l.submission, &l.smtp, &l.pop3, &l.sieve],
            [&d.imap, &d.submission, &d.smtp, &d.pop3, &d.sieve]
        );
        assert!(l.imap.max_connections_per_address < l.imap.max_connections);
        assert_eq!(
            demo.http.public_url.as_deref(),
            Some("https://127.0.0.1:4"),
            "the gateway's pass-through routes"
        );
        assert_eq!(
            demo.http.gateway_public_url.as_deref(),
            Some("https://127.0.0.1:4/oidc")
        );
    }

    /// The tests' relaxations are the tests' own, and a test server is only valid once
    /// [`start_direct`] gave it its address as public URL.
    #[test]
    fn the_test_config_is_relaxed_and_needs_its_direct_url() {
        let realm = Realm::demo();
        let mut config = config_for(Profile::Tests, &env(&realm)).expect("test config");
        assert_eq!(
            config.login_throttle.free_failures_per_address,
            LOGIN_THROTTLE_FREE_FAILURES
        );
        assert_eq!(
            config.limits.imap.max_connections_per_address,
            config.limits.imap.max_connections
        );
        assert_eq!(config.http.public_url, None);
        let err = config
            .validate()
            .expect_err("behind the gateway without a public URL");
        assert!(err.to_string().contains("http.public_url"), "{err}");
        config.http.public_url = Some("http://127.0.0.1:5".into());
        config.validate().expect("valid with its direct URL");
    }

    #[test]
    fn base_config_survives_the_toml_round_trip() {
        let realm = Realm::demo();
        let mut config = config_for(Profile::Tests, &env(&realm)).expect("base config");
        config.http.public_url = Some("http://127.0.0.1:5".into());
        let text = toml::to_string(&config).expect("toml");
        let parsed = Config::parse(&text, Path::new("server.toml")).expect("parses back");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        assert_eq!(parsed.imap.listen, Some(any));
        assert_eq!(parsed.imap.listen_tls, Some(any));
        assert_eq!(parsed.submission.listen, Some(any));
        assert_eq!(parsed.submission.listen_tls, Some(any));
        assert_eq!(parsed.smtp.listen, Some(any));
        assert_eq!(parsed.pop3.listen, Some(any));
        assert_eq!(parsed.pop3.listen_tls, Some(any));
        assert_eq!(parsed.sieve.listen, Some(any));
        assert_eq!(parsed.http.listen, Some(any));
        assert_eq!(
            parsed.http.auth.strategies,
            [
                HttpStrategy::Bearer,
                HttpStrategy::Basic,
                HttpStrategy::XUser
            ]
        );
        assert_eq!(parsed.http.auth.x_user_secret.as_deref(), Some("gw-secret"));
        assert_eq!(parsed.http.auth.x_user_trusted_sources, ["127.0.0.1/32"]);
        assert_eq!(
            parsed.http.gateway_public_url.as_deref(),
            Some("https://127.0.0.1:4/oidc")
        );
        let oidc = parsed.oidc.expect("oidc");
        assert_eq!(oidc.audience, ["mail-oidc", "webmail"]);
        assert_eq!(oidc.username_claim, "email");
        assert_eq!(
            oidc.discovery_url.as_deref(),
            Some("http://localhost:1/.well-known/openid-configuration")
        );
        match parsed.directory {
            DirectorySection::Ldap(ldap) => {
                assert_eq!(ldap.url, "ldap://127.0.0.1:2");
                assert_eq!(ldap.base_dn, "ou=people,dc=example,dc=com");
                assert_eq!(ldap.bind_dn.as_deref(), Some("cn=admin,dc=example,dc=com"));
            }
            other => panic!("expected LDAP directory, got {other:?}"),
        }
        assert_eq!(parsed.tls.expect("tls").cert, Path::new("/tmp/cert.pem"));
        assert_eq!(
            parsed.revocation.redis_url.as_deref(),
            Some("redis://127.0.0.1:3")
        );
        assert_eq!(parsed.server.admins, ["mailadmin@example.com"]);
        assert!(parsed.login_throttle.enabled);
        assert_eq!(
            parsed.login_throttle.free_failures_per_address,
            LOGIN_THROTTLE_FREE_FAILURES
        );
        assert_eq!(
            parsed.login_throttle.free_failures_per_user,
            LOGIN_THROTTLE_FREE_FAILURES
        );
    }
}
