//! The OIDC gateway in front of the server's HTTP side: Apache httpd with mod_oauth2 (the native
//! stand-in for APISIX `openid-connect`, see shared/reference/native-gateway/REPORT.md), run in the
//! foreground from a generated `httpd.conf` on a free loopback port.
//!
//! HTTPS only, with a certificate from the stack's CA (real JMAP clients only fetch
//! `https://<host>/.well-known/jmap`).
//!
//! - `/oidc/jmap`, `/oidc/jmap/ws`, `/oidc/.well-known/jmap`, `/oidc/upload/..`,
//!   `/oidc/download/..`: the bearer JWT is verified at the gateway (RS256 against the IdP's JWKS,
//!   `exp`, `iss`, `aud` by mod_oauth2; `nbf` by a mod_lua hook, as liboauth2 1.4 ignores it),
//!   then looked up in the deny-list in Redis (the server's keys: revoked `sid`, subject or user
//!   "revoked before" times); Redis unreachable is `503`, never a pass. The server then gets
//!   `X-User: <email claim>`, the token's session in `X-User-Iss/-Sub/-Sid/-Iat/-Exp` (trusted
//!   like `X-User`, so WebSockets opened here end on revocation), the shared secret header, and
//!   no `Authorization` header. The URLs in its answers come from the server's
//!   `http.gateway_public_url` (`https://127.0.0.1:<this port>/oidc`), not from any header.
//! - `/jmap`, `/jmap/ws`, `/.well-known/jmap`, `/upload/..`, `/download/..`: passed through
//!   unchanged (Basic and Bearer are the server's business), identity headers removed.
//!
//! Whatever the route, headers a client sends to choose an identity (`X-User`, the secret) or
//! that claim to describe the proxy chain (`X-Forwarded-*`, `Forwarded`) are dropped before
//! anything else runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::ports::{START_ATTEMPTS, free_port, is_bind_failure};
use super::process::{ChildProcess, find_program, tail};
use super::wait::Deadline;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Debian's module directory; override with `MAIL_OIDC_APACHE_MODULE_DIR`.
const MODULE_DIR: &str = "/usr/lib/apache2/modules";
/// Path prefix of the token-checked routes.
pub const OIDC_PREFIX: &str = "/oidc";
/// How long mod_oauth2 keeps the JWKS. A token whose `kid` is not in the cached set makes it
/// refetch at once, so a rotated-in key works immediately; this bounds how long a rotated-out
/// key keeps verifying tokens.
pub const JWKS_CACHE_SECONDS: u32 = 10;
/// Where Debian's lua-redis and lua-socket put their Lua 5.3 modules (mod_lua is Lua 5.3).
const LUA_PATH: &str = "/usr/share/lua/5.3/?.lua";
const LUA_CPATH: &str = "/usr/lib/x86_64-linux-gnu/lua/5.3/?.so";
/// Suffixes of the token-session headers, after the user header's name.
const SESSION_HEADERS: [(&str, &str); 5] = [
    ("Iss", "iss"),
    ("Sub", "sub"),
    ("Sid", "sid"),
    ("Iat", "iat"),
    ("Exp", "exp"),
];
/// Modules the configuration uses (file names under the module directory).
const MODULES: [(&str, &str); 13] = [
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("headers_module", "mod_headers.so"),
    ("setenvif_module", "mod_setenvif.so"),
    ("proxy_module", "mod_proxy.so"),
    ("proxy_http_module", "mod_proxy_http.so"),
    ("proxy_wstunnel_module", "mod_proxy_wstunnel.so"),
    ("oauth2_module", "mod_oauth2.so"),
    ("lua_module", "mod_lua.so"),
    ("socache_shmcb_module", "mod_socache_shmcb.so"),
    ("ssl_module", "mod_ssl.so"),
];
/// Server paths the gateway exposes, as (path, WebSocket); a path ending in `/` is a prefix.
/// Longer paths first: ProxyPass takes the first match. `/whoami` is the server's debugging
/// route naming the identity it sees.
const ROUTES: [(&str, bool); 6] = [
    ("/jmap/ws", true),
    ("/jmap", false),
    ("/.well-known/jmap", false),
    ("/upload/", false),
    ("/download/", false),
    ("/whoami", false),
];

/// Server paths anyone may fetch without a token, passed through outside `/oidc/`: the RFC 9728
/// metadata a 401's `resource_metadata` names (a client follows it before it has a token).
const PUBLIC_ROUTES: [&str; 1] = ["/.well-known/oauth-protected-resource"];

/// What the gateway needs to know about the IdP and the server.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The server's HTTP listener.
    pub backend: SocketAddr,
    /// Accepted `iss` (exact match).
    pub issuer: String,
    pub jwks_uri: String,
    /// Accepted `aud` values (any one of them); empty = `aud` not checked.
    pub audiences: Vec<String>,
    /// `realm` of the gateway's Bearer challenge.
    pub realm: String,
    /// Header carrying the asserted user (the server's `http.auth.x_user_header`).
    pub x_user_header: String,
    /// Header carrying the shared secret (the server's `http.auth.x_user_secret_header`).
    pub x_user_secret_header: String,
    pub x_user_secret: String,
    /// Clock skew allowed on `nbf` (the server's `oidc.leeway_seconds`).
    pub leeway_seconds: u64,
    /// `host:port` of the Redis holding the deny-list.
    pub redis_addr: String,
    /// The gateway's Redis ACL user (reads `<prefix>revoked:*` only); its password goes to an
    /// owner-only file that the Lua hook reads, never into the configuration.
    pub redis_user: super::redis::RedisUser,
    /// The server's `revocation.key_prefix`.
    pub key_prefix: String,
    /// PEM certificate and key for HTTPS.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

/// The mod_lua fixups hook, after mod_oauth2 verified the token (it passes the claims as
/// `OAUTH2_CLAIM_<name>` environment variables): refuses a token whose `nbf` lies ahead, then
/// one the deny-list names (the server's Redis keys, see the server's `revocation::keys`), and
/// forwards the token's session to the server. Redis unreachable: 503.
fn render_lua(s: &GatewaySettings, password_file: &Path) -> String {
    let (host, port) = s
        .redis_addr
        .rsplit_once(':')
        .unwrap_or((s.redis_addr.as_str(), "6379"));
    // Every session header, empty when the token lacks the claim: the server refuses a request
    // that lacks one, so a header dropped on the way cannot pass for a token without it.
    let forward: String = SESSION_HEADERS
        .iter()
        .map(|(suffix, claim)| {
            format!(
                "  forward(r, \"{}-{suffix}\", claim(r, \"{claim}\"))\n",
                s.x_user_header
            )
        })
        .collect();
    format!(
        r##"-- Generated by mail-oidc-harness: the `nbf` check liboauth2 1.4 lacks, and the deny-list.
require "apache2"
local redis = require "redis"

local LEEWAY = {leeway}
local REDIS_HOST = "{host}"
local REDIS_PORT = {port}
local REDIS_USER = "{redis_user}"
local REDIS_PASSWORD_FILE = "{password_file}"
local PREFIX = "{prefix}"
local REALM = "{realm}"
-- Lower-case prefixes of the headers the gateway sets and the server trusts.
local VOUCHED = {{ "{vouched}", "x-forwarded-", "forwarded" }}

-- Read once per Lua state from an owner-only file; nil (unreadable) fails every lookup closed.
local function read_password()
  local f = io.open(REDIS_PASSWORD_FILE, "r")
  if f == nil then return nil end
  local p = f:read("l")
  f:close()
  return p
end
local REDIS_PASSWORD = read_password()

local function claim(r, name)
  local v = r.subprocess_env["OAUTH2_CLAIM_" .. name]
  if v == nil or v == "" then return nil end
  return v
end

local function refuse(r, status, description)
  r.err_headers_out["WWW-Authenticate"] =
    'Bearer realm="' .. REALM .. '", error="invalid_token", error_description="' .. description .. '"'
  return status
end

local function unavailable(r, why)
  r:err("revocation store unreachable, refusing (fail closed): " .. tostring(why))
  r.err_headers_out["Retry-After"] = "10"
  return 503
end

-- One connection per Lua state (LuaScope thread: one per httpd thread), kept across requests;
-- a failed command drops it and tries once more on a fresh one before failing closed.
local client = nil

local function connected()
  if client ~= nil then return true, client end
  local ok, c = pcall(redis.connect, {{ host = REDIS_HOST, port = REDIS_PORT, timeout = 1 }})
  if not ok then return false, c end
  if REDIS_PASSWORD == nil then
    pcall(c.quit, c)
    return false, "the Redis password file " .. REDIS_PASSWORD_FILE .. " is unreadable"
  end
  local authed, why = pcall(c.auth, c, REDIS_USER, REDIS_PASSWORD)
  if not authed then
    pcall(c.quit, c)
    return false, why
  end
  client = c
  return true, c
end

local function lookup(keys)
  local last = "no answer"
  for attempt = 1, 2 do
    local ok, c = connected()
    if not ok then return false, c end
    local ok2, values = pcall(c.mget, c, table.unpack(keys))
    if ok2 and type(values) == "table" then return true, values end
    pcall(c.quit, c)
    client = nil
    last = values
  end
  return false, last
end

local function forward(r, header, value)
  r.headers_in[header] = value or ""
end

local function vouched(name)
  for _, p in ipairs(VOUCHED) do
    if string.sub(name, 1, #p) == p then return true end
  end
  return false
end

-- A header the client names in its Connection header is hop-by-hop: the proxy drops it after
-- this hook set it. Naming X-User-Sid would register the session without its sid, so a logout
-- of that sid would not end it. Such tokens are removed; the others (close, upgrade, the
-- client's own headers) stay.
local function guard_connection(r)
  local value = r.headers_in["Connection"]
  if value == nil then return end
  local kept, removed = {{}}, {{}}
  for token in string.gmatch(value, "[^,%s]+") do
    if vouched(string.lower(token)) then
      table.insert(removed, token)
    else
      table.insert(kept, token)
    end
  end
  if #removed == 0 then return end
  r:warn("the client's Connection header named " .. table.concat(removed, ", ") ..
    ": removed, the gateway forwards those headers")
  if #kept == 0 then
    r.headers_in["Connection"] = nil
  else
    r.headers_in["Connection"] = table.concat(kept, ", ")
  end
end

-- Tokens without `iat` cannot prove they came after a revocation: they count as before.
local function issued_no_later(iat, before)
  if before == nil then return false end
  if iat == nil then return true end
  return iat <= before
end

function check_token(r)
  guard_connection(r)
  local nbf = tonumber(claim(r, "nbf") or "")
  if nbf ~= nil and nbf > os.time() + LEEWAY then
    r:info("refusing a token that is not valid before " .. tostring(nbf))
    return refuse(r, 401, "Token not yet valid.")
  end
  -- An ID token is signed like an access token, for the same audience: tell them apart.
  local typ = claim(r, "typ")
  if (typ ~= nil and string.lower(typ) ~= "bearer") or claim(r, "nonce") ~= nil
     or claim(r, "at_hash") ~= nil or claim(r, "c_hash") ~= nil then
    r:info("refusing an ID token presented as an access token")
    return refuse(r, 401, "not_access_token: an ID token is not an access token")
  end
  local iss, sub, sid = claim(r, "iss") or "", claim(r, "sub") or "", claim(r, "sid")
  local user = string.lower(claim(r, "email") or "")
  local iat = tonumber(claim(r, "iat") or "")
  local none = PREFIX .. "revoked:none"
  local sid_key = none
  if sid ~= nil then sid_key = PREFIX .. "revoked:sid:" .. iss .. "#" .. sid end
  local keys = {{ sid_key, PREFIX .. "revoked:sub:" .. iss .. "#" .. sub,
    PREFIX .. "revoked:user:" .. user }}
  local ok, values = lookup(keys)
  if not ok then return unavailable(r, values) end
  local function value(i)
    local v = values[i]
    if v == nil or type(v) ~= "string" then return nil end
    return tonumber(v)
  end
  if sid ~= nil and value(1) ~= nil then
    r:info("refusing a token of a logged-out session")
    return refuse(r, 401, "revoked: session logged out at the identity provider")
  end
  if issued_no_later(iat, value(2)) or issued_no_later(iat, value(3)) then
    r:info("refusing a revoked token")
    return refuse(r, 401, "revoked: tokens of this subject or user are revoked")
  end
{forward}  return apache2.DECLINED
end
"##,
        leeway = s.leeway_seconds,
        realm = s.realm,
        prefix = s.key_prefix,
        redis_user = s.redis_user.name,
        password_file = password_file.display(),
        vouched = s.x_user_header.to_ascii_lowercase(),
    )
}

/// A running gateway. Dropping it stops httpd.
pub struct Gateway {
    base_url: String,
    addr: SocketAddr,
    start_duration: Duration,
    conf: PathBuf,
    process: ChildProcess,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("base_url", &self.base_url)
            .field("process", &self.process)
            .finish()
    }
}

impl Gateway {
    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From spawning httpd to its first correct answer.
    pub fn start_duration(&self) -> Duration {
        self.start_duration
    }

    /// The generated `httpd.conf`.
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Stops httpd now (SIGTERM to its process group, SIGKILL after a grace period).
    pub fn stop(&mut self) {
        self.process.terminate();
    }
}

/// Header names go into the configuration verbatim: only RFC 9110 token characters.
fn check_header_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        bail!("{name:?} is not a valid HTTP header name");
    }
    Ok(())
}

/// Values go inside double-quoted directive arguments and `Require` words.
fn check_value(what: &str, value: &str) -> anyhow::Result<()> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '\''))
    {
        bail!("gateway {what} {value:?} is empty or has characters httpd.conf cannot carry");
    }
    Ok(())
}

fn validate(s: &GatewaySettings) -> anyhow::Result<()> {
    check_header_name(&s.x_user_header)?;
    check_header_name(&s.x_user_secret_header)?;
    check_value("issuer", &s.issuer)?;
    check_value("JWKS URI", &s.jwks_uri)?;
    check_value("realm", &s.realm)?;
    check_value("shared secret", &s.x_user_secret)?;
    check_value("Redis address", &s.redis_addr)?;
    if s.key_prefix.contains(['"', '\\']) || s.key_prefix.chars().any(char::is_control) {
        bail!(
            "gateway key prefix {:?} cannot be written into Lua",
            s.key_prefix
        );
    }
    for aud in &s.audiences {
        check_value("audience", aud)?;
    }
    Ok(())
}

/// Whether httpd starts as root (then it must switch its workers to an unprivileged user).
fn running_as_root() -> bool {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::geteuid() == 0 }
}

/// A root-started httpd runs its workers as `nobody`, and they load the Lua hook at request
/// time: make the file readable and its directory and the stack's (0700) traversable, not
/// listable.
/// Writes `secret` to `path`, mode 0400, owned by the account the Lua hook runs as: this one,
/// or `nobody` when httpd starts as root and hands requests to `nobody`.
fn write_worker_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    crate::private::write_atomically(path, secret.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    if running_as_root() {
        let (uid, gid) = account_ids("nobody", "nogroup")?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("handing {} to nobody", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(())
}

/// The uid of `user` and the gid of `group`, from the system's databases.
fn account_ids(user: &str, group: &str) -> anyhow::Result<(u32, u32)> {
    let c_user = std::ffi::CString::new(user)?;
    let c_group = std::ffi::CString::new(group)?;
    // SAFETY: getpwnam/getgrnam read static buffers; the values are copied out at once and the
    // harness calls them from one place only.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(c_user.as_ptr());
        let gr = libc::getgrnam(c_group.as_ptr());
        if pw.is_null() || gr.is_null() {
            bail!("no {user} user or {group} group on this system");
        }
        ((*pw).pw_uid, (*gr).gr_gid)
    };
    Ok((uid, gid))
}

fn let_workers_read(dir: &Path, file: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let mode = std::fs::metadata(d)?.permissions().mode();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o011))
            .with_context(|| format!("making {} traversable", d.display()))?;
    }
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("making {} readable", file.display()))?;
    Ok(())
}

/// Renders `httpd.conf` for a gateway in `dir` listening on `port`.
pub fn render_conf(
    s: &GatewaySettings,
    dir: &Path,
    port: u16,
    module_dir: &Path,
    as_root: bool,
) -> String {
    let d = dir.display();
    let backend = s.backend;
    let modules: String = MODULES
        .iter()
        .map(|(name, file)| {
            format!(
                "LoadModule {name} \"{}\"\n",
                module_dir.join(file).display()
            )
        })
        .collect();
    // Apache refuses to serve as root: a root-started parent hands requests to `nobody`. The
    // workers only use file descriptors the parent opened (logs, listener).
    let user = if as_root {
        "User nobody\nGroup nogroup\n"
    } else {
        ""
    };
    let audiences = if s.audiences.is_empty() {
        String::new()
    } else {
        let lines: String = s
            .audiences
            .iter()
            .map(|a| format!("            Require oauth2_claim aud:{a}\n"))
            .collect();
        format!("        <RequireAny>\n{lines}        </RequireAny>\n")
    };
    let mut proxy = String::new();
    for prefix in [OIDC_PREFIX, ""] {
        for (path, ws) in ROUTES {
            // Both prefixes share one backend worker per URL, which takes the parameters of its
            // first definition (a repeat would only log "Ignoring parameter").
            let first = prefix == OIDC_PREFIX;
            // Upload and download URLs carry ids and a file name: pass them as sent.
            let options = if ws && first {
                " upgrade=websocket"
            } else if ws {
                ""
            } else if path.ends_with('/') {
                " nocanon"
            } else {
                ""
            };
            proxy.push_str(&format!(
                "ProxyPass \"{prefix}{path}\" \"http://{backend}{path}\"{options}\n"
            ));
        }
    }
    for path in PUBLIC_ROUTES {
        proxy.push_str(&format!(
            "ProxyPass \"{path}\" \"http://{backend}{path}\"\n"
        ));
    }
    format!(
        r#"# Generated by mail-oidc-harness: OIDC gateway (Apache httpd + mod_oauth2) in front of the
# mail-oidc server's HTTP side at {backend}.
ServerRoot "{d}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port} https
PidFile "{d}/httpd.pid"
DefaultRuntimeDir "{d}/run"
Mutex pthread default
# stderr is the harness's log file for this process
ErrorLog /dev/stderr
LogLevel warn oauth2:info
{user}
{modules}
SSLEngine on
SSLCertificateFile "{cert}"
SSLCertificateKeyFile "{key}"
SSLProtocol -all +TLSv1.2 +TLSv1.3
SSLSessionCache "shmcb:{d}/run/ssl_scache(512000)"

LuaPackagePath "{LUA_PATH}"
LuaPackageCPath "{LUA_CPATH}"

StartServers 1
ServerLimit 2
ThreadsPerChild 32
MaxRequestWorkers 64
MinSpareThreads 8
MaxSpareThreads 64
KeepAlive On
Timeout 60
LogFormat "%h \"%r\" %>s %b user=%u %Dus" gateway
CustomLog /dev/stdout gateway
AllowEncodedSlashes NoDecode

ProxyRequests Off
# The server builds absolute URLs from its `http.gateway_public_url`, never from these headers
# (Host and X-Forwarded-Host carry what the client sent).
ProxyPreserveHost On
ProxyAddHeaders On

# Clients never choose the identity, never hold the secret and never shape the server's URLs.
# (`early`: before authentication; header names match case-insensitively.)
RequestHeader unset {xu} early
RequestHeader unset {xs} early
{unset_session}RequestHeader unset X-Forwarded-For early
RequestHeader unset X-Forwarded-Host early
RequestHeader unset X-Forwarded-Server early
RequestHeader unset X-Forwarded-Proto early
RequestHeader unset X-Forwarded-Prefix early
RequestHeader unset Forwarded early
RequestHeader set X-Forwarded-Proto "https"

<Location "{OIDC_PREFIX}/">
    AuthType oauth2
    AuthName "{realm}"
    # RS256 against the IdP's JWKS; `exp` required. `expiry=0`: no cache of verified tokens
    # (a cache hit skips the `exp` check). The JWKS is refetched when a `kid` is unknown.
    OAuth2TokenVerify jwks_uri "{jwks}" "verify.exp=required&expiry=0&jwks_uri.expiry={JWKS_CACHE_SECONDS}"
    # REMOTE_USER = the `email` claim (no email: 401); claims as OAUTH2_CLAIM_* env vars only.
    OAuth2TargetPass "prefix=OAUTH2_CLAIM_&headers=Off&envvars=On&remote_user_claim=email"
    # mod_oauth2 does not check iss, aud (nor nbf: see gateway.lua) in jwks_uri mode.
    <RequireAll>
        Require valid-user
        Require oauth2_claim iss:{issuer}
{audiences}    </RequireAll>
    # An authorization failure (iss/aud) is a bare 401: add the RFC 6750 challenge.
    Header always set WWW-Authenticate "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"Token issuer or audience not accepted.\"" "expr=%{{REQUEST_STATUS}} == 401 && -z resp('WWW-Authenticate')"
    # nbf, then the deny-list in Redis (503 when unreachable), then the session headers.
    LuaScope thread
    LuaHookFixups "{d}/gateway.lua" check_token
    RequestHeader set {xu} "expr=%{{REMOTE_USER}}"
    RequestHeader set {xs} "{secret}"
    RequestHeader set X-Forwarded-Prefix "{OIDC_PREFIX}"
    # The server must rely on the gateway's assertion, not re-check the token.
    RequestHeader unset Authorization
</Location>

{proxy}
# A Location header pointing at the server's own address is rewritten to the gateway, on the
# route the request came by. Per-Location ProxyPassReverse entries would not do (the
# server-level ones are tried first), and SetEnv comes too late for the interpolation.
# httpd warns at start-up that ${{GATEWAY_PREFIX}} is no Define: it is a request variable.
SetEnvIf Request_URI "^/+{prefix_name}/" GATEWAY_PREFIX={OIDC_PREFIX}
ProxyPassInterpolateEnv On
ProxyPassReverse "${{GATEWAY_PREFIX}}/" "http://{backend}/" interpolate
"#,
        xu = s.x_user_header,
        xs = s.x_user_secret_header,
        realm = s.realm,
        jwks = s.jwks_uri,
        issuer = s.issuer,
        secret = s.x_user_secret,
        prefix_name = OIDC_PREFIX.trim_start_matches('/'),
        cert = s.tls_cert.display(),
        key = s.tls_key.display(),
        unset_session = SESSION_HEADERS
            .iter()
            .map(|(suffix, _)| format!("RequestHeader unset {}-{suffix} early\n", s.x_user_header))
            .collect::<String>(),
    )
}

/// Writes the configuration, starts httpd and returns once it answers an unauthenticated
/// `/oidc/jmap` with its own 401 challenge. `first_port`: the port to try first.
pub async fn start(
    settings: &GatewaySettings,
    dir: &Path,
    log: &Path,
    http: &reqwest::Client,
    ca_pem: &str,
    first_port: Option<u16>,
) -> anyhow::Result<Gateway> {
    validate(settings)?;
    // The probe speaks HTTPS to the gateway, trusting the stack's CA.
    let http = &https_client(http, ca_pem)?;
    let program = find_program("apache2")?;
    let module_dir = PathBuf::from(
        std::env::var("MAIL_OIDC_APACHE_MODULE_DIR").unwrap_or_else(|_| MODULE_DIR.to_string()),
    );
    if !module_dir.join("mod_oauth2.so").is_file() {
        bail!(
            "{} missing: install libapache2-mod-oauth2 (scripts/install-deps.sh)",
            module_dir.join("mod_oauth2.so").display()
        );
    }
    let redis_lua = Path::new(LUA_PATH.trim_end_matches("?.lua")).join("redis.lua");
    if !redis_lua.is_file() {
        bail!(
            "{} missing: install lua-redis and lua-socket (scripts/install-deps.sh)",
            redis_lua.display()
        );
    }
    std::fs::create_dir_all(dir.join("run"))?;
    let lua = dir.join("gateway.lua");
    let password_file = dir.join("redis.pass");
    std::fs::write(&lua, render_lua(settings, &password_file))?;
    write_worker_secret(&password_file, &settings.redis_user.password)?;
    if running_as_root() {
        let_workers_read(dir, &lua)?;
    }
    let conf = dir.join("httpd.conf");
    let mut last_error = None;
    for attempt in 0..START_ATTEMPTS {
        // The server's `http.gateway_public_url` names the port chosen in advance; another one
        // only if that was taken meanwhile (the caller then restarts the server).
        let port = match (attempt, first_port) {
            (0, Some(port)) => port,
            _ => free_port()?,
        };
        std::fs::write(
            &conf,
            render_conf(settings, dir, port, &module_dir, running_as_root()),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let started = Instant::now();
        let mut cmd = Command::new(&program);
        cmd.arg("-d")
            .arg(dir)
            .arg("-f")
            .arg(&conf)
            .arg("-DFOREGROUND")
            .current_dir(dir)
            // Debian's wrapper variables; unused by this configuration but read by some builds.
            .env("APACHE_RUN_DIR", dir.join("run"))
            .env("APACHE_LOCK_DIR", dir.join("run"))
            .env("APACHE_LOG_DIR", dir)
            .env("APACHE_PID_FILE", dir.join("httpd.pid"));
        let mut process = ChildProcess::spawn("gateway", cmd, log)?;
        let base_url = format!("https://127.0.0.1:{port}");
        match wait_ready(&mut process, &base_url, http).await {
            Ok(()) => {
                let start_duration = started.elapsed();
                tracing::debug!(%base_url, ?start_duration, "gateway ready");
                return Ok(Gateway {
                    base_url,
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    start_duration,
                    conf,
                    process,
                });
            }
            Err(e) if is_bind_failure(&process.log_of_this_run()) => {
                tracing::info!(port, "the gateway could not bind; retrying on another port");
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the gateway did not start")))
}

fn https_client(_plain: &reqwest::Client, ca_pem: &str) -> anyhow::Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("the stack's CA")?;
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the gateway probe client")
}

async fn wait_ready(
    process: &mut ChildProcess,
    base_url: &str,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    let url = format!("{base_url}{OIDC_PREFIX}/jmap");
    let deadline = Deadline::new(format!("the gateway at {url}"), READY_TIMEOUT);
    loop {
        process.ensure_running()?;
        match probe(http, &url).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                if let Err(timeout) = deadline.tick(format!("{e:#}")).await {
                    bail!("{timeout}\n{}", tail(&process.log_of_this_run(), 40));
                }
            }
        }
    }
}

/// Ok when `url` answers 401 with a Bearer challenge (our gateway, not whatever holds the port).
async fn probe(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let resp = http.get(url).send().await?;
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if status == reqwest::StatusCode::UNAUTHORIZED && challenge.starts_with("Bearer") {
        Ok(())
    } else {
        bail!("answered {status} with WWW-Authenticate {challenge:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GatewaySettings {
        GatewaySettings {
            backend: "127.0.0.1:4242".parse().expect("addr"),
            issuer: "http://localhost:5000".into(),
            jwks_uri: "http://localhost:5000/oauth2/jwks".into(),
            audiences: vec!["mail-oidc".into(), "webmail".into()],
            realm: "mail-oidc".into(),
            x_user_header: "X-User".into(),
            x_user_secret_header: "X-User-Secret".into(),
            x_user_secret: "s3cret".into(),
            leeway_seconds: 30,
            redis_addr: "127.0.0.1:6390".into(),
            redis_user: super::super::redis::RedisUser {
                name: "mail-oidc-gateway".into(),
                password: "redis-secret".into(),
            },
            key_prefix: "mail-oidc:".into(),
            tls_cert: PathBuf::from("/tmp/gw/cert.pem"),
            tls_key: PathBuf::from("/tmp/gw/key.pem"),
        }
    }

    #[test]
    fn conf_has_the_security_essentials() {
        let conf = render_conf(
            &settings(),
            Path::new("/tmp/gw"),
            8080,
            Path::new(MODULE_DIR),
            false,
        );
        for needle in [
            "Listen 127.0.0.1:8080 https",
            "SSLEngine on",
            "SSLCertificateFile \"/tmp/gw/cert.pem\"",
            "SSLCertificateKeyFile \"/tmp/gw/key.pem\"",
            "RequestHeader set X-Forwarded-Proto \"https\"",
            "RequestHeader unset X-User early",
            "RequestHeader unset X-User-Sid early",
            "RequestHeader unset X-User-Sub early",
            "RequestHeader unset X-User-Iat early",
            "RequestHeader unset X-User-Secret early",
            "RequestHeader unset X-Forwarded-Prefix early",
            "OAuth2TokenVerify jwks_uri \"http://localhost:5000/oauth2/jwks\"",
            "remote_user_claim=email",
            "Require oauth2_claim iss:http://localhost:5000",
            "Require oauth2_claim aud:mail-oidc",
            "Require oauth2_claim aud:webmail",
            "RequestHeader set X-User \"expr=%{REMOTE_USER}\"",
            "RequestHeader set X-User-Secret \"s3cret\"",
            "RequestHeader set X-Forwarded-Prefix \"/oidc\"",
            "RequestHeader unset Authorization",
            "LuaHookFixups \"/tmp/gw/gateway.lua\" check_token",
            "ProxyPass \"/oidc/jmap/ws\" \"http://127.0.0.1:4242/jmap/ws\" upgrade=websocket",
            "ProxyPass \"/jmap/ws\" \"http://127.0.0.1:4242/jmap/ws\"\n",
            "ProxyPass \"/jmap\" \"http://127.0.0.1:4242/jmap\"\n",
            "ProxyPass \"/.well-known/oauth-protected-resource\" \"http://127.0.0.1:4242/.well-known/oauth-protected-resource\"\n",
            "ProxyPass \"/oidc/download/\" \"http://127.0.0.1:4242/download/\" nocanon",
            "SetEnvIf Request_URI \"^/+oidc/\" GATEWAY_PREFIX=/oidc\n",
            "ProxyPassReverse \"${GATEWAY_PREFIX}/\" \"http://127.0.0.1:4242/\" interpolate",
        ] {
            assert!(conf.contains(needle), "missing {needle:?} in:\n{conf}");
        }
        assert!(!conf.contains("User nobody"));
        // The secret is set only inside the token-checked location.
        let location = conf
            .split("<Location \"/oidc/\">")
            .nth(1)
            .and_then(|rest| rest.split("</Location>").next())
            .expect("oidc location");
        assert!(location.contains("s3cret"));
        assert_eq!(conf.matches("s3cret").count(), 1);
    }

    #[test]
    fn lua_checks_the_server_keys_and_forwards_the_session() {
        let lua = render_lua(&settings(), Path::new("/tmp/gw/redis.pass"));
        for needle in [
            "local REDIS_HOST = \"127.0.0.1\"",
            "local REDIS_PORT = 6390",
            "local PREFIX = \"mail-oidc:\"",
            "PREFIX .. \"revoked:sid:\" .. iss .. \"#\" .. sid",
            "PREFIX .. \"revoked:sub:\" .. iss .. \"#\" .. sub",
            "PREFIX .. \"revoked:user:\" .. user",
            "return 503",
            "claim(r, \"at_hash\") ~= nil",
            "forward(r, \"X-User-Sid\", claim(r, \"sid\"))",
            "forward(r, \"X-User-Iat\", claim(r, \"iat\"))",
            "local REDIS_USER = \"mail-oidc-gateway\"",
            "local REDIS_PASSWORD_FILE = \"/tmp/gw/redis.pass\"",
            "local VOUCHED = { \"x-user\", \"x-forwarded-\", \"forwarded\" }",
        ] {
            assert!(lua.contains(needle), "missing {needle:?} in:\n{lua}");
        }
        assert!(
            !lua.contains("redis-secret"),
            "the password stays out of the script"
        );
    }

    #[test]
    fn root_runs_workers_as_nobody() {
        let conf = render_conf(
            &settings(),
            Path::new("/tmp/gw"),
            1,
            Path::new(MODULE_DIR),
            true,
        );
        assert!(conf.contains("User nobody\nGroup nogroup\n"));
    }

    #[test]
    fn refuses_values_that_would_break_the_conf() {
        let mut s = settings();
        s.x_user_secret = "a\"b".into();
        assert!(validate(&s).is_err());
        let mut s = settings();
        s.x_user_header = "X-User\nEvil: 1".into();
        assert!(validate(&s).is_err());
        let mut s = settings();
        s.issuer = "http://a b".into();
        assert!(validate(&s).is_err());
        assert!(validate(&settings()).is_ok());
    }

    /// `apache2 -t` accepts the rendered configuration (skipped without apache2/mod_oauth2).
    #[test]
    fn httpd_accepts_the_conf() {
        let (Ok(apache), true) = (
            find_program("apache2"),
            Path::new(MODULE_DIR).join("mod_oauth2.so").is_file(),
        ) else {
            eprintln!("apache2 or mod_oauth2 not installed; skipping");
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("run")).expect("run dir");
        let conf = dir.path().join("httpd.conf");
        let pki = super::super::pki::generate(&dir.path().join("pki")).expect("certificates");
        let settings = GatewaySettings {
            tls_cert: pki.cert.clone(),
            tls_key: pki.key.clone(),
            ..settings()
        };
        std::fs::write(
            dir.path().join("gateway.lua"),
            render_lua(&settings, &dir.path().join("redis.pass")),
        )
        .expect("lua");
        std::fs::write(
            &conf,
            render_conf(
                &settings,
                dir.path(),
                1,
                Path::new(MODULE_DIR),
                running_as_root(),
            ),
        )
        .expect("write conf");
        let out = Command::new(apache)
            .arg("-d")
            .arg(dir.path())
            .arg("-f")
            .arg(&conf)
            .arg("-t")
            .output()
            .expect("run apache2 -t");
        assert!(
            out.status.success(),
            "apache2 -t failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
