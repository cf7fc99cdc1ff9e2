//! One TOML file configures the whole server. Every key is documented in README.md.
//! Unknown keys are errors, so a typo is reported with its name at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    /// Certificate and key for STARTTLS and implicit TLS listeners.
    pub tls: Option<TlsSection>,
    #[serde(default)]
    pub imap: ImapSection,
    /// Submission (port 587/465 style): AUTH required to relay.
    #[serde(default)]
    pub submission: SubmissionSection,
    /// Inbound SMTP (port 25 style): no AUTH, only local recipients known to the directory.
    #[serde(default)]
    pub smtp: SmtpSection,
    /// POP3 (RFC 1939): INBOX download with USER/PASS and SASL.
    #[serde(default)]
    pub pop3: Pop3Section,
    /// ManageSieve (RFC 5804): per-user Sieve scripts.
    #[serde(default)]
    pub sieve: SieveSection,
    /// HTTP listener: JMAP and the well-known documents.
    #[serde(default)]
    pub http: HttpSection,
    /// What one JMAP request may ask of the server (parsed size, query filters).
    #[serde(default)]
    pub jmap: JmapSection,
    pub oidc: Option<OidcSection>,
    pub directory: DirectorySection,
    #[serde(default)]
    pub store: StoreSection,
    /// Back-channel logout, the deny-list and how live sessions end.
    #[serde(default)]
    pub revocation: RevocationSection,
    #[serde(default)]
    pub session: SessionSection,
    /// The failed-login budget per client address and per user name, across protocols.
    #[serde(default)]
    pub login_throttle: LoginThrottleSection,
    /// Deadlines, connection caps and shutdown grace of every listener.
    #[serde(default)]
    pub limits: LimitsSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Name in greetings and EHLO.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// `tracing` filter, e.g. `info` or `mail_oidc_server=debug`. `RUST_LOG` overrides it.
    #[serde(default = "default_log")]
    pub log: String,
    /// Directory users allowed to call `POST /admin/revoke` (canonical names, e.g. mail).
    #[serde(default)]
    pub admins: Vec<String>,
    /// Message bytes all sessions together may hold in memory while they arrive (SMTP DATA,
    /// IMAP literals); past it SMTP answers `452 4.3.1` and IMAP `NO [UNAVAILABLE]`.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            hostname: default_hostname(),
            log: default_log(),
            admins: Vec::new(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
        }
    }
}

fn default_max_in_flight_bytes() -> usize {
    256 * 1024 * 1024
}

fn default_hostname() -> String {
    "localhost".into()
}
fn default_log() -> String {
    "info".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// SASL mechanisms one protocol offers, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Absent: the protocol's defaults (see README).
    pub mechanisms: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapSection {
    /// Cleartext listener with STARTTLS; absent = none.
    pub listen: Option<SocketAddr>,
    /// Implicit-TLS listener; absent = none.
    pub listen_tls: Option<SocketAddr>,
    /// Offer PLAIN/LOGIN (and the LOGIN command) before TLS.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// Failed authentications before `* BYE`.
    #[serde(default = "default_max_auth_failures")]
    pub max_auth_failures: u32,
    /// Longest command line (or AUTHENTICATE line) accepted before authentication, in bytes.
    #[serde(default = "default_auth_line")]
    pub max_auth_line: usize,
    /// Longest literal accepted before authentication, in bytes.
    #[serde(default = "default_preauth_literal")]
    pub max_preauth_literal: usize,
    /// Longest literal accepted after authentication (APPEND), in bytes.
    #[serde(default = "default_max_message")]
    pub max_literal: usize,
    /// Idle time after which an unauthenticated connection is closed, in seconds.
    #[serde(default = "default_preauth_timeout")]
    pub preauth_timeout_seconds: u64,
    #[serde(default)]
    pub auth: AuthSection,
}

impl Default for ImapSection {
    fn default() -> Self {
        Self {
            listen: None,
            listen_tls: None,
            allow_plaintext_auth: false,
            max_auth_failures: default_max_auth_failures(),
            max_auth_line: default_auth_line(),
            max_preauth_literal: default_preauth_literal(),
            max_literal: default_max_message(),
            preauth_timeout_seconds: default_preauth_timeout(),
            auth: AuthSection::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pop3Section {
    /// Cleartext listener with STLS; absent = none.
    pub listen: Option<SocketAddr>,
    /// Implicit-TLS listener (port 995 style); absent = none.
    pub listen_tls: Option<SocketAddr>,
    /// Offer USER/PASS and PLAIN before TLS.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// Failed authentications before the connection is closed.
    #[serde(default = "default_max_auth_failures")]
    pub max_auth_failures: u32,
    /// Idle time after which an unauthenticated connection is closed, in seconds (also the
    /// limit of TLS handshakes).
    #[serde(default = "default_preauth_timeout")]
    pub preauth_timeout_seconds: u64,
    /// Idle time after which a logged-in session is closed without deleting anything, in
    /// seconds; RFC 1939 section 3 asks for at least 10 minutes.
    #[serde(default = "default_pop3_idle_timeout")]
    pub idle_timeout_seconds: u64,
    #[serde(default)]
    pub auth: AuthSection,
}

impl Default for Pop3Section {
    fn default() -> Self {
        Self {
            listen: None,
            listen_tls: None,
            allow_plaintext_auth: false,
            max_auth_failures: default_max_auth_failures(),
            preauth_timeout_seconds: default_preauth_timeout(),
            idle_timeout_seconds: default_pop3_idle_timeout(),
            auth: AuthSection::default(),
        }
    }
}

/// RFC 1939 section 3: the autologout timer is at least 10 minutes.
pub const MIN_POP3_IDLE_TIMEOUT: u64 = 600;

fn default_pop3_idle_timeout() -> u64 {
    MIN_POP3_IDLE_TIMEOUT
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionSection {
    /// Cleartext listener with STARTTLS; absent = none.
    pub listen: Option<SocketAddr>,
    /// Implicit-TLS listener; absent = none.
    pub listen_tls: Option<SocketAddr>,
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    #[serde(default = "default_max_auth_failures")]
    pub max_auth_failures: u32,
    /// Largest message accepted (advertised with SIZE), in bytes.
    #[serde(default = "default_max_message")]
    pub max_message_size: usize,
    #[serde(default)]
    pub auth: AuthSection,
}

impl Default for SubmissionSection {
    fn default() -> Self {
        Self {
            listen: None,
            listen_tls: None,
            allow_plaintext_auth: false,
            max_auth_failures: default_max_auth_failures(),
            max_message_size: default_max_message(),
            auth: AuthSection::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    /// Inbound listener (STARTTLS offered when `[tls]` is set); absent = none.
    pub listen: Option<SocketAddr>,
    #[serde(default = "default_max_message")]
    pub max_message_size: usize,
    /// Domains this server accepts mail for; empty = any domain, the directory decides.
    #[serde(default)]
    pub local_domains: Vec<String>,
    /// Refused recipients (unknown user, relay denied) one SMTP session may collect before
    /// `421 4.7.0` and close: stops directory enumeration.
    #[serde(default = "default_max_recipient_refusals")]
    pub max_recipient_refusals: u32,
    /// Refused recipients one client address (IPv6: its /64) may collect over all its sessions
    /// within 10 minutes; past it each further refusal ends its session the same way.
    #[serde(default = "default_max_recipient_refusals_per_address")]
    pub max_recipient_refusals_per_address: u32,
}

impl Default for SmtpSection {
    fn default() -> Self {
        Self {
            listen: None,
            max_message_size: default_max_message(),
            local_domains: Vec::new(),
            max_recipient_refusals: default_max_recipient_refusals(),
            max_recipient_refusals_per_address: default_max_recipient_refusals_per_address(),
        }
    }
}

fn default_max_recipient_refusals() -> u32 {
    10
}

fn default_max_recipient_refusals_per_address() -> u32 {
    50
}

/// ManageSieve (RFC 5804) and the per-user script store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SieveSection {
    /// Cleartext listener with STARTTLS (RFC 5804's port is 4190); absent = none.
    pub listen: Option<SocketAddr>,
    /// Offer PLAIN (and the bearer mechanisms) before TLS.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// Failed authentications before `BYE`.
    #[serde(default = "default_max_auth_failures")]
    pub max_auth_failures: u32,
    /// Idle time after which an unauthenticated connection is closed, in seconds.
    #[serde(default = "default_preauth_timeout")]
    pub preauth_timeout_seconds: u64,
    /// Idle time after which an authenticated connection is closed, in seconds.
    #[serde(default = "default_sieve_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// Largest script, in bytes (`NO (QUOTA/MAXSIZE)` above).
    #[serde(default = "default_max_script_size")]
    pub max_script_size: usize,
    /// Scripts per user (`NO (QUOTA/MAXSCRIPTS)` above).
    #[serde(default = "default_max_scripts")]
    pub max_scripts: usize,
    #[serde(default)]
    pub auth: AuthSection,
}

impl Default for SieveSection {
    fn default() -> Self {
        Self {
            listen: None,
            allow_plaintext_auth: false,
            max_auth_failures: default_max_auth_failures(),
            preauth_timeout_seconds: default_preauth_timeout(),
            idle_timeout_seconds: default_sieve_idle_timeout(),
            max_script_size: default_max_script_size(),
            max_scripts: default_max_scripts(),
            auth: AuthSection::default(),
        }
    }
}

fn default_sieve_idle_timeout() -> u64 {
    30 * 60
}
fn default_max_script_size() -> usize {
    64 * 1024
}
fn default_max_scripts() -> usize {
    20
}

/// Largest `sieve.max_script_size` accepted: the largest script the interpreter compiles.
pub const MAX_SIEVE_SCRIPT_SIZE: usize = crate::sieve::MAX_SCRIPT_SIZE;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// HTTP listener (plain HTTP: TLS is the gateway's job); absent = none.
    pub listen: Option<SocketAddr>,
    /// Base URL clients use to reach this server, for URLs in the JMAP session and the
    /// protected-resource metadata; absent = `http://<bound listen address>`, which is refused
    /// behind a gateway (x-user or `gateway_public_url` configured).
    pub public_url: Option<String>,
    /// Base URL clients use through the gateway (e.g. `https://mail.example.org/oidc`), for URLs
    /// in answers to requests authenticated by `x-user`; required with that strategy.
    pub gateway_public_url: Option<String>,
    /// Largest blob upload / request body, in bytes.
    #[serde(default = "default_max_message")]
    pub max_upload_size: usize,
    #[serde(default)]
    pub auth: HttpAuthSection,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: None,
            public_url: None,
            gateway_public_url: None,
            max_upload_size: default_max_message(),
            auth: HttpAuthSection::default(),
        }
    }
}

/// `[jmap]`: bounds on what one request may make the server build and compute, advertised in
/// the session under `https://mail-oidc.example/jmap/limits`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JmapSection {
    /// FilterConditions and FilterOperators one `/query` filter may hold in all.
    #[serde(default = "default_max_filter_conditions")]
    pub max_filter_conditions: usize,
    /// FilterOperators nested inside each other in one filter.
    #[serde(default = "default_max_filter_depth")]
    pub max_filter_depth: usize,
    /// JSON values (objects, arrays, strings, numbers, literals) one request may hold.
    #[serde(default = "default_max_request_values")]
    pub max_request_values: usize,
    /// How deep arrays and objects may nest in one request.
    #[serde(default = "default_max_request_depth")]
    pub max_request_depth: usize,
}

impl Default for JmapSection {
    fn default() -> Self {
        Self {
            max_filter_conditions: default_max_filter_conditions(),
            max_filter_depth: default_max_filter_depth(),
            max_request_values: default_max_request_values(),
            max_request_depth: default_max_request_depth(),
        }
    }
}

fn default_max_filter_conditions() -> usize {
    100
}
fn default_max_filter_depth() -> usize {
    10
}
fn default_max_request_values() -> usize {
    20_000
}
fn default_max_request_depth() -> usize {
    32
}

/// One way an HTTP request may authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpStrategy {
    /// `Authorization: Basic`, checked against the directory.
    Basic,
    /// `Authorization: Bearer`, checked by the OIDC validator.
    Bearer,
    /// Identity set by a trusted gateway in a header.
    XUser,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthSection {
    /// Strategies tried in this order; their challenges appear in this order in 401 replies.
    #[serde(default = "default_strategies")]
    pub strategies: Vec<HttpStrategy>,
    /// `realm` of the Basic and Bearer challenges.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Header carrying the gateway-asserted user.
    #[serde(default = "default_x_user_header")]
    pub x_user_header: String,
    /// Header carrying the shared secret that proves the request came through the gateway.
    #[serde(default = "default_x_user_secret_header")]
    pub x_user_secret_header: String,
    /// The shared secret; `x-user` needs it and/or `x_user_trusted_sources`.
    pub x_user_secret: Option<String>,
    /// Source networks (CIDR) allowed to assert `x-user`.
    #[serde(default)]
    pub x_user_trusted_sources: Vec<String>,
    /// Refuse a gateway-asserted user whose token session headers (`-Sub`, `-Sid`, `-Iat`,
    /// `-Exp`) are missing: without them single log-out cannot find the session.
    #[serde(default = "default_true")]
    pub x_user_requires_session: bool,
}

impl Default for HttpAuthSection {
    fn default() -> Self {
        Self {
            strategies: default_strategies(),
            realm: default_realm(),
            x_user_header: default_x_user_header(),
            x_user_secret_header: default_x_user_secret_header(),
            x_user_secret: None,
            x_user_trusted_sources: Vec::new(),
            x_user_requires_session: true,
        }
    }
}

fn default_strategies() -> Vec<HttpStrategy> {
    vec![HttpStrategy::Bearer, HttpStrategy::Basic]
}
fn default_realm() -> String {
    "mail-oidc".into()
}
fn default_x_user_header() -> String {
    "X-User".into()
}
fn default_x_user_secret_header() -> String {
    "X-User-Secret".into()
}

fn default_max_auth_failures() -> u32 {
    3
}
fn default_auth_line() -> usize {
    16 * 1024
}
fn default_preauth_literal() -> usize {
    16 * 1024
}
fn default_max_message() -> usize {
    25 * 1024 * 1024
}
fn default_preauth_timeout() -> u64 {
    60
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// `.../.well-known/openid-configuration`; gives issuer, JWKS and introspection endpoints.
    pub discovery_url: Option<String>,
    /// Explicit issuer (required without `discovery_url`; checked against discovery otherwise).
    pub issuer: Option<String>,
    /// Explicit JWKS URL (required without `discovery_url`).
    pub jwks_url: Option<String>,
    /// Accepted `aud` values; the token must contain at least one. Required unless
    /// `audience_check = false`.
    #[serde(default)]
    pub audience: Vec<String>,
    /// `false` accepts any `aud` (not recommended: tokens issued for other services work here).
    #[serde(default = "default_true")]
    pub audience_check: bool,
    /// Claim holding the user name, mapped through the directory.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Allowed JWS algorithms; `none` and HMAC are never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Scope named in RFC 7628 error challenges.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Minimum time between two JWKS refetches caused by unknown `kid`s, in seconds.
    #[serde(default = "default_refetch")]
    pub jwks_refetch_interval_seconds: u64,
    /// Timeout of each HTTP call to the IdP, in seconds.
    #[serde(default = "default_http_timeout")]
    pub http_timeout_seconds: u64,
    /// PEM CA certificate to trust for the IdP's HTTPS, in addition to the system roots.
    pub ca_cert: Option<PathBuf>,
    /// RFC 7662 introspection of every token (after local JWT checks).
    pub introspection: Option<IntrospectionSection>,
    /// How long a token whose signature and claims verified is remembered (by its SHA-256),
    /// never past its `exp`; 0 = verify every time. The directory lookup, introspection and
    /// the revocation check still run on every login.
    #[serde(default = "default_token_cache_seconds")]
    pub token_cache_seconds: u64,
    /// Most tokens remembered at once.
    #[serde(default = "default_cache_capacity")]
    pub token_cache_capacity: usize,
}

fn default_token_cache_seconds() -> u64 {
    300
}
fn default_cache_capacity() -> usize {
    10_000
}
fn default_directory_cache_seconds() -> u64 {
    10
}

fn default_true() -> bool {
    true
}

fn default_username_claim() -> String {
    "email".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_algorithms() -> Vec<String> {
    [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
fn default_scope() -> String {
    "openid email".into()
}
fn default_refetch() -> u64 {
    10
}
fn default_http_timeout() -> u64 {
    5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionSection {
    /// Introspection endpoint; absent = the one from discovery.
    pub endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// Re-introspect every live session's token this often (seconds) and end the inactive ones;
    /// for IdPs whose logout sends no back-channel call. Absent = never.
    pub recheck_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DirectorySection {
    Ldap(LdapSection),
    Static(StaticSection),
}

impl Default for DirectorySection {
    fn default() -> Self {
        DirectorySection::Static(StaticSection {
            path: PathBuf::from("users.toml"),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSection {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Where users live, e.g. `ou=people,dc=example,dc=com`.
    pub base_dn: String,
    /// Service account for searches; absent = anonymous search.
    pub bind_dn: Option<String>,
    pub bind_password: Option<String>,
    /// Search filter; `{user}` is replaced by the (escaped) login name.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Attribute holding the canonical mail address.
    #[serde(default = "default_mail_attribute")]
    pub mail_attribute: String,
    /// Timeout of each LDAP operation, in seconds.
    #[serde(default = "default_http_timeout")]
    pub timeout_seconds: u64,
    /// How long a user found by `lookup` is remembered (users not found and errors never
    /// are; password checks always ask LDAP); 0 = off.
    #[serde(default = "default_directory_cache_seconds")]
    pub cache_seconds: u64,
    /// Most users remembered at once.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
}

fn default_user_filter() -> String {
    "(&(objectClass=inetOrgPerson)(|(mail={user})(uid={user})))".into()
}
fn default_mail_attribute() -> String {
    "mail".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSection {
    /// TOML file with `[[user]]` tables (`name`, `password`); see README.
    pub path: PathBuf,
}

/// Where mail is kept, and how much of it per user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    #[serde(default)]
    pub kind: StoreKind,
    /// (disk) directory of the database; created owner-only if absent. Required with `disk`.
    pub path: Option<PathBuf>,
    /// Most bytes one user's messages may take, every mailbox copy counted.
    #[serde(default = "default_quota_bytes")]
    pub quota_bytes: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            kind: StoreKind::default(),
            path: None,
            quota_bytes: default_quota_bytes(),
        }
    }
}

/// 1 GiB.
fn default_quota_bytes() -> u64 {
    1 << 30
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Messages live in memory and are lost at exit.
    #[default]
    Memory,
    /// Messages, flags, UIDs, mailboxes and Sieve scripts survive restarts.
    Disk,
}

/// Where the deny-list lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationStoreKind {
    /// In this process: one instance only.
    #[default]
    Memory,
    /// Shared by every instance and read by the gateway.
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSection {
    #[serde(default)]
    pub store: RevocationStoreKind,
    /// `redis://host:port[/db]`; required with `store = "redis"`.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and of the channel (see README, "Redis keys").
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Lifetime of every deny-list entry, in seconds. Must exceed the longest access-token
    /// lifetime, or a revoked token works again once its entry is gone.
    #[serde(default = "default_revocation_ttl")]
    pub ttl_seconds: u64,
    /// `aud` values accepted in logout tokens (the IdP's client ids); absent = `oidc.audience`.
    pub logout_audiences: Option<Vec<String>>,
    /// Oldest logout token accepted, by `iat`, in seconds.
    #[serde(default = "default_logout_max_age")]
    pub logout_token_max_age_seconds: u64,
    /// Accept tokens when the store cannot be asked (default: refuse, a temporary failure).
    #[serde(default)]
    pub fail_open: bool,
    /// Deadline of each store operation, in milliseconds.
    #[serde(default = "default_store_timeout")]
    pub timeout_ms: u64,
}

impl Default for RevocationSection {
    fn default() -> Self {
        Self {
            store: RevocationStoreKind::Memory,
            redis_url: None,
            key_prefix: default_key_prefix(),
            ttl_seconds: default_revocation_ttl(),
            logout_audiences: None,
            logout_token_max_age_seconds: default_logout_max_age(),
            fail_open: false,
            timeout_ms: default_store_timeout(),
        }
    }
}

fn default_key_prefix() -> String {
    "mail-oidc:".into()
}
fn default_revocation_ttl() -> u64 {
    86_400
}
fn default_logout_max_age() -> u64 {
    120
}
fn default_store_timeout() -> u64 {
    1000
}

/// Where failed logins are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleStoreKind {
    /// In this process: one instance only.
    #[default]
    Memory,
    /// Shared by every instance.
    Redis,
}

/// `[login_throttle]`: after some free failures, each further attempt from the same address
/// or for the same user name waits a doubling delay (see README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginThrottleSection {
    /// Off: failures are only counted per connection (`max_auth_failures`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Failures from one client address (IPv6: its /64) before delays start.
    #[serde(default = "default_free_per_address")]
    pub free_failures_per_address: u32,
    /// Failures for one user name (from any address) before delays start.
    #[serde(default = "default_free_per_user")]
    pub free_failures_per_user: u32,
    /// The first delay, in seconds; each further failure doubles it.
    #[serde(default = "default_base_delay")]
    pub base_delay_seconds: u64,
    /// The longest delay, in seconds.
    #[serde(default = "default_max_delay")]
    pub max_delay_seconds: u64,
    /// A count is forgotten this many seconds after its latest failure.
    #[serde(default = "default_throttle_window")]
    pub window_seconds: u64,
    #[serde(default)]
    pub store: ThrottleStoreKind,
    /// `redis://host:port[/db]` with `store = "redis"`; absent = `revocation.redis_url`.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (`<prefix>throttle:...`).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Admit attempts uncounted when the store cannot be asked (default: refuse, a temporary
    /// failure).
    #[serde(default)]
    pub fail_open: bool,
    /// Deadline of each store operation, in milliseconds.
    #[serde(default = "default_store_timeout")]
    pub timeout_ms: u64,
}

impl Default for LoginThrottleSection {
    fn default() -> Self {
        Self {
            enabled: true,
            free_failures_per_address: default_free_per_address(),
            free_failures_per_user: default_free_per_user(),
            base_delay_seconds: default_base_delay(),
            max_delay_seconds: default_max_delay(),
            window_seconds: default_throttle_window(),
            store: ThrottleStoreKind::Memory,
            redis_url: None,
            key_prefix: default_key_prefix(),
            fail_open: false,
            timeout_ms: default_store_timeout(),
        }
    }
}

fn default_free_per_address() -> u32 {
    10
}
fn default_free_per_user() -> u32 {
    5
}
fn default_base_delay() -> u64 {
    1
}
fn default_max_delay() -> u64 {
    300
}
fn default_throttle_window() -> u64 {
    900
}

impl Config {
    /// The Redis URL of the failed-login budget: its own, else the revocation store's.
    pub fn login_throttle_redis_url(&self) -> Option<&str> {
        self.login_throttle
            .redis_url
            .as_deref()
            .or(self.revocation.redis_url.as_deref())
    }

    fn validate_login_throttle(&self) -> Result<(), ConfigError> {
        let t = &self.login_throttle;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("login_throttle.{key}"),
            message,
        };
        if t.store == ThrottleStoreKind::Redis {
            let Some(url) = self.login_throttle_redis_url() else {
                return Err(invalid(
                    "redis_url",
                    "required with store = \"redis\" (or set revocation.redis_url)".into(),
                ));
            };
            check_redis_url(url).map_err(|message| invalid("redis_url", message))?;
        }
        if t.base_delay_seconds == 0 {
            return Err(invalid("base_delay_seconds", "must be at least 1".into()));
        }
        if t.max_delay_seconds < t.base_delay_seconds {
            return Err(invalid(
                "max_delay_seconds",
                "must be at least base_delay_seconds".into(),
            ));
        }
        if t.window_seconds < t.max_delay_seconds {
            return Err(invalid(
                "window_seconds",
                "must be at least max_delay_seconds (a count must outlive its delay)".into(),
            ));
        }
        if t.timeout_ms == 0 {
            return Err(invalid("timeout_ms", "must be at least 1".into()));
        }
        check_key_prefix(&t.key_prefix).map_err(|message| invalid("key_prefix", message))?;
        Ok(())
    }
}

/// A `redis_url` value: `redis://[user:password@]host:port[/db]`, `rediss://...`, or
/// `redis+unix:///path/to/socket[?user=..&pass=..&db=..]` (the revocation store and the login
/// budget). The message never repeats the URL: it may carry a password.
fn check_redis_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => Ok(()),
        Ok(u) if matches!(u.scheme(), "redis+unix" | "unix") && u.path().len() > 1 => Ok(()),
        Ok(u) => Err(format!(
            "a {:?} URL is not a redis://, rediss:// or redis+unix:// URL with a host or socket path",
            u.scheme()
        )),
        Err(e) => Err(format!(
            "not a URL ({e}); expected redis://, rediss:// or redis+unix://"
        )),
    }
}

/// A `key_prefix` value: it starts Redis keys and channel names, so no spaces or control bytes.
fn check_key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(())
}

/// Shortest `revocation.ttl_seconds` accepted: entries must outlive the tokens they deny.
pub const MIN_REVOCATION_TTL: u64 = 300;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    /// End live sessions (IMAP, SMTP, WebSocket, EventSource) when their token's `exp` passes.
    #[serde(default)]
    pub end_at_token_expiry: bool,
}

impl Config {
    /// The `aud` values logout tokens must carry one of.
    pub fn logout_audiences(&self) -> Vec<String> {
        match &self.revocation.logout_audiences {
            Some(list) => list.clone(),
            None => self
                .oidc
                .as_ref()
                .map(|o| o.audience.clone())
                .unwrap_or_default(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            // toml's message names the key and shows the line.
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-key checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tls_needed = [
            ("imap.listen_tls", self.imap.listen_tls.is_some()),
            (
                "submission.listen_tls",
                self.submission.listen_tls.is_some(),
            ),
            ("pop3.listen_tls", self.pop3.listen_tls.is_some()),
        ];
        for (key, used) in tls_needed {
            if used && self.tls.is_none() {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: "an implicit-TLS listener needs the [tls] section (cert, key)".into(),
                });
            }
        }
        if let Some(oidc) = &self.oidc {
            if oidc.discovery_url.is_none() && (oidc.issuer.is_none() || oidc.jwks_url.is_none()) {
                return Err(ConfigError::Invalid {
                    key: "oidc.discovery_url".into(),
                    message: "set oidc.discovery_url, or both oidc.issuer and oidc.jwks_url".into(),
                });
            }
            for alg in &oidc.algorithms {
                let upper = alg.to_ascii_uppercase();
                if upper == "NONE" || upper.starts_with("HS") {
                    return Err(ConfigError::Invalid {
                        key: "oidc.algorithms".into(),
                        message: format!("{alg} is never allowed (no `none`, no HMAC)"),
                    });
                }
            }
            if oidc.audience.is_empty() && oidc.audience_check {
                return Err(ConfigError::Invalid {
                    key: "oidc.audience".into(),
                    message: "required: the `aud` values this server accepts (usually the IdP's \
                              client ids); `oidc.audience_check = false` accepts any audience"
                        .into(),
                });
            }
            if self.logout_audiences().is_empty() {
                return Err(ConfigError::Invalid {
                    key: "revocation.logout_audiences".into(),
                    message: "required when oidc.audience is empty: logout tokens are only \
                              accepted for these client ids"
                        .into(),
                });
            }
            if oidc
                .introspection
                .as_ref()
                .is_some_and(|i| i.recheck_seconds == Some(0))
            {
                return Err(ConfigError::Invalid {
                    key: "oidc.introspection.recheck_seconds".into(),
                    message: "must be at least 1 (leave it out for no re-check)".into(),
                });
            }
            if oidc.discovery_url.is_none()
                && oidc
                    .introspection
                    .as_ref()
                    .is_some_and(|i| i.endpoint.is_none())
            {
                return Err(ConfigError::Invalid {
                    key: "oidc.introspection.endpoint".into(),
                    message: "needed when oidc.discovery_url is not set".into(),
                });
            }
        }
        let auth = &self.http.auth;
        if auth.strategies.contains(&HttpStrategy::XUser)
            && auth.x_user_secret.is_none()
            && auth.x_user_trusted_sources.is_empty()
        {
            return Err(ConfigError::Invalid {
                key: "http.auth.strategies".into(),
                message: "`x-user` needs http.auth.x_user_secret and/or \
                          http.auth.x_user_trusted_sources"
                    .into(),
            });
        }
        if auth.strategies.is_empty() {
            return Err(ConfigError::Invalid {
                key: "http.auth.strategies".into(),
                message: "empty list: leave the key out for the defaults".into(),
            });
        }
        for cidr in &auth.x_user_trusted_sources {
            if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
                return Err(ConfigError::Invalid {
                    key: "http.auth.x_user_trusted_sources".into(),
                    message: format!("{cidr:?} is not an address or CIDR network"),
                });
            }
        }
        if auth.strategies.contains(&HttpStrategy::XUser) && self.http.gateway_public_url.is_none()
        {
            // Else the only source would be request headers, which the client chooses.
            return Err(ConfigError::Invalid {
                key: "http.gateway_public_url".into(),
                message: "required with the `x-user` strategy: the gateway's public base URL \
                          (scheme, host, port, path prefix) for URLs in its responses"
                    .into(),
            });
        }
        let behind_gateway = auth.strategies.contains(&HttpStrategy::XUser)
            || self.http.gateway_public_url.is_some();
        if behind_gateway && self.http.listen.is_some() && self.http.public_url.is_none() {
            // The fallback, `http://<bound address>`, is the backend's own cleartext address:
            // a client following the session's URLs (or a challenge's resource_metadata) from
            // the gateway's pass-through routes would send its credentials around the gateway.
            return Err(ConfigError::Invalid {
                key: "http.public_url".into(),
                message: "required behind a gateway (the `x-user` strategy or                           `http.gateway_public_url` is configured): the URL clients reach this                           server at through the gateway's pass-through routes (e.g.                           `https://mail.example.org`), or the session would hand out the                           backend's own cleartext address"
                    .into(),
            });
        }
        self.validate_revocation()?;
        self.validate_login_throttle()?;
        for (key, failures) in [
            ("imap.max_auth_failures", self.imap.max_auth_failures),
            (
                "smtp.max_recipient_refusals",
                self.smtp.max_recipient_refusals,
            ),
            (
                "smtp.max_recipient_refusals_per_address",
                self.smtp.max_recipient_refusals_per_address,
            ),
            (
                "submission.max_auth_failures",
                self.submission.max_auth_failures,
            ),
        ] {
            if failures == 0 {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: "must be at least 1".into(),
                });
            }
        }
        self.validate_pop3()?;
        self.validate_sieve()?;
        self.validate_in_flight()?;
        self.validate_jmap()?;
        self.limits.validate()?;
        self.validate_store()?;
        if let Some(bad) = self.server.admins.iter().find(|a| a.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                key: "server.admins".into(),
                message: format!("{bad:?} is not a user name"),
            });
        }
        let lists = [
            ("imap.auth.mechanisms", &self.imap.auth.mechanisms),
            (
                "submission.auth.mechanisms",
                &self.submission.auth.mechanisms,
            ),
            ("pop3.auth.mechanisms", &self.pop3.auth.mechanisms),
            ("sieve.auth.mechanisms", &self.sieve.auth.mechanisms),
        ];
        for (key, list) in lists {
            if list.as_ref().is_some_and(|m| m.is_empty()) {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: "empty list: leave the key out for the defaults".into(),
                });
            }
        }
        Ok(())
    }

    /// The in-flight budget must fit the largest message any listener accepts, or that message
    /// could never arrive.
    fn validate_in_flight(&self) -> Result<(), ConfigError> {
        let largest = [
            ("imap.max_literal", self.imap.max_literal),
            (
                "submission.max_message_size",
                self.submission.max_message_size,
            ),
            ("smtp.max_message_size", self.smtp.max_message_size),
        ]
        .into_iter()
        .max_by_key(|(_, size)| *size);
        if let Some((key, size)) = largest
            && self.server.max_in_flight_bytes < size
        {
            return Err(ConfigError::Invalid {
                key: "server.max_in_flight_bytes".into(),
                message: format!(
                    "{} is less than {key} ({size}): such a message could never be received",
                    self.server.max_in_flight_bytes
                ),
            });
        }
        Ok(())
    }

    fn validate_jmap(&self) -> Result<(), ConfigError> {
        let j = &self.jmap;
        for (key, value) in [
            ("jmap.max_filter_conditions", j.max_filter_conditions),
            ("jmap.max_filter_depth", j.max_filter_depth),
            ("jmap.max_request_values", j.max_request_values),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: "must be at least 1".into(),
                });
            }
        }
        // Below 4 not even `{"using": [], "methodCalls": [["Core/echo", {...}, "c"]]}` fits;
        // above 128 serde_json's own recursion limit refuses first.
        if !(4..=128).contains(&j.max_request_depth) {
            return Err(ConfigError::Invalid {
                key: "jmap.max_request_depth".into(),
                message: "must be between 4 and 128".into(),
            });
        }
        Ok(())
    }

    fn validate_store(&self) -> Result<(), ConfigError> {
        let s = &self.store;
        if s.quota_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "store.quota_bytes".into(),
                message: "must be at least 1".into(),
            });
        }
        match (s.kind, &s.path) {
            (StoreKind::Disk, None) => Err(ConfigError::Invalid {
                key: "store.path".into(),
                message: "required with store.kind = \"disk\": the directory mail is kept in"
                    .into(),
            }),
            (StoreKind::Memory, Some(_)) => Err(ConfigError::Invalid {
                key: "store.path".into(),
                message: "only used with store.kind = \"disk\"".into(),
            }),
            _ => Ok(()),
        }
    }

    fn validate_pop3(&self) -> Result<(), ConfigError> {
        let p = &self.pop3;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("pop3.{key}"),
            message,
        };
        if p.max_auth_failures == 0 {
            return Err(invalid("max_auth_failures", "must be at least 1".into()));
        }
        if p.preauth_timeout_seconds == 0 {
            return Err(invalid(
                "preauth_timeout_seconds",
                "must be at least 1".into(),
            ));
        }
        if p.idle_timeout_seconds < MIN_POP3_IDLE_TIMEOUT {
            return Err(invalid(
                "idle_timeout_seconds",
                format!(
                    "{} is too short: RFC 1939 asks for at least {MIN_POP3_IDLE_TIMEOUT} \
                     (10 minutes)",
                    p.idle_timeout_seconds
                ),
            ));
        }
        Ok(())
    }

    fn validate_sieve(&self) -> Result<(), ConfigError> {
        let s = &self.sieve;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("sieve.{key}"),
            message,
        };
        if s.max_script_size == 0 || s.max_script_size > MAX_SIEVE_SCRIPT_SIZE {
            return Err(invalid(
                "max_script_size",
                format!(
                    "{} is out of range: 1 to {MAX_SIEVE_SCRIPT_SIZE} bytes",
                    s.max_script_size
                ),
            ));
        }
        if s.max_scripts == 0 {
            return Err(invalid("max_scripts", "must be at least 1".into()));
        }
        if s.max_auth_failures == 0 {
            return Err(invalid("max_auth_failures", "must be at least 1".into()));
        }
        if s.preauth_timeout_seconds == 0 {
            return Err(invalid(
                "preauth_timeout_seconds",
                "must be at least 1".into(),
            ));
        }
        if s.idle_timeout_seconds == 0 {
            return Err(invalid("idle_timeout_seconds", "must be at least 1".into()));
        }
        Ok(())
    }

    fn validate_revocation(&self) -> Result<(), ConfigError> {
        let r = &self.revocation;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("revocation.{key}"),
            message,
        };
        if r.store == RevocationStoreKind::Redis {
            let Some(url) = &r.redis_url else {
                return Err(invalid(
                    "redis_url",
                    "required with store = \"redis\"".into(),
                ));
            };
            check_redis_url(url).map_err(|message| invalid("redis_url", message))?;
        }
        if r.ttl_seconds < MIN_REVOCATION_TTL {
            return Err(invalid(
                "ttl_seconds",
                format!(
                    "{} is too short: entries must outlive the longest access token \
                     (at least {MIN_REVOCATION_TTL})",
                    r.ttl_seconds
                ),
            ));
        }
        if r.logout_token_max_age_seconds == 0 {
            return Err(invalid(
                "logout_token_max_age_seconds",
                "must be at least 1".into(),
            ));
        }
        if r.timeout_ms == 0 {
            return Err(invalid("timeout_ms", "must be at least 1".into()));
        }
        check_key_prefix(&r.key_prefix).map_err(|message| invalid("key_prefix", message))?;
        Ok(())
    }
}

/// `[limits]`: what slow, numerous or lingering clients may hold. One table per listener
/// family (`[limits.imap]` covers both IMAP listeners, each with its own caps).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// On shutdown, how long sessions get to finish after their goodbye before they are cut.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_seconds: u64,
    #[serde(default)]
    pub imap: ListenerLimitsSection,
    #[serde(default)]
    pub submission: ListenerLimitsSection,
    /// Inbound SMTP has no login, so its `login_timeout_seconds` is not used.
    #[serde(default)]
    pub smtp: ListenerLimitsSection,
    #[serde(default)]
    pub pop3: ListenerLimitsSection,
    #[serde(default)]
    pub sieve: ListenerLimitsSection,
    #[serde(default)]
    pub http: HttpLimitsSection,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            shutdown_grace_seconds: default_shutdown_grace(),
            imap: ListenerLimitsSection::default(),
            submission: ListenerLimitsSection::default(),
            smtp: ListenerLimitsSection::default(),
            pop3: ListenerLimitsSection::default(),
            sieve: ListenerLimitsSection::default(),
            http: HttpLimitsSection::default(),
        }
    }
}

/// Deadlines and caps of a line protocol's listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerLimitsSection {
    /// A command (line, SMTP DATA body, IMAP literal) must arrive completely within this many
    /// seconds of its first byte.
    #[serde(default = "default_command_timeout")]
    pub command_timeout_seconds: u64,
    /// A connection must log in within this many seconds of connecting, however busy it is.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_seconds: u64,
    /// A reply must be taken by the client within this many seconds (a client that stops
    /// reading is dropped).
    #[serde(default = "default_write_timeout")]
    pub write_timeout_seconds: u64,
    /// Open connections per listener; the next one gets the protocol's refusal.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections per client IP address per listener.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
}

impl Default for ListenerLimitsSection {
    fn default() -> Self {
        Self {
            command_timeout_seconds: default_command_timeout(),
            login_timeout_seconds: default_login_timeout(),
            write_timeout_seconds: default_write_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
        }
    }
}

/// Deadlines and caps of the HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimitsSection {
    /// A request's headers must arrive within this many seconds; the same clock bounds how
    /// long a keep-alive connection may wait for its next request.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: u64,
    /// A request must be answered (its body read, its handler done) within this many
    /// seconds, else `503`. WebSocket and EventSource streams are not bound by it once open.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Every write (responses, EventSource events, WebSocket frames) must be taken by the
    /// client within this many seconds, else the connection is dropped.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_seconds: u64,
    /// A JMAP WebSocket is pinged after this many seconds without traffic from the client.
    #[serde(default = "default_websocket_ping")]
    pub websocket_ping_seconds: u64,
    /// A JMAP WebSocket with no traffic from the client (pongs included) for this many
    /// seconds is closed (1001).
    #[serde(default = "default_websocket_idle")]
    pub websocket_idle_seconds: u64,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Behind a gateway every connection comes from the gateway's address: raise this there.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
}

impl Default for HttpLimitsSection {
    fn default() -> Self {
        Self {
            header_timeout_seconds: default_header_timeout(),
            request_timeout_seconds: default_request_timeout(),
            write_timeout_seconds: default_write_timeout(),
            websocket_ping_seconds: default_websocket_ping(),
            websocket_idle_seconds: default_websocket_idle(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
        }
    }
}

fn default_shutdown_grace() -> u64 {
    10
}
fn default_command_timeout() -> u64 {
    300
}
fn default_login_timeout() -> u64 {
    120
}
fn default_write_timeout() -> u64 {
    60
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_connections_per_address() -> usize {
    64
}
fn default_header_timeout() -> u64 {
    30
}
fn default_request_timeout() -> u64 {
    120
}
fn default_websocket_ping() -> u64 {
    30
}
fn default_websocket_idle() -> u64 {
    90
}

impl LimitsSection {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String| ConfigError::Invalid {
            key,
            message: "must be at least 1".into(),
        };
        for (name, l) in [
            ("imap", &self.imap),
            ("submission", &self.submission),
            ("smtp", &self.smtp),
            ("pop3", &self.pop3),
            ("sieve", &self.sieve),
        ] {
            for (key, value) in [
                ("command_timeout_seconds", l.command_timeout_seconds),
                ("login_timeout_seconds", l.login_timeout_seconds),
                ("write_timeout_seconds", l.write_timeout_seconds),
                ("max_connections", l.max_connections as u64),
                (
                    "max_connections_per_address",
                    l.max_connections_per_address as u64,
                ),
            ] {
                if value == 0 {
                    return Err(invalid(format!("limits.{name}.{key}")));
                }
            }
        }
        let h = &self.http;
        for (key, value) in [
            ("header_timeout_seconds", h.header_timeout_seconds),
            ("request_timeout_seconds", h.request_timeout_seconds),
            ("write_timeout_seconds", h.write_timeout_seconds),
            ("websocket_ping_seconds", h.websocket_ping_seconds),
            ("websocket_idle_seconds", h.websocket_idle_seconds),
            ("max_connections", h.max_connections as u64),
            (
                "max_connections_per_address",
                h.max_connections_per_address as u64,
            ),
        ] {
            if value == 0 {
                return Err(invalid(format!("limits.http.{key}")));
            }
        }
        if h.websocket_idle_seconds <= h.websocket_ping_seconds {
            return Err(ConfigError::Invalid {
                key: "limits.http.websocket_idle_seconds".into(),
                message: format!(
                    "{} must be longer than limits.http.websocket_ping_seconds ({}), so a \
                     client can answer a ping",
                    h.websocket_idle_seconds, h.websocket_ping_seconds
                ),
            });
        }
        Ok(())
    }
}

impl ListenerLimitsSection {
    pub fn command_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.command_timeout_seconds.max(1))
    }
    pub fn login_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.login_timeout_seconds.max(1))
    }
    pub fn write_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.write_timeout_seconds.max(1))
    }
}

#[cfg(test)]
mod redis_url_tests {
    use super::check_redis_url;

    #[test]
    fn credentials_tls_and_unix_sockets_are_accepted() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://mail-oidc-server:pw@127.0.0.1:6379/0",
            "rediss://user:pw@redis.example:6380",
            "redis+unix:///run/redis/redis.sock?user=mail-oidc-server&pass=pw",
            "unix:///run/redis.sock",
        ] {
            assert_eq!(check_redis_url(ok), Ok(()), "{ok}");
        }
    }

    /// The error goes to the start-up log: it must not repeat a password.
    #[test]
    fn refusals_never_repeat_the_url() {
        for bad in [
            "http://user:hunter2@127.0.0.1:6379",
            "redis+unix://user:hunter2@host",
            "hunter2",
        ] {
            let message = check_redis_url(bad).expect_err(bad);
            assert!(!message.contains("hunter2"), "{bad}: {message}");
        }
    }
}
