//! Whether a token opens (or is refused on) each way into the server: IMAP, submission, POP3,
//! ManageSieve, JMAP directly and JMAP through the gateway, with each protocol's exact refusal.

use anyhow::{Context, bail};

use super::MailTarget;
use super::live::{imap_login, jmap_client, pop3_login, sieve_login, smtp_login};
use crate::clients::OAuthOutcome;
use crate::clients::imap::{ImapClient, ImapReply};
use crate::clients::pop3::{Pop3Client, Pop3Reply};
use crate::clients::sieve::{SieveClient, SieveReply};
use crate::clients::smtp::{SmtpClient, SmtpReply};

/// The ways in a token is tried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Imap,
    Submission,
    Pop3,
    ManageSieve,
    JmapDirect,
    JmapGateway,
}

impl Path {
    pub const ALL: [Path; 6] = [
        Path::Imap,
        Path::Submission,
        Path::Pop3,
        Path::ManageSieve,
        Path::JmapDirect,
        Path::JmapGateway,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Path::Imap => "IMAP",
            Path::Submission => "SMTP submission",
            Path::Pop3 => "POP3",
            Path::ManageSieve => "ManageSieve",
            Path::JmapDirect => "JMAP direct",
            Path::JmapGateway => "JMAP through the gateway",
        }
    }

    /// Whether the target offers this way in.
    pub fn offered(&self, target: &MailTarget) -> bool {
        match self {
            Path::JmapGateway => target.gateway_jmap_session.is_some(),
            Path::Pop3 => target.pop3s.is_some(),
            Path::ManageSieve => target.sieve.is_some(),
            Path::Imap => target.imaps.is_some(),
            Path::Submission => target.submissions.is_some(),
            Path::JmapDirect => target.jmap_session.is_some(),
        }
    }

    fn session_url<'a>(&self, target: &'a MailTarget) -> anyhow::Result<&'a str> {
        match self {
            Path::JmapDirect => target.jmap_url(),
            Path::JmapGateway => target
                .gateway_jmap_session
                .as_deref()
                .context("the target has no gateway"),
            _ => bail!("{} has no JMAP session URL", self.name()),
        }
    }
}

/// IMAPS + OAUTHBEARER, whatever the answer.
async fn imap_attempt(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<OAuthOutcome<ImapReply>> {
    let mut imap = ImapClient::connect_tls(target.imaps_addr()?, &target.ca_pem).await?;
    Ok(imap.oauthbearer(user, token, true).await?)
}

/// SMTPS + EHLO + OAUTHBEARER, whatever the answer.
async fn smtp_attempt(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<OAuthOutcome<SmtpReply>> {
    let mut smtp = SmtpClient::connect_tls(target.submissions_addr()?, &target.ca_pem).await?;
    smtp.ehlo("suite.test").await?;
    Ok(smtp.oauthbearer(user, token, true).await?)
}

/// POP3S + OAUTHBEARER, whatever the answer.
async fn pop3_attempt(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<OAuthOutcome<Pop3Reply>> {
    let addr = target.pop3s.context("the target has no POP3")?;
    let mut pop3 = Pop3Client::connect_tls(addr, &target.ca_pem).await?;
    Ok(pop3.oauthbearer(user, token, true).await?)
}

/// ManageSieve + STARTTLS + OAUTHBEARER, whatever the answer.
async fn sieve_attempt(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<OAuthOutcome<SieveReply>> {
    let addr = target.sieve.context("the target has no ManageSieve")?;
    let mut sieve = SieveClient::connect(addr).await?;
    sieve.starttls(&target.ca_pem).await?;
    Ok(sieve.oauthbearer(user, token, true).await?)
}

/// GET the JMAP session on `path` with `token`, whatever the answer.
async fn session_response(
    target: &MailTarget,
    path: Path,
    token: &str,
) -> anyhow::Result<crate::clients::jmap::RawResponse> {
    let client = jmap_client(target, path.session_url(target)?, token)?;
    let url = client.session_url().to_string();
    Ok(client.raw_get(&url, &[]).await?)
}

/// `token` opens a session for `user` on `path` (and the JMAP session names `user`).
pub async fn accepted(
    target: &MailTarget,
    path: Path,
    user: &str,
    token: &str,
) -> anyhow::Result<()> {
    match path {
        Path::Imap => {
            let mut imap = imap_login(target, user, token).await?;
            let _ = imap.logout().await;
        }
        Path::Submission => {
            let mut smtp = smtp_login(target, user, token).await?;
            let _ = smtp.quit().await;
        }
        Path::Pop3 => {
            let mut pop3 = pop3_login(target, user, token).await?;
            let _ = pop3.quit().await;
        }
        Path::ManageSieve => {
            let mut sieve = sieve_login(target, user, token).await?;
            let _ = sieve.logout().await;
        }
        Path::JmapDirect | Path::JmapGateway => {
            let session = jmap_client(target, path.session_url(target)?, token)?
                .session()
                .await?;
            if !session.username.eq_ignore_ascii_case(user) {
                bail!("the JMAP session is {}'s, not {user}'s", session.username);
            }
        }
    }
    Ok(())
}

/// `token` is refused on `path` with that protocol's refusal: IMAP `NO [AUTHENTICATIONFAILED]`
/// after the RFC 7628 error challenge, SMTP `535 5.7.8`, POP3 `-ERR [AUTH]`, ManageSieve `NO`
/// (the last three also after the error challenge), HTTP 401 with a Bearer
/// `invalid_token` challenge whose description starts with `description_prefix` (e.g.
/// `revoked`), if given.
pub async fn refused(
    target: &MailTarget,
    path: Path,
    user: &str,
    token: &str,
    description_prefix: Option<&str>,
) -> anyhow::Result<()> {
    match path {
        Path::Imap => {
            let outcome = imap_attempt(target, user, token).await?;
            if outcome.challenge.is_none() {
                bail!("no RFC 7628 error challenge: {:?}", outcome.reply);
            }
            if outcome.reply.code() != Some("AUTHENTICATIONFAILED") {
                bail!(
                    "expected NO [AUTHENTICATIONFAILED], got {:?}",
                    outcome.reply
                );
            }
        }
        Path::Submission => {
            let outcome = smtp_attempt(target, user, token).await?;
            if outcome.challenge.is_none() {
                bail!("no RFC 7628 error challenge: {}", outcome.reply);
            }
            if outcome.reply.code != 535 || outcome.reply.enhanced() != Some("5.7.8") {
                bail!("expected 535 5.7.8, got {}", outcome.reply);
            }
        }
        Path::Pop3 => {
            let outcome = pop3_attempt(target, user, token).await?;
            if outcome.challenge.is_none() {
                bail!("no RFC 7628 error challenge: {}", outcome.reply.line);
            }
            if outcome.reply.code() != Some("AUTH") {
                bail!("expected -ERR [AUTH], got {}", outcome.reply.line);
            }
        }
        Path::ManageSieve => {
            let outcome = sieve_attempt(target, user, token).await?;
            if outcome.challenge.is_none() {
                bail!("no RFC 7628 error challenge: {}", outcome.reply.line());
            }
            if !outcome.reply.is_no() {
                bail!("expected NO, got {}", outcome.reply.line());
            }
        }
        Path::JmapDirect | Path::JmapGateway => {
            let resp = session_response(target, path, token).await?;
            if resp.status != 401 {
                bail!("expected 401, got {}: {}", resp.status, resp.text());
            }
            let challenges: Vec<String> = resp
                .headers
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            let bearer = challenges
                .iter()
                .find(|c| c.starts_with("Bearer"))
                .with_context(|| format!("no Bearer challenge in {challenges:?}"))?;
            if !bearer.contains("error=\"invalid_token\"") {
                bail!("the Bearer challenge names no invalid_token: {bearer}");
            }
            if let Some(prefix) = description_prefix
                && !bearer.contains(&format!("error_description=\"{prefix}"))
            {
                bail!("the error_description does not start with {prefix:?}: {bearer}");
            }
        }
    }
    Ok(())
}

/// `token` gets the protocol's temporary-failure reply on `path` (the revocation store or the
/// IdP cannot be asked): IMAP `NO [UNAVAILABLE]`, SMTP `454 4.7.0`, POP3 `-ERR [SYS/TEMP]`,
/// ManageSieve `NO (TRYLATER)`, HTTP 503 with Retry-After.
pub async fn unavailable(
    target: &MailTarget,
    path: Path,
    user: &str,
    token: &str,
) -> anyhow::Result<()> {
    match path {
        Path::Imap => {
            let outcome = imap_attempt(target, user, token).await?;
            if outcome.reply.code() != Some("UNAVAILABLE") {
                bail!("expected NO [UNAVAILABLE], got {:?}", outcome.reply);
            }
        }
        Path::Submission => {
            let outcome = smtp_attempt(target, user, token).await?;
            if outcome.reply.code != 454 || outcome.reply.enhanced() != Some("4.7.0") {
                bail!("expected 454 4.7.0, got {}", outcome.reply);
            }
        }
        Path::Pop3 => {
            let outcome = pop3_attempt(target, user, token).await?;
            if outcome.reply.code() != Some("SYS/TEMP") {
                bail!("expected -ERR [SYS/TEMP], got {}", outcome.reply.line);
            }
        }
        Path::ManageSieve => {
            let outcome = sieve_attempt(target, user, token).await?;
            if !outcome.reply.is_no() || outcome.reply.code() != Some("TRYLATER") {
                bail!("expected NO (TRYLATER), got {}", outcome.reply.line());
            }
        }
        Path::JmapDirect | Path::JmapGateway => {
            let resp = session_response(target, path, token).await?;
            if resp.status != 503 {
                bail!("expected 503, got {}: {}", resp.status, resp.text());
            }
            if resp.headers.get(reqwest::header::RETRY_AFTER).is_none() {
                bail!("503 without Retry-After");
            }
        }
    }
    Ok(())
}
