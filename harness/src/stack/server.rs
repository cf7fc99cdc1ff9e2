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
        let unbound = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        crate::suites::MailTarget {
            imaps: self.addrs.imap_tls.unwrap_or(unbound),
            submissions: self.addrs.submission_tls.unwrap_or(unbound),
            pop3s: self.addrs.pop3_tls,
            sieve: self.addrs.sieve,
            jmap_session: self
                .addrs
                .http
                .map(|a| format!("http://{a}/.well-known/jmap"))
                .unwrap_or_default(),
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

/// Failed logins the stack's server allows per address and per user name before delays.
pub const LOGIN_THROTTLE_FREE_FAILURES: u32 = 1_000_000;

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

/// Every listener (ManageSieve too) on 127.0.0.1:0, TLS from the stack's CA, OIDC against the IdP (every client id
/// is an accepted audience, user from `email`), users from LDAP through the admin account, HTTP
/// (JMAP) accepting Bearer, Basic and the gateway's `X-User` (secret + loopback source), the
/// deny-list in the stack's Redis, the realm's administrator allowed to revoke.
/// Built from JSON so every key left out keeps the server's own default.
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
        // The hostile-token and failure suites fail logins from 127.0.0.1 by the hundred, on
        // purpose: the budget stays on (in memory, so a Redis outage test keeps password
        // logins), but far out of their way.
        "login_throttle": {
            "store": "memory",
            "free_failures_per_address": LOGIN_THROTTLE_FREE_FAILURES,
            "free_failures_per_user": LOGIN_THROTTLE_FREE_FAILURES,
            "base_delay_seconds": 1,
            "max_delay_seconds": 1,
        },
        // Every client of the stack (the gateway, the tests, `mail-oidc bench` with its
        // ~110 connections) comes from 127.0.0.1: the per-address caps are raised to the
        // global ones. A short grace keeps the stack's teardown within its SIGTERM wait.
        "limits": {
            "shutdown_grace_seconds": 2,
            "imap": { "max_connections_per_address": 1024 },
            "submission": { "max_connections_per_address": 1024 },
            "smtp": { "max_connections_per_address": 1024 },
            "pop3": { "max_connections_per_address": 1024 },
            "sieve": { "max_connections_per_address": 1024 },
            "http": { "max_connections_per_address": 1024 },
        },
    });
    let config: Config =
        serde_json::from_value(value).context("building the server's base configuration")?;
    config.validate()?;
    Ok(config)
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

    #[test]
    fn base_config_survives_the_toml_round_trip() {
        let realm = Realm::demo();
        let config = base_config(&ServerEnv {
            realm: &realm,
            discovery_url: "http://localhost:1/.well-known/openid-configuration",
            ldap_url: "ldap://127.0.0.1:2",
            cert: Path::new("/tmp/cert.pem"),
            key: Path::new("/tmp/key.pem"),
            x_user_secret: "gw-secret",
            redis_url: "redis://127.0.0.1:3",
            gateway_public_url: "https://127.0.0.1:4/oidc",
        })
        .expect("base config");
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
