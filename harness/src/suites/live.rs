//! Open mail sessions of every kind with a bearer token, and wait for the server to end them
//! with its protocol's goodbye: IMAP `* BYE`, SMTP `421`, POP3 `-ERR [SYS/PERM]`, ManageSieve
//! `BYE`, WebSocket Close `1008`, the end of an EventSource stream. Every wait has a deadline; nothing sleeps.

use std::time::Duration;

use anyhow::{Context, bail};

use super::MailTarget;
use crate::clients::imap::ImapClient;
use crate::clients::jmap::{Auth, EventStream, JmapClient, JmapWs};
use crate::clients::pop3::Pop3Client;
use crate::clients::sieve::SieveClient;
use crate::clients::smtp::SmtpClient;

/// A session kept open until the server ends it.
pub enum LiveSession {
    /// IMAP in IDLE on INBOX.
    ImapIdle(ImapClient),
    /// IMAP with INBOX selected, between commands.
    ImapSelected(ImapClient),
    /// SMTP submission in the middle of DATA (part of the body sent).
    SmtpInData(SmtpClient),
    /// POP3 in the TRANSACTION state, between commands.
    Pop3(Pop3Client),
    /// ManageSieve logged in, between commands.
    Sieve(SieveClient),
    WebSocket(Box<JmapWs>),
    EventSource(Box<EventStream>),
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl LiveSession {
    pub fn kind(&self) -> &'static str {
        match self {
            LiveSession::ImapIdle(_) => "IMAP IDLE",
            LiveSession::ImapSelected(_) => "IMAP selected",
            LiveSession::SmtpInData(_) => "SMTP in DATA",
            LiveSession::Pop3(_) => "POP3",
            LiveSession::Sieve(_) => "ManageSieve",
            LiveSession::WebSocket(_) => "JMAP WebSocket",
            LiveSession::EventSource(_) => "JMAP EventSource",
        }
    }

    /// Waits for the server to end the session; the goodbye it sent.
    pub async fn ended(&mut self, within: Duration) -> anyhow::Result<String> {
        match self {
            LiveSession::ImapIdle(imap) | LiveSession::ImapSelected(imap) => {
                imap_bye(imap, within).await
            }
            LiveSession::SmtpInData(smtp) => {
                let reply = smtp
                    .read_reply_within(within)
                    .await
                    .context("no SMTP reply")?;
                if reply.code != 421 || reply.enhanced() != Some("4.7.0") {
                    bail!("expected 421 4.7.0, got {reply}");
                }
                let line = reply.first_line();
                // The server closes after 421.
                match smtp.read_reply_within(within).await {
                    Err(crate::clients::ClientError::Closed) => Ok(line),
                    other => bail!("after {line} the connection stayed open: {other:?}"),
                }
            }
            LiveSession::Pop3(pop3) => {
                let line = pop3
                    .read_line_within(within)
                    .await
                    .context("no POP3 goodbye")?;
                if !line.starts_with("-ERR [SYS/PERM]") {
                    bail!("expected -ERR [SYS/PERM], got {line}");
                }
                match pop3.read_line_within(within).await {
                    Err(crate::clients::ClientError::Closed) => Ok(line),
                    other => bail!("after {line} the connection stayed open: {other:?}"),
                }
            }
            LiveSession::Sieve(sieve) => {
                let reply = sieve
                    .read_reply_within(within)
                    .await
                    .context("no ManageSieve goodbye")?;
                if !reply.is_bye() {
                    bail!("expected BYE, got {}", reply.line());
                }
                let line = reply.line().to_string();
                match sieve.read_reply_within(within).await {
                    Err(crate::clients::ClientError::Closed) => Ok(line),
                    other => bail!("after {line} the connection stayed open: {other:?}"),
                }
            }
            LiveSession::WebSocket(ws) => {
                let (code, reason) = ws.wait_closed(within).await.context("no Close frame")?;
                if code != Some(1008) {
                    bail!("expected Close 1008, got {code:?} ({reason})");
                }
                Ok(format!("Close 1008 {reason}"))
            }
            LiveSession::EventSource(events) => {
                events
                    .wait_end(within)
                    .await
                    .context("the EventSource stream did not end")?;
                Ok("stream ended".into())
            }
        }
    }

    /// Whether the server still answers (for sessions that must survive).
    pub async fn still_alive(&mut self) -> anyhow::Result<()> {
        match self {
            LiveSession::ImapIdle(imap) => {
                imap.send_line("DONE").await?;
                let line = imap.read_line().await?;
                if !line.contains("OK") {
                    bail!("IDLE did not end with OK: {line}");
                }
                imap.send_line("I2 IDLE").await?;
                let line = imap.read_line().await?;
                if !line.starts_with('+') {
                    bail!("IDLE did not restart: {line}");
                }
                Ok(())
            }
            LiveSession::ImapSelected(imap) => {
                let reply = imap.command("NOOP").await?;
                if !reply.is_ok() || reply.has_bye() {
                    bail!("NOOP answered {reply:?}");
                }
                Ok(())
            }
            LiveSession::SmtpInData(smtp) => {
                smtp.send_bytes(b"more body\r\n").await?;
                Ok(())
            }
            LiveSession::Pop3(pop3) => {
                let reply = pop3.command("NOOP").await?;
                if !reply.is_ok() {
                    bail!("NOOP answered {}", reply.line);
                }
                Ok(())
            }
            LiveSession::Sieve(sieve) => {
                let reply = sieve.noop(None).await?;
                if !reply.is_ok() {
                    bail!("NOOP answered {}", reply.line());
                }
                Ok(())
            }
            LiveSession::WebSocket(ws) => {
                let echo = ws
                    .request(
                        serde_json::json!({"methodCalls": [["Core/echo", {"alive": true}, "e"]]}),
                    )
                    .await?;
                if echo.pointer("/methodResponses/0/1/alive") != Some(&serde_json::json!(true)) {
                    bail!("Core/echo answered {echo}");
                }
                Ok(())
            }
            LiveSession::EventSource(_) => Ok(()),
        }
    }
}

/// Reads until `* BYE`, which must carry `[EXPIRED]`, then expects the connection to close.
async fn imap_bye(imap: &mut ImapClient, within: Duration) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let line = imap
            .read_line_within(left)
            .await
            .context("waiting for * BYE")?;
        if line.starts_with("* BYE") {
            if !line.starts_with("* BYE [EXPIRED]") {
                bail!("BYE without the EXPIRED code: {line}");
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            return match imap.read_line_within(left).await {
                Err(crate::clients::ClientError::Closed) => Ok(line),
                other => bail!("after {line} the connection stayed open: {other:?}"),
            };
        }
        // FETCH data, EXISTS, IDLE updates: keep reading.
    }
}

/// IMAPS + OAUTHBEARER; fails unless the login is accepted.
pub async fn imap_login(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<ImapClient> {
    let mut imap = ImapClient::connect_tls(target.imaps_addr()?, &target.ca_pem).await?;
    let outcome = imap.oauthbearer(user, token, true).await?;
    if !outcome.reply.is_ok() {
        bail!("IMAP OAUTHBEARER refused: {:?}", outcome.reply);
    }
    Ok(imap)
}

/// IMAPS + OAUTHBEARER with INBOX selected.
async fn imap_inbox(target: &MailTarget, user: &str, token: &str) -> anyhow::Result<ImapClient> {
    let mut imap = imap_login(target, user, token).await?;
    let select = imap.select("INBOX").await?;
    if !select.is_ok() {
        bail!("SELECT INBOX: {select:?}");
    }
    Ok(imap)
}

/// An IMAP session in IDLE on INBOX.
pub async fn imap_idle(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<LiveSession> {
    let mut imap = imap_inbox(target, user, token).await?;
    imap.send_line("I1 IDLE").await?;
    let line = imap.read_line().await?;
    if !line.starts_with('+') {
        bail!("IDLE refused: {line}");
    }
    Ok(LiveSession::ImapIdle(imap))
}

/// An IMAP session with INBOX selected.
pub async fn imap_selected(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<LiveSession> {
    Ok(LiveSession::ImapSelected(
        imap_inbox(target, user, token).await?,
    ))
}

/// SMTPS + OAUTHBEARER; fails unless the login is accepted.
pub async fn smtp_login(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<SmtpClient> {
    let mut smtp = SmtpClient::connect_tls(target.submissions_addr()?, &target.ca_pem).await?;
    smtp.ehlo("suite.test").await?;
    let outcome = smtp.oauthbearer(user, token, true).await?;
    if outcome.reply.code != 235 {
        bail!("SMTP OAUTHBEARER refused: {}", outcome.reply);
    }
    Ok(smtp)
}

/// A submission session in the middle of DATA: MAIL, RCPT `rcpt`, DATA, part of a body.
pub async fn smtp_in_data(
    target: &MailTarget,
    user: &str,
    token: &str,
    rcpt: &str,
) -> anyhow::Result<LiveSession> {
    let mut smtp = smtp_login(target, user, token).await?;
    for (cmd, want) in [
        (format!("MAIL FROM:<{user}>"), 250),
        (format!("RCPT TO:<{rcpt}>"), 250),
        ("DATA".to_string(), 354),
    ] {
        let reply = smtp.command(&cmd).await?;
        if reply.code != want {
            bail!("{cmd}: {reply}");
        }
    }
    smtp.send_bytes(b"Subject: interrupted\r\n\r\nthis message is never finished\r\n")
        .await?;
    Ok(LiveSession::SmtpInData(smtp))
}

/// POP3S + OAUTHBEARER; fails unless the login is accepted (or the target has no POP3).
pub async fn pop3_login(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<Pop3Client> {
    let addr = target.pop3s.context("the target has no POP3")?;
    let mut pop3 = Pop3Client::connect_tls(addr, &target.ca_pem).await?;
    let outcome = pop3.oauthbearer(user, token, true).await?;
    if !outcome.reply.is_ok() {
        bail!("POP3 OAUTHBEARER refused: {}", outcome.reply.line);
    }
    Ok(pop3)
}

/// A POP3 session in the TRANSACTION state.
pub async fn pop3_session(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<LiveSession> {
    Ok(LiveSession::Pop3(pop3_login(target, user, token).await?))
}

/// ManageSieve + STARTTLS + OAUTHBEARER; fails unless the login is accepted.
pub async fn sieve_login(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<SieveClient> {
    let addr = target.sieve.context("the target has no ManageSieve")?;
    let mut sieve = SieveClient::connect(addr).await?;
    sieve.starttls(&target.ca_pem).await?;
    let outcome = sieve.oauthbearer(user, token, true).await?;
    if !outcome.reply.is_ok() {
        bail!("ManageSieve OAUTHBEARER refused: {}", outcome.reply.line());
    }
    Ok(sieve)
}

/// A logged-in ManageSieve session.
pub async fn sieve_session(
    target: &MailTarget,
    user: &str,
    token: &str,
) -> anyhow::Result<LiveSession> {
    Ok(LiveSession::Sieve(sieve_login(target, user, token).await?))
}

/// A JMAP client for `session_url` with a bearer token (trusting the target's CA for HTTPS).
pub fn jmap_client(
    target: &MailTarget,
    session_url: &str,
    token: &str,
) -> anyhow::Result<JmapClient> {
    let client = JmapClient::new(session_url, Auth::Bearer(token.to_string()), &[])?;
    Ok(if session_url.starts_with("https://") {
        client.with_ca(&target.ca_pem)?
    } else {
        client
    })
}

/// A JMAP WebSocket at `session_url`'s `webSocketUrl`.
pub async fn websocket(
    target: &MailTarget,
    session_url: &str,
    token: &str,
) -> anyhow::Result<LiveSession> {
    let mut ws = jmap_client(target, session_url, token)?
        .connect_ws()
        .await?;
    // One round trip proves the socket is served, not just upgraded.
    let echo = ws
        .request(serde_json::json!({"methodCalls": [["Core/echo", {"open": true}, "e"]]}))
        .await?;
    if echo.pointer("/methodResponses/0/1/open") != Some(&serde_json::json!(true)) {
        bail!("Core/echo over the WebSocket answered {echo}");
    }
    Ok(LiveSession::WebSocket(Box::new(ws)))
}

/// A JMAP WebSocket on the server's own JMAP session (no gateway).
pub async fn websocket_direct(target: &MailTarget, token: &str) -> anyhow::Result<LiveSession> {
    websocket(target, target.jmap_url()?, token).await
}

/// A JMAP EventSource on the server's own JMAP session (no gateway).
pub async fn event_source_direct(target: &MailTarget, token: &str) -> anyhow::Result<LiveSession> {
    event_source(target, target.jmap_url()?, token).await
}

/// A JMAP EventSource at `session_url`'s `eventSourceUrl`.
pub async fn event_source(
    target: &MailTarget,
    session_url: &str,
    token: &str,
) -> anyhow::Result<LiveSession> {
    let events = jmap_client(target, session_url, token)?
        .open_event_source()
        .await?;
    Ok(LiveSession::EventSource(Box::new(events)))
}
