//! redis-server in the foreground on a free loopback port and an owner-only Unix socket. Its
//! append-only file lives in the stack's directory, so a stop and a start on the same port keep
//! the deny-list (as a production Redis would).
//!
//! Nobody gets in anonymously: the deny-list decides who is logged out, and the machine may have
//! other local accounts. Every client has an ACL user with the least it needs, its password in an
//! owner-only file (the ACL file itself holds only SHA-256 hashes):
//! - the server (`mail-oidc-server`): its key prefix (deny-list, login budget) and its channel;
//!   the commands its scripts and subscriber use, nothing that flushes, shuts down or configures;
//! - the gateway (`mail-oidc-gateway`): reads `<prefix>revoked:*`, nothing else;
//! - the IdP's session store (`lemonldap`): LemonLDAP::NG's session keys have no prefix, so every
//!   key, but only reads and writes (no FLUSH*, SHUTDOWN, CONFIG, no channels).
//!
//! The server and LemonLDAP::NG connect over the socket (mode 0600: only this account); the
//! gateway's workers may run as `nobody`, so it uses loopback TCP with its password.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ports::{START_ATTEMPTS, free_port, is_bind_failure};
use super::process::{ChildProcess, find_program, tail};
use super::random_token;
use super::wait::Deadline;

const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// The socket's name in the Redis directory.
const SOCKET: &str = "redis.sock";

/// One ACL user: its name and password (also in `<dir>/<name>.pass`, mode 0600).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUser {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for RedisUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl RedisUser {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            password: random_token(40),
        }
    }
}

/// The stack's Redis ACL users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAcl {
    pub server: RedisUser,
    pub gateway: RedisUser,
    /// LemonLDAP::NG's session store, when the IdP keeps its sessions in this Redis.
    pub idp: Option<RedisUser>,
    /// The server's `revocation.key_prefix` the rules are written for.
    pub key_prefix: String,
}

/// The compose deployment's demo passwords (committed, like its gateway secret: change them in
/// `compose/redis/users.acl` (hashes), `compose/server.toml` and `compose/apisix/apisix.yaml`).
pub const COMPOSE_SERVER_PASSWORD: &str = "compose-demo-redis-server-change-me";
pub const COMPOSE_GATEWAY_PASSWORD: &str = "compose-demo-redis-gateway-change-me";

impl RedisAcl {
    /// New random passwords for the server's `key_prefix`, the IdP's user included.
    pub fn generate(key_prefix: &str) -> Self {
        Self {
            server: RedisUser::new("mail-oidc-server"),
            gateway: RedisUser::new("mail-oidc-gateway"),
            idp: Some(RedisUser::new("lemonldap")),
            key_prefix: key_prefix.to_string(),
        }
    }

    /// New random passwords for the server and the gateway only (Keycloak keeps no sessions in
    /// Redis).
    pub fn generate_without_idp(key_prefix: &str) -> Self {
        Self {
            idp: None,
            ..Self::generate(key_prefix)
        }
    }

    /// The compose deployment's users, with its demo passwords.
    pub fn compose_demo(key_prefix: &str) -> Self {
        Self {
            server: RedisUser {
                name: "mail-oidc-server".into(),
                password: COMPOSE_SERVER_PASSWORD.into(),
            },
            gateway: RedisUser {
                name: "mail-oidc-gateway".into(),
                password: COMPOSE_GATEWAY_PASSWORD.into(),
            },
            idp: None,
            key_prefix: key_prefix.to_string(),
        }
    }

    /// The ACL as rule lines (for an ACL file, or one `--user` argument each).
    pub fn lines(&self) -> Vec<String> {
        self.render().lines().map(str::to_string).collect()
    }

    fn users(&self) -> impl Iterator<Item = &RedisUser> {
        [&self.server, &self.gateway]
            .into_iter()
            .chain(self.idp.as_ref())
    }

    /// The ACL file: `default` off, one line a user, passwords as SHA-256 hashes.
    pub fn render(&self) -> String {
        let hash = |u: &RedisUser| {
            Sha256::digest(u.password.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let p = &self.key_prefix;
        let mut out = format!(
            "user default off resetkeys resetchannels -@all\n\
             user {server} on #{server_hash} resetkeys ~{p}* resetchannels &{p}* -@all \
             +ping +hello +select +client|setname +get +mget +set +del +exists \
             +hget +hmget +hset +hincrby +pexpire +eval +evalsha +script|load +script|exists \
             +publish +subscribe +unsubscribe\n\
             user {gateway} on #{gateway_hash} resetkeys %R~{p}revoked:* resetchannels -@all \
             +ping +get +mget\n",
            server = self.server.name,
            server_hash = hash(&self.server),
            gateway = self.gateway.name,
            gateway_hash = hash(&self.gateway),
        );
        if let Some(idp) = &self.idp {
            out.push_str(&format!(
                "user {} on #{} resetkeys ~* resetchannels -@all +@read +@write \
                 +@connection +select -@dangerous +keys\n",
                idp.name,
                hash(idp)
            ));
        }
        out
    }

    /// Writes `users.acl` and one `<user>.pass` file a user into `dir`, every one mode 0600.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let acl = dir.join("users.acl");
        crate::private::write_atomically(&acl, self.render().as_bytes())
            .with_context(|| format!("writing {}", acl.display()))?;
        for user in self.users() {
            let file = dir.join(format!("{}.pass", user.name));
            crate::private::write_atomically(&file, user.password.as_bytes())
                .with_context(|| format!("writing {}", file.display()))?;
        }
        Ok(acl)
    }
}

pub struct Redis {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The owner-only Unix socket.
    pub socket: PathBuf,
    pub acl: RedisAcl,
    pub process: ChildProcess,
}

impl Redis {
    /// The server's `redis_url`: the socket, as its ACL user.
    pub fn server_url(&self) -> String {
        server_url(&self.socket, &self.acl.server)
    }
}

/// `redis+unix://<socket>?user=..&pass=..`.
pub fn server_url(socket: &Path, user: &RedisUser) -> String {
    let mut url = url::Url::parse("redis+unix:///").expect("a constant URL");
    url.set_path(&socket.to_string_lossy());
    url.query_pairs_mut()
        .append_pair("user", &user.name)
        .append_pair("pass", &user.password);
    url.to_string()
}

/// Starts redis-server on a free port; ready when it answers PING.
pub async fn start(dir: &Path, log: &Path, acl: RedisAcl) -> anyhow::Result<Redis> {
    start_on(dir, log, None, acl).await
}

/// Starts redis-server on `port` (tried once), or on a free port, with `acl`'s users (files
/// written into `dir`, kept when they are there already); ready when it answers PING.
pub async fn start_on(
    dir: &Path,
    log: &Path,
    port: Option<u16>,
    acl: RedisAcl,
) -> anyhow::Result<Redis> {
    let program = find_program("redis-server")?;
    crate::private::private_dir(dir)?;
    let acl_file = acl.write(dir)?;
    let socket = dir.join(SOCKET);
    let mut last_error = None;
    let attempts = if port.is_some() { 1 } else { START_ATTEMPTS };
    for _ in 0..attempts {
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&program);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "600"])
            .arg("--aclfile")
            .arg(&acl_file)
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--daemonize", "no", "--dir"])
            .arg(dir);
        let mut process = ChildProcess::spawn("redis", cmd, log)?;
        match wait_ready(&mut process, &addr).await {
            Ok(()) => {
                // Belt and braces: the socket is this account's alone, whatever redis did.
                std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("restricting {}", socket.display()))?;
                return Ok(Redis {
                    addr,
                    socket,
                    acl,
                    process,
                });
            }
            Err(e) if is_bind_failure(&process.log_of_this_run()) => {
                tracing::info!(port, "redis could not bind; retrying on another port");
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis did not start")))
}

async fn wait_ready(process: &mut ChildProcess, addr: &str) -> anyhow::Result<()> {
    let deadline = Deadline::new(format!("redis at {addr}"), READY_TIMEOUT);
    loop {
        process.ensure_running()?;
        match ping(addr).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                if let Err(timeout) = deadline.tick(&e).await {
                    bail!("{timeout}\n{}", tail(&process.log_of_this_run(), 40));
                }
            }
        }
    }
}

/// One anonymous inline PING: Ok on `+PONG`, or on the `NOAUTH` refusal of a Redis that lets
/// nobody in without a password (it answers, so it is up).
pub async fn ping(addr: &str) -> anyhow::Result<()> {
    let reply = command(addr, None, &["PING"]).await?;
    match reply {
        Reply::Simple(s) if s == "PONG" => Ok(()),
        Reply::Error(e) if e.starts_with("NOAUTH") => Ok(()),
        other => bail!("unexpected PING reply {other:?}"),
    }
}

/// A Redis reply, as far as the harness needs to tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    /// An array's elements, each rendered as text.
    Array(Vec<Option<String>>),
}

impl Reply {
    /// The error text, if Redis refused.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// Sends one command on a fresh TCP connection to `addr`, after `AUTH user password` when a
/// user is given (an `AUTH` refusal is returned as the reply). For tests and probes.
pub async fn command(addr: &str, user: Option<&RedisUser>, args: &[&str]) -> anyhow::Result<Reply> {
    let exchange = async {
        let stream = TcpStream::connect(addr).await?;
        let mut conn = RespConn::new(stream);
        if let Some(user) = user {
            let reply = conn.call(&["AUTH", &user.name, &user.password]).await?;
            if reply.error().is_some() {
                return Ok(reply);
            }
        }
        conn.call(args).await
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("redis did not answer within 5 s")?
}

struct RespConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RespConn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn call(&mut self, args: &[&str]) -> anyhow::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out).await?;
        let line = self.line().await?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        Ok(match kind {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Integer(rest.parse().context("integer reply")?),
            "$" => Reply::Bulk(self.bulk(rest).await?),
            "*" => {
                let n: i64 = rest.parse().context("array length")?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    let item = self.line().await?;
                    match item.strip_prefix('$') {
                        Some(len) => items.push(self.bulk(len).await?),
                        None => items.push(Some(item[1.min(item.len())..].to_string())),
                    }
                }
                Reply::Array(items)
            }
            _ => bail!("unexpected reply line {line:?}"),
        })
    }

    async fn bulk(&mut self, len: &str) -> anyhow::Result<Option<String>> {
        let len: i64 = len.parse().context("bulk length")?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        while self.buf.len() < len + 2 {
            self.fill().await?;
        }
        let data: Vec<u8> = self.buf.drain(..len + 2).take(len).collect();
        Ok(Some(String::from_utf8_lossy(&data).into_owned()))
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("redis closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_gives_each_client_only_its_part() {
        let acl = RedisAcl::generate("mail-oidc:");
        let text = acl.render();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("user {name} ")))
                .unwrap_or_else(|| panic!("no line for {name} in {text}"))
                .to_string()
        };
        assert!(line("default").contains(" off "), "{text}");
        let gateway = line("mail-oidc-gateway");
        assert!(gateway.contains(" %R~mail-oidc:revoked:* "), "{gateway}");
        assert!(!gateway.contains("+set") && !gateway.contains("+publish"));
        let server = line("mail-oidc-server");
        assert!(server.contains(" ~mail-oidc:* ") && server.contains(" &mail-oidc:* "));
        assert!(!server.contains("@all +@") && !server.contains("flush"));
        assert!(line("lemonldap").contains(" -@dangerous "), "{text}");
        // Hashes only: no password appears in the ACL file.
        for user in acl.users() {
            assert!(!text.contains(&user.password));
        }
        let without = RedisAcl::generate_without_idp("p:").render();
        assert!(!without.contains("lemonldap"), "{without}");
    }

    #[test]
    fn the_server_url_carries_the_socket_and_the_user() {
        let user = RedisUser {
            name: "mail-oidc-server".into(),
            password: "p&?=w".into(),
        };
        let url = server_url(Path::new("/tmp/stack x/redis/redis.sock"), &user);
        let parsed = url::Url::parse(&url).expect("url");
        assert_eq!(parsed.scheme(), "redis+unix");
        assert_eq!(parsed.path(), "/tmp/stack%20x/redis/redis.sock");
        let query: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(
            query,
            vec![
                ("user".into(), "mail-oidc-server".into()),
                ("pass".into(), "p&?=w".into())
            ]
        );
    }
}
