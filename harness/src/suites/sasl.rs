//! The SASL matrix, the same on every protocol (IMAP, SMTP, POP3, ManageSieve): bearer logins
//! with both mechanisms, with and without an initial response; hostile tokens answered with the
//! exact RFC 7628 error challenge and then refused; PLAIN and LOGIN against the directory;
//! plaintext mechanisms refused before TLS; `*` aborts and bad base64; another user's identity
//! refused; the failure limit. Endpoints and credentials in, a [`Report`] out.

use std::net::SocketAddr;

use anyhow::{Context, bail, ensure};
use async_trait::async_trait;

use super::{Account, Report, Spec};
use crate::clients::imap::ImapClient;
use crate::clients::pop3::Pop3Client;
use crate::clients::sasl::{AuthTurn, AuthVerdict, SaslClient};
use crate::clients::scram::{Binding, ScramClient};
use crate::clients::sieve::SieveClient;
use crate::clients::smtp::SmtpClient;
use crate::clients::{ClientResult, oauthbearer_payload, plain_payload, xoauth2_payload};

/// How to reach one protocol of the server under test.
#[async_trait]
pub trait SaslEndpoint: Send + Sync {
    type Client: SaslClient;
    /// `imap`, `smtp`, ... for check names.
    fn protocol(&self) -> &'static str;
    /// A session under TLS (implicit, or after STARTTLS), ready for AUTHENTICATE.
    async fn secure(&self) -> ClientResult<Self::Client>;
    /// A cleartext session before TLS, if the server has such a port.
    async fn cleartext(&self) -> Option<ClientResult<Self::Client>>;
    /// Host and port the OAUTHBEARER message names.
    fn host_port(&self) -> (String, u16);
}

/// What the matrix needs to know about the realm and the server's policy.
#[derive(Debug, Clone)]
pub struct SaslCredentials {
    /// A directory user, and a valid access token of theirs.
    pub account: Account,
    pub token: String,
    /// Another directory user (whose identity `account` must not take).
    pub other: Account,
    /// Tokens the server must refuse, by name (expired, wrong key, ...).
    pub hostile: Vec<(String, String)>,
    /// The `openid-configuration` URL the error challenge must name.
    pub discovery_url: String,
    /// Failed logins after which the server closes the connection, if known.
    pub failure_limit: Option<u32>,
}

/// One check of the matrix, before it runs.
#[derive(Debug, Clone)]
pub struct Planned {
    pub spec: Spec,
    pub name: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Offered,
    BearerLogin { mech: &'static str, ir: bool },
    Hostile { mech: &'static str, index: usize },
    AnotherIdentity,
    Plain { ir: bool },
    WrongPassword,
    Login,
    PlaintextBeforeTls,
    Abort,
    BadBase64,
    FailureLimit { limit: u32 },
}

/// `login.initial-response` or `login.continuation`.
fn ir_word(ir: bool) -> &'static str {
    if ir {
        "initial-response"
    } else {
        "continuation"
    }
}

/// The SASL-IR section of each protocol.
fn sasl_ir_section(p: &str) -> &'static str {
    match p {
        "imap" => "RFC 4959 §3",
        "smtp" => "RFC 4954 §4",
        "pop3" => "RFC 5034 §4",
        _ => "RFC 5804 §2.1",
    }
}

/// `Expired` -> `expired`, `BadSignature` -> `bad-signature`: the id segment of a token name.
pub fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out
}

/// The spec of "a hostile token is answered with the error challenge, then refused".
pub fn hostile_spec(p: &str, mech: &str, token_name: &str) -> Spec {
    let section = if mech == "OAUTHBEARER" {
        "RFC 7628 §3.2.2, §3.2.3; RFC 8725 §3.1"
    } else {
        "Google XOAUTH2 protocol (error response); RFC 8725 §3.1"
    };
    Spec::must(
        format!(
            "sasl.{p}.{}.hostile-token.{}",
            mech.to_ascii_lowercase(),
            kebab(token_name)
        ),
        format!("{mech}: a hostile token ({token_name}) gets the error challenge, then is refused"),
        p,
        section,
    )
}

/// The matrix's checks for protocol `p`, in the order they run.
pub fn plan(p: &str, hostile: &[String], failure_limit: Option<u32>) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut add = |spec: Spec, name: String, kind: Kind| out.push(Planned { spec, name, kind });
    add(
        Spec::should(
            format!("sasl.{p}.mechanisms-offered"),
            "OAUTHBEARER, XOAUTH2 and PLAIN offered under TLS",
            p,
            "RFC 7628 §3",
        ),
        format!("{p}: bearer and password mechanisms offered under TLS"),
        Kind::Offered,
    );
    for mech in ["OAUTHBEARER", "XOAUTH2"] {
        let m = mech.to_ascii_lowercase();
        for ir in [true, false] {
            let section = if mech == "OAUTHBEARER" {
                format!("RFC 7628 §3.1; {}", sasl_ir_section(p))
            } else {
                format!("Google XOAUTH2 protocol; {}", sasl_ir_section(p))
            };
            let title = format!("{mech} logs in with a real token ({})", ir_word(ir));
            let spec = if mech == "OAUTHBEARER" {
                Spec::must(
                    format!("sasl.{p}.{m}.login.{}", ir_word(ir)),
                    title,
                    p,
                    section,
                )
            } else {
                Spec::should(
                    format!("sasl.{p}.{m}.login.{}", ir_word(ir)),
                    title,
                    p,
                    section,
                )
            };
            add(
                spec,
                format!("{p}: {mech} (initial response: {ir}) logs in with a real token"),
                Kind::BearerLogin { mech, ir },
            );
        }
        for (index, name) in hostile.iter().enumerate() {
            add(
                hostile_spec(p, mech, name),
                format!("{p}: {mech} with a hostile token ({name}): error challenge, then refused"),
                Kind::Hostile { mech, index },
            );
        }
    }
    add(
        Spec::must(
            format!("sasl.{p}.oauthbearer.authzid-other-user"),
            "OAUTHBEARER with another user's authzid is refused",
            p,
            "RFC 7628 §3.1; RFC 4422 §3.4.1",
        ),
        format!("{p}: OAUTHBEARER asking for another user's identity is refused"),
        Kind::AnotherIdentity,
    );
    for ir in [true, false] {
        add(
            Spec::should(
                format!("sasl.{p}.plain.login.{}", ir_word(ir)),
                format!("PLAIN logs in against the directory ({})", ir_word(ir)),
                p,
                format!("RFC 4616 §2; {}", sasl_ir_section(p)),
            ),
            format!("{p}: PLAIN (initial response: {ir}) against the directory"),
            Kind::Plain { ir },
        );
    }
    add(
        Spec::must(
            format!("sasl.{p}.plain.wrong-password"),
            "a wrong password is refused and the session stays usable",
            p,
            "RFC 4616 §2; RFC 4422 §3.6",
        ),
        format!("{p}: a wrong password is refused and the session stays usable"),
        Kind::WrongPassword,
    );
    add(
        Spec::should(
            format!("sasl.{p}.login-mechanism"),
            "LOGIN against the directory, where offered",
            p,
            "draft-murchison-sasl-login-00",
        ),
        format!("{p}: LOGIN against the directory, where offered"),
        Kind::Login,
    );
    add(
        Spec::should(
            format!("sasl.{p}.no-plaintext-before-tls"),
            "plaintext mechanisms refused before TLS",
            p,
            "RFC 4616 §4; RFC 8314 §3",
        ),
        format!("{p}: plaintext mechanisms refused before TLS"),
        Kind::PlaintextBeforeTls,
    );
    add(
        Spec::must(
            format!("sasl.{p}.abort"),
            "'*' aborts the exchange and the session stays usable",
            p,
            "RFC 4422 §3.5",
        ),
        format!("{p}: '*' aborts the exchange and the session stays usable"),
        Kind::Abort,
    );
    add(
        Spec::must(
            format!("sasl.{p}.bad-base64"),
            "a response that is not base64 is refused",
            p,
            "RFC 4422 §4 (3)",
        ),
        format!("{p}: a response that is not base64 is refused"),
        Kind::BadBase64,
    );
    if let Some(limit) = failure_limit {
        add(
            Spec::should(
                format!("sasl.{p}.failure-limit"),
                format!("{limit} failed logins close the connection"),
                p,
                "RFC 4422 §3.8; RFC 4954 §4",
            ),
            format!("{p}: {limit} failed logins close the connection"),
            Kind::FailureLimit { limit },
        );
    }
    out
}

/// Every check of the matrix for protocol `p`, skipped with `reason` (the endpoint was not
/// given).
pub fn skipped(p: &str, hostile: &[String], failure_limit: Option<u32>, reason: &str) -> Report {
    let mut report = Report::new("sasl");
    for planned in plan(p, hostile, failure_limit) {
        report.skip(planned.spec, planned.name, reason);
    }
    report
}

/// Runs the whole matrix against one protocol.
pub async fn matrix<E: SaslEndpoint>(endpoint: &E, creds: &SaslCredentials) -> Report {
    let mut report = Report::new("sasl");
    let names: Vec<String> = creds.hostile.iter().map(|(n, _)| n.clone()).collect();
    for planned in plan(endpoint.protocol(), &names, creds.failure_limit) {
        let result = match planned.kind {
            Kind::Offered => offered(endpoint).await,
            Kind::BearerLogin { mech, ir } => bearer_login(endpoint, creds, mech, ir).await,
            Kind::Hostile { mech, index } => match creds.hostile.get(index) {
                Some((_, token)) => hostile(endpoint, creds, mech, token).await,
                None => Err(anyhow::anyhow!("no hostile token {index}")),
            },
            Kind::AnotherIdentity => another_identity(endpoint, creds).await,
            Kind::Plain { ir } => plain(endpoint, &creds.account, ir).await,
            Kind::WrongPassword => wrong_password(endpoint, &creds.account).await,
            Kind::Login => login(endpoint, &creds.account).await,
            Kind::PlaintextBeforeTls => plaintext_before_tls(endpoint, &creds.account).await,
            Kind::Abort => abort(endpoint).await,
            Kind::BadBase64 => bad_base64(endpoint).await,
            Kind::FailureLimit { limit } => failure_limit(endpoint, &creds.account, limit).await,
        };
        report.check_spec(planned.spec, planned.name, result);
    }
    report
}

async fn offered<E: SaslEndpoint>(endpoint: &E) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    let mechs = client.mechanisms().await?;
    for want in ["OAUTHBEARER", "XOAUTH2", "PLAIN"] {
        ensure!(
            mechs.iter().any(|m| m.eq_ignore_ascii_case(want)),
            "{want} not offered: {mechs:?}"
        );
    }
    Ok(())
}

/// Sends the first client message as initial response, or after the server's first challenge.
async fn first_message<C: SaslClient>(
    client: &mut C,
    mech: &str,
    message: &[u8],
    ir: bool,
) -> anyhow::Result<AuthTurn> {
    if ir {
        return Ok(client.auth_start(mech, Some(message)).await?);
    }
    match client.auth_start(mech, None).await? {
        AuthTurn::Challenge(c) => {
            ensure!(
                c.is_empty(),
                "first challenge of {mech} is not empty: {c:?}"
            );
            Ok(client.auth_respond(message).await?)
        }
        done => bail!("no challenge without an initial response: {done:?}"),
    }
}

fn bearer_message<E: SaslEndpoint>(endpoint: &E, mech: &str, user: &str, token: &str) -> Vec<u8> {
    let (host, port) = endpoint.host_port();
    match mech {
        "XOAUTH2" => xoauth2_payload(user, token),
        _ => oauthbearer_payload(Some(user), &host, port, token),
    }
}

fn expect_done(turn: &AuthTurn, want: AuthVerdict) -> anyhow::Result<()> {
    match turn.verdict() {
        Some(v) if v == want => Ok(()),
        _ => bail!("expected {want:?}, got {turn:?}"),
    }
}

async fn bearer_login<E: SaslEndpoint>(
    endpoint: &E,
    creds: &SaslCredentials,
    mech: &str,
    ir: bool,
) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    let message = bearer_message(endpoint, mech, &creds.account.mail, &creds.token);
    let turn = first_message(&mut client, mech, &message, ir).await?;
    expect_done(&turn, AuthVerdict::Success)?;
    ensure!(client.noop().await?, "the logged-in session refuses NOOP");
    Ok(())
}

/// The RFC 7628 error challenge: exactly status, scope and openid-configuration.
fn check_error_challenge(bytes: &[u8], discovery_url: &str) -> anyhow::Result<()> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).context("the error challenge is not JSON")?;
    let obj = json
        .as_object()
        .context("the error challenge is no object")?;
    ensure!(
        obj.get("status").and_then(|v| v.as_str()) == Some("invalid_token"),
        "status: {json}"
    );
    ensure!(
        obj.get("openid-configuration").and_then(|v| v.as_str()) == Some(discovery_url),
        "openid-configuration is not {discovery_url}: {json}"
    );
    let scope = obj
        .get("scope")
        .and_then(|v| v.as_str())
        .context("no scope")?;
    ensure!(scope.split(' ').any(|s| s == "openid"), "scope: {json}");
    ensure!(obj.len() == 3, "more than the three members: {json}");
    Ok(())
}

async fn hostile<E: SaslEndpoint>(
    endpoint: &E,
    creds: &SaslCredentials,
    mech: &str,
    token: &str,
) -> anyhow::Result<()> {
    for ir in [true, false] {
        let mut client = endpoint.secure().await?;
        let message = bearer_message(endpoint, mech, &creds.account.mail, token);
        match first_message(&mut client, mech, &message, ir).await? {
            AuthTurn::Challenge(json) => check_error_challenge(&json, &creds.discovery_url)
                .with_context(|| format!("initial response: {ir}"))?,
            done => bail!("initial response {ir}: no error challenge: {done:?}"),
        }
        // RFC 7628 3.2.3: the client answers with a dummy response, the server then fails.
        let turn = client.auth_respond(b"\x01").await?;
        expect_done(&turn, AuthVerdict::Refused)
            .with_context(|| format!("initial response: {ir}"))?;
    }
    Ok(())
}

async fn another_identity<E: SaslEndpoint>(
    endpoint: &E,
    creds: &SaslCredentials,
) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    let message = bearer_message(endpoint, "OAUTHBEARER", &creds.other.mail, &creds.token);
    let turn = client.auth_start("OAUTHBEARER", Some(&message)).await?;
    expect_done(&turn, AuthVerdict::AuthorizationRefused)
}

async fn plain<E: SaslEndpoint>(endpoint: &E, account: &Account, ir: bool) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    let message = plain_payload(&account.mail, &account.password);
    let turn = first_message(&mut client, "PLAIN", &message, ir).await?;
    expect_done(&turn, AuthVerdict::Success)?;
    ensure!(client.noop().await?, "the logged-in session refuses NOOP");
    Ok(())
}

async fn wrong_password<E: SaslEndpoint>(endpoint: &E, account: &Account) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    let message = plain_payload(&account.mail, "not-the-password");
    let turn = client.auth_start("PLAIN", Some(&message)).await?;
    expect_done(&turn, AuthVerdict::Refused)?;
    ensure!(client.noop().await?, "NOOP refused after a failed login");
    Ok(())
}

async fn login<E: SaslEndpoint>(endpoint: &E, account: &Account) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    if !client
        .mechanisms()
        .await?
        .iter()
        .any(|m| m.eq_ignore_ascii_case("LOGIN"))
    {
        return Ok(());
    }
    let AuthTurn::Challenge(_) = client.auth_start("LOGIN", None).await? else {
        bail!("LOGIN asked for nothing");
    };
    let AuthTurn::Challenge(_) = client.auth_respond(account.mail.as_bytes()).await? else {
        bail!("LOGIN asked for no password");
    };
    let turn = client.auth_respond(account.password.as_bytes()).await?;
    expect_done(&turn, AuthVerdict::Success)
}

async fn plaintext_before_tls<E: SaslEndpoint>(
    endpoint: &E,
    account: &Account,
) -> anyhow::Result<()> {
    let Some(client) = endpoint.cleartext().await else {
        return Ok(());
    };
    let mut client = client?;
    let mechs = client.mechanisms().await?;
    ensure!(
        !mechs.iter().any(|m| m.eq_ignore_ascii_case("PLAIN")),
        "PLAIN offered before TLS: {mechs:?}"
    );
    let message = plain_payload(&account.mail, &account.password);
    let turn = client.auth_start("PLAIN", Some(&message)).await?;
    expect_done(&turn, AuthVerdict::EncryptionRequired)
}

async fn abort<E: SaslEndpoint>(endpoint: &E) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    let AuthTurn::Challenge(_) = client.auth_start("PLAIN", None).await? else {
        bail!("PLAIN without an initial response sent no challenge");
    };
    let turn = client.auth_abort().await?;
    expect_done(&turn, AuthVerdict::Protocol)?;
    ensure!(client.noop().await?, "NOOP refused after an abort");
    Ok(())
}

async fn bad_base64<E: SaslEndpoint>(endpoint: &E) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    let AuthTurn::Challenge(_) = client.auth_start("PLAIN", None).await? else {
        bail!("PLAIN without an initial response sent no challenge");
    };
    let turn = client.auth_respond_raw("@@not base64@@").await?;
    expect_done(&turn, AuthVerdict::Protocol)
}

async fn failure_limit<E: SaslEndpoint>(
    endpoint: &E,
    account: &Account,
    limit: u32,
) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    let message = plain_payload(&account.mail, "not-the-password");
    for attempt in 1..=limit {
        let turn = client.auth_start("PLAIN", Some(&message)).await?;
        // The last refusal may itself be the goodbye (ManageSieve answers it with BYE).
        let closed = attempt == limit && turn.verdict() == Some(AuthVerdict::Closed);
        if !closed {
            expect_done(&turn, AuthVerdict::Refused)
                .with_context(|| format!("attempt {attempt}"))?;
        }
    }
    ensure!(
        client.is_closed().await,
        "still open after {limit} failures"
    );
    Ok(())
}

/// IMAP: implicit TLS, and the cleartext port (STARTTLS) if there is one.
#[derive(Debug, Clone)]
pub struct ImapEndpoint {
    pub tls: SocketAddr,
    pub cleartext: Option<SocketAddr>,
    pub ca_pem: String,
}

#[async_trait]
impl SaslEndpoint for ImapEndpoint {
    type Client = ImapClient;
    fn protocol(&self) -> &'static str {
        "imap"
    }
    async fn secure(&self) -> ClientResult<ImapClient> {
        ImapClient::connect_tls(self.tls, &self.ca_pem).await
    }
    async fn cleartext(&self) -> Option<ClientResult<ImapClient>> {
        Some(ImapClient::connect(self.cleartext?).await)
    }
    fn host_port(&self) -> (String, u16) {
        (self.tls.ip().to_string(), self.tls.port())
    }
}

/// SMTP submission: implicit TLS, and the cleartext port (STARTTLS) if there is one. Sessions
/// have said EHLO.
#[derive(Debug, Clone)]
pub struct SmtpEndpoint {
    pub tls: SocketAddr,
    pub cleartext: Option<SocketAddr>,
    pub ca_pem: String,
}

#[async_trait]
impl SaslEndpoint for SmtpEndpoint {
    type Client = SmtpClient;
    fn protocol(&self) -> &'static str {
        "smtp"
    }
    async fn secure(&self) -> ClientResult<SmtpClient> {
        let mut smtp = SmtpClient::connect_tls(self.tls, &self.ca_pem).await?;
        smtp.ehlo("suite.test").await?;
        Ok(smtp)
    }
    async fn cleartext(&self) -> Option<ClientResult<SmtpClient>> {
        let addr = self.cleartext?;
        Some(
            async move {
                let mut smtp = SmtpClient::connect(addr).await?;
                smtp.ehlo("suite.test").await?;
                Ok(smtp)
            }
            .await,
        )
    }
    fn host_port(&self) -> (String, u16) {
        (self.tls.ip().to_string(), self.tls.port())
    }
}

/// POP3: implicit TLS, and the cleartext port (STLS) if there is one.
#[derive(Debug, Clone)]
pub struct Pop3Endpoint {
    pub tls: SocketAddr,
    pub cleartext: Option<SocketAddr>,
    pub ca_pem: String,
}

#[async_trait]
impl SaslEndpoint for Pop3Endpoint {
    type Client = Pop3Client;
    fn protocol(&self) -> &'static str {
        "pop3"
    }
    async fn secure(&self) -> ClientResult<Pop3Client> {
        Pop3Client::connect_tls(self.tls, &self.ca_pem).await
    }
    async fn cleartext(&self) -> Option<ClientResult<Pop3Client>> {
        Some(Pop3Client::connect(self.cleartext?).await)
    }
    fn host_port(&self) -> (String, u16) {
        (self.tls.ip().to_string(), self.tls.port())
    }
}

/// ManageSieve: one port; sessions under TLS have done STARTTLS (RFC 5804 has no implicit TLS).
#[derive(Debug, Clone)]
pub struct SieveEndpoint {
    pub addr: SocketAddr,
    pub ca_pem: String,
}

#[async_trait]
impl SaslEndpoint for SieveEndpoint {
    type Client = SieveClient;
    fn protocol(&self) -> &'static str {
        "sieve"
    }
    async fn secure(&self) -> ClientResult<SieveClient> {
        let mut sieve = SieveClient::connect(self.addr).await?;
        sieve.starttls(&self.ca_pem).await?;
        Ok(sieve)
    }
    async fn cleartext(&self) -> Option<ClientResult<SieveClient>> {
        Some(SieveClient::connect(self.addr).await)
    }
    fn host_port(&self) -> (String, u16) {
        (self.addr.ip().to_string(), self.addr.port())
    }
}

/// SCRAM-SHA-256 and -PLUS (RFC 5802, 7677, 9266) on one protocol, for a user whose directory
/// entry holds a SCRAM secret: logins whose server signature checks out, a wrong password,
/// a channel binding of another TLS session, and the `y` downgrade while -PLUS is offered.
pub async fn scram_matrix<E: SaslEndpoint>(endpoint: &E, account: &Account) -> Report {
    let mut report = Report::new("scram");
    let p = endpoint.protocol();
    report.check(
        format!("{p}: SCRAM-SHA-256 and -PLUS offered under TLS 1.3"),
        scram_offered(endpoint).await,
    );
    report.check(
        format!("{p}: SCRAM-SHA-256 logs in and the server proves the password"),
        scram(endpoint, account, ScramCase::Plain).await,
    );
    report.check(
        format!("{p}: SCRAM-SHA-256-PLUS with this session's tls-exporter logs in"),
        scram(endpoint, account, ScramCase::Plus).await,
    );
    report.check(
        format!("{p}: SCRAM with a wrong password is refused"),
        scram(endpoint, account, ScramCase::WrongPassword).await,
    );
    report.check(
        format!("{p}: SCRAM-SHA-256-PLUS bound to another TLS session is refused"),
        scram(endpoint, account, ScramCase::ForeignBinding).await,
    );
    report.check(
        format!("{p}: the 'y' flag while -PLUS is offered is refused as a downgrade"),
        scram(endpoint, account, ScramCase::Downgrade).await,
    );
    report
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScramCase {
    Plain,
    Plus,
    WrongPassword,
    ForeignBinding,
    Downgrade,
}

async fn scram_offered<E: SaslEndpoint>(endpoint: &E) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    ensure!(
        client.channel_binding().is_some(),
        "the session is not TLS 1.3"
    );
    let mechs = client.mechanisms().await?;
    for want in ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"] {
        ensure!(
            mechs.iter().any(|m| m.eq_ignore_ascii_case(want)),
            "{want} not offered: {mechs:?}"
        );
    }
    Ok(())
}

async fn scram<E: SaslEndpoint>(
    endpoint: &E,
    account: &Account,
    case: ScramCase,
) -> anyhow::Result<()> {
    let mut client = endpoint.secure().await?;
    let exporter = client
        .channel_binding()
        .context("no tls-exporter: the session is not TLS 1.3")?;
    let (mechanism, binding, password) = match case {
        ScramCase::Plain => (
            "SCRAM-SHA-256",
            Binding::Unsupported,
            account.password.as_str(),
        ),
        ScramCase::Plus => (
            "SCRAM-SHA-256-PLUS",
            Binding::TlsExporter(exporter),
            account.password.as_str(),
        ),
        ScramCase::WrongPassword => ("SCRAM-SHA-256", Binding::Unsupported, "not-the-password"),
        ScramCase::ForeignBinding => {
            let mut other = exporter;
            other[0] ^= 0xff;
            (
                "SCRAM-SHA-256-PLUS",
                Binding::TlsExporter(other),
                account.password.as_str(),
            )
        }
        ScramCase::Downgrade => (
            "SCRAM-SHA-256",
            Binding::NotOffered,
            account.password.as_str(),
        ),
    };
    let mut scram = ScramClient::new(&account.mail, password, None, binding);
    let server_first = match client
        .auth_start(mechanism, Some(&scram.client_first()))
        .await?
    {
        AuthTurn::Challenge(c) => c,
        // A downgrade shows in the client's first message: refusing it there is right too.
        done if case == ScramCase::Downgrade => return expect_done(&done, AuthVerdict::Refused),
        done => bail!("no server-first message: {done:?}"),
    };
    let client_final = scram
        .client_final(&server_first)
        .map_err(anyhow::Error::msg)?;
    let turn = client.auth_respond(&client_final).await?;
    let succeeds = matches!(case, ScramCase::Plain | ScramCase::Plus);
    if !succeeds {
        return expect_done(&turn, AuthVerdict::Refused);
    }
    match turn {
        // IMAP, SMTP, POP3: the server-final message as a last challenge, answered empty.
        AuthTurn::Challenge(server_final) => {
            scram
                .verify_server_final(&server_final)
                .map_err(anyhow::Error::msg)?;
            let turn = client.auth_respond(b"").await?;
            expect_done(&turn, AuthVerdict::Success)
        }
        // ManageSieve: in the final reply.
        AuthTurn::Done {
            verdict: AuthVerdict::Success,
            success_data: Some(server_final),
            ..
        } => scram
            .verify_server_final(&server_final)
            .map_err(anyhow::Error::msg),
        other => bail!("no server-final message: {other:?}"),
    }
}
