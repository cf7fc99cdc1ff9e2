//! Sieve filtering end to end: a user logged in over ManageSieve with an OIDC token uploads a
//! filter; bad scripts are refused with their line; the active script files mail arriving by
//! inbound SMTP and by submission into the folder it names, which IMAP then shows; other mail
//! stays in INBOX; with no active script everything is kept in INBOX again.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail, ensure};

use super::live::{imap_login, sieve_login, smtp_login};
use super::{MailTarget, Report};
use crate::clients::imap::{ImapClient, quote};
use crate::clients::sieve::SieveClient;
use crate::clients::smtp::SmtpClient;

/// How long delivered mail may take to show in IMAP (delivery may be queued on other servers).
const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// The folder the filter files into.
pub const FOLDER: &str = "Lists";

/// The filter: mail whose subject holds `[list]` goes to [`FOLDER`].
pub const FILTER: &str = "require \"fileinto\";\r\n\
if header :contains \"subject\" \"[list]\" {\r\n  fileinto \"Lists\";\r\n}\r\n";

/// A script with its mistake on line 3 (an unknown command).
pub const BAD_SCRIPT: &str = "require \"fileinto\";\r\n\
if true {\r\n  frobnicate \"Lists\";\r\n}\r\n";

/// `user` (with bearer `token`) filters mail. `inbound_smtp` is the server's port-25 listener,
/// if it has one (mail then also arrives from outside, unauthenticated).
pub async fn filtering(
    target: &MailTarget,
    inbound_smtp: Option<SocketAddr>,
    user: &str,
    token: &str,
) -> Report {
    let mut report = Report::new("sieve filtering");
    let nonce = format!("{:08x}", rand::random::<u32>());
    let Some(mut sieve) = report.step(
        "ManageSieve login with OAUTHBEARER",
        sieve_login(target, user, token).await,
    ) else {
        return report;
    };
    report.check(
        "the SIEVE capability lists fileinto",
        fileinto_advertised(&sieve),
    );
    report.check(
        "CHECKSCRIPT refuses a bad script, naming line 3",
        refused_at_line_3(sieve.checkscript(BAD_SCRIPT.as_bytes()).await),
    );
    let bad_name = format!("bad-{nonce}");
    report.check(
        "PUTSCRIPT refuses it too and stores nothing",
        async {
            refused_at_line_3(sieve.putscript(&bad_name, BAD_SCRIPT.as_bytes()).await)?;
            let (scripts, _) = sieve.listscripts().await?;
            ensure!(
                !scripts.iter().any(|(name, _)| *name == bad_name),
                "the refused script was stored: {scripts:?}"
            );
            Ok(())
        }
        .await,
    );
    let name = format!("filter-{nonce}");
    if report
        .step(
            "PUTSCRIPT and SETACTIVE the filter",
            activate(&mut sieve, &name).await,
        )
        .is_none()
    {
        return report;
    }

    let listed = format!("[list] {nonce}");
    let plain = format!("hello {nonce}");
    if let Some(addr) = inbound_smtp {
        report.check(
            "a [list] message arrives by inbound SMTP",
            inbound(addr, user, &format!("{listed} inbound")).await,
        );
    }
    report.check(
        "a [list] message and another one are submitted",
        async {
            submit(target, user, token, &format!("{listed} submitted")).await?;
            submit(target, user, token, &plain).await
        }
        .await,
    );
    let Some(mut imap) = report.step("IMAP login", imap_login(target, user, token).await) else {
        return report;
    };
    let expected_in_folder = if inbound_smtp.is_some() { 2 } else { 1 };
    report.check(
        format!("IMAP shows the [list] mail in {FOLDER}"),
        wait_for(&mut imap, FOLDER, &listed, expected_in_folder).await,
    );
    report.check(
        "the other message is in INBOX, and no [list] one",
        async {
            wait_for(&mut imap, "INBOX", &plain, 1).await?;
            let in_inbox = search(&mut imap, "INBOX", &listed).await?;
            ensure!(in_inbox == 0, "{in_inbox} [list] message(s) in INBOX");
            Ok(())
        }
        .await,
    );
    report.check(
        "with no active script, [list] mail stays in INBOX",
        async {
            let reply = sieve.setactive("").await?;
            ensure!(reply.is_ok(), "SETACTIVE \"\": {}", reply.line());
            let late = format!("{listed} late");
            submit(target, user, token, &late).await?;
            wait_for(&mut imap, "INBOX", &late, 1).await
        }
        .await,
    );
    let _ = sieve.logout().await;
    let _ = imap.logout().await;
    report
}

fn fileinto_advertised(sieve: &SieveClient) -> anyhow::Result<()> {
    let caps = sieve.capability("SIEVE").context("no SIEVE capability")?;
    ensure!(
        caps.split(' ').any(|e| e.eq_ignore_ascii_case("fileinto")),
        "SIEVE {caps:?}"
    );
    Ok(())
}

fn refused_at_line_3(
    reply: crate::clients::ClientResult<crate::clients::sieve::SieveReply>,
) -> anyhow::Result<()> {
    let reply = reply?;
    ensure!(reply.is_no(), "expected NO, got {}", reply.line());
    ensure!(
        reply.text().contains("line 3"),
        "the refusal does not name line 3: {}",
        reply.line()
    );
    Ok(())
}

async fn activate(sieve: &mut SieveClient, name: &str) -> anyhow::Result<()> {
    let put = sieve.putscript(name, FILTER.as_bytes()).await?;
    ensure!(put.is_ok(), "PUTSCRIPT: {}", put.line());
    let active = sieve.setactive(name).await?;
    ensure!(active.is_ok(), "SETACTIVE: {}", active.line());
    let (scripts, _) = sieve.listscripts().await?;
    ensure!(
        scripts.iter().any(|(n, on)| n == name && *on),
        "LISTSCRIPTS does not show {name} ACTIVE: {scripts:?}"
    );
    let (body, _) = sieve.getscript(name).await?;
    ensure!(
        body.as_deref() == Some(FILTER.as_bytes()),
        "GETSCRIPT returned other bytes: {body:?}"
    );
    Ok(())
}

fn message(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\nfiltered or not\r\n")
        .into_bytes()
}

async fn inbound(addr: SocketAddr, user: &str, subject: &str) -> anyhow::Result<()> {
    let mut smtp = SmtpClient::connect(addr).await?;
    smtp.ehlo("sender.example").await?;
    let from = "list@sender.example";
    let reply = smtp
        .send_mail(from, &[user], &message(from, user, subject))
        .await?;
    ensure!(reply.code == 250, "inbound SMTP: {reply}");
    let _ = smtp.quit().await;
    Ok(())
}

async fn submit(target: &MailTarget, user: &str, token: &str, subject: &str) -> anyhow::Result<()> {
    let mut smtp = smtp_login(target, user, token).await?;
    let reply = smtp
        .send_mail(user, &[user], &message(user, user, subject))
        .await?;
    ensure!(reply.code == 250, "submission: {reply}");
    let _ = smtp.quit().await;
    Ok(())
}

/// Messages in `mailbox` whose subject contains `subject` (0 if the mailbox does not exist).
async fn search(imap: &mut ImapClient, mailbox: &str, subject: &str) -> anyhow::Result<usize> {
    let select = imap.command(&format!("EXAMINE {}", quote(mailbox))).await?;
    if !select.is_ok() {
        return Ok(0);
    }
    let reply = imap
        .command(&format!("SEARCH SUBJECT {}", quote(subject)))
        .await?;
    ensure!(reply.is_ok(), "SEARCH: {reply:?}");
    let hits = reply
        .untagged
        .iter()
        .find_map(|l| l.strip_prefix("* SEARCH"))
        .context("no * SEARCH line")?;
    Ok(hits.split_whitespace().count())
}

/// Polls until `mailbox` holds exactly `want` messages matching `subject`.
async fn wait_for(
    imap: &mut ImapClient,
    mailbox: &str,
    subject: &str,
    want: usize,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    loop {
        interval.tick().await;
        let found = search(imap, mailbox, subject).await?;
        if found == want {
            return Ok(());
        }
        if found > want || tokio::time::Instant::now() >= deadline {
            bail!("{mailbox} holds {found} message(s) matching {subject:?}, expected {want}");
        }
    }
}
