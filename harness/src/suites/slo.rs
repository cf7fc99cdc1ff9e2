//! Single log-out: with sessions of every kind open for one user (IMAP in IDLE and selected,
//! SMTP in the middle of DATA, POP3, ManageSieve, JMAP WebSockets directly and through the
//! gateway, an EventSource), a logout at the IdP ends each with its protocol's goodbye; the old tokens open
//! nothing any more, the refresh token is dead at the IdP, the interrupted message was not
//! delivered, a new login works, and another user's sessions live on.

use std::time::Instant;

use anyhow::{Context, anyhow, bail};

use super::access::{self, Path};
use super::live::{self, LiveSession};
use super::sso::sign_on;
use super::{Account, END_DEADLINE, IdpTarget, MailTarget, Report};
use crate::idp::{IdpClient, IdpError};

/// How the user is logged out at the IdP.
pub enum LogoutBy<F> {
    /// The user's browser visits the IdP's logout URL (confirming if asked).
    Browser,
    /// Something else the IdP offers (e.g. Keycloak's admin "log out all sessions").
    Idp(F),
}

/// `account` is logged out by its browser; `bystander` (another user, signed on in another
/// browser) is not.
pub async fn single_log_out(
    target: &MailTarget,
    idp: &IdpTarget,
    account: &Account,
    bystander: &Account,
) -> Report {
    single_log_out_by(
        target,
        idp,
        account,
        bystander,
        LogoutBy::<std::future::Ready<anyhow::Result<()>>>::Browser,
    )
    .await
}

/// [`single_log_out`] with the logout done `by`.
pub async fn single_log_out_by<F>(
    target: &MailTarget,
    idp: &IdpTarget,
    account: &Account,
    bystander: &Account,
    by: LogoutBy<F>,
) -> Report
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut report = Report::new("single log-out");
    let Some(on) = report.step(
        "browser login and single sign-on",
        sign_on(idp, account).await,
    ) else {
        return report;
    };
    let Some(other) = report.step(
        "the bystander signs on in another browser",
        sign_on(idp, bystander).await,
    ) else {
        return report;
    };
    let conf = on.confidential.tokens.access_token.clone();
    let web = on.web.tokens.access_token.clone();
    let user = account.mail.as_str();

    // Sessions of both clients' tokens, on every protocol.
    let mut doomed: Vec<(String, LiveSession)> = Vec::new();
    let mut opened = Vec::new();
    opened.push(("IMAP IDLE", live::imap_idle(target, user, &conf).await));
    opened.push((
        "IMAP selected",
        live::imap_selected(target, user, &web).await,
    ));
    opened.push((
        "SMTP in DATA",
        live::smtp_in_data(target, user, &conf, &bystander.mail).await,
    ));
    if target.pop3s.is_some() {
        opened.push(("POP3", live::pop3_session(target, user, &web).await));
    }
    if target.sieve.is_some() {
        opened.push((
            "ManageSieve",
            live::sieve_session(target, user, &conf).await,
        ));
    }
    opened.push((
        "JMAP WebSocket direct",
        live::websocket_direct(target, &web).await,
    ));
    if let Some(gw) = &target.gateway_jmap_session {
        opened.push((
            "JMAP WebSocket through the gateway",
            live::websocket(target, gw, &conf).await,
        ));
    }
    opened.push((
        "JMAP EventSource",
        live::event_source_direct(target, &web).await,
    ));
    for (name, session) in opened {
        if let Some(s) = report.step(format!("open {name}"), session) {
            doomed.push((name.to_string(), s));
        }
    }
    let by_conf = &other.confidential.tokens.access_token;
    let mut spared: Vec<(String, LiveSession)> = Vec::new();
    for (name, session) in [
        (
            "bystander IMAP selected",
            live::imap_selected(target, &bystander.mail, by_conf).await,
        ),
        (
            "bystander JMAP WebSocket",
            live::websocket_direct(target, by_conf).await,
        ),
    ]
    .into_iter()
    .chain(if target.sieve.is_some() {
        Some((
            "bystander ManageSieve",
            live::sieve_session(target, &bystander.mail, by_conf).await,
        ))
    } else {
        None
    }) {
        if let Some(s) = report.step(format!("open {name}"), session) {
            spared.push((name.to_string(), s));
        }
    }

    let started = Instant::now();
    let (how, logout) = match by {
        LogoutBy::Browser => (
            "log out at the IdP (browser)",
            async {
                IdpClient::new(idp.confidential.clone())?
                    .browser_logout(&on.browser, &idp.logout_url)
                    .await?;
                anyhow::Ok(())
            }
            .await,
        ),
        LogoutBy::Idp(action) => ("log out at the IdP (its own way)", action.await),
    };
    if report.step(how, logout).is_none() {
        return report;
    }
    for (name, mut session) in doomed {
        let ended = session.ended(END_DEADLINE).await;
        report.check(
            format!("{name} ended with its goodbye"),
            ended.map(|goodbye| {
                tracing::info!(session = %name, after = ?started.elapsed(), %goodbye, "ended");
            }),
        );
    }

    for (client, token) in [
        (&idp.confidential.client_id, &conf),
        (&idp.web.client_id, &web),
    ] {
        for path in Path::ALL.into_iter().filter(|p| p.offered(target)) {
            report.check(
                format!("the old {client} token is refused on {}", path.name()),
                access::refused(target, path, user, token, Some("revoked")).await,
            );
        }
    }
    report.check(
        "the refresh token (no offline_access) no longer works at the IdP",
        refresh_refused(idp, on.confidential.tokens.refresh_token.as_deref()).await,
    );
    report.check(
        "the message interrupted in DATA was not delivered",
        mailbox_is_empty(target, &bystander.mail, by_conf).await,
    );
    for (name, mut session) in spared {
        report.check(format!("{name} is untouched"), session.still_alive().await);
    }
    report.check(
        "a new login of the same user works",
        async {
            let again = sign_on(idp, account).await?;
            access::accepted(
                target,
                Path::Imap,
                user,
                &again.confidential.tokens.access_token,
            )
            .await
        }
        .await,
    );
    report
}

async fn refresh_refused(idp: &IdpTarget, refresh_token: Option<&str>) -> anyhow::Result<()> {
    let rt = refresh_token.context("the login returned no refresh token")?;
    match IdpClient::new(idp.confidential.clone())?.refresh(rt).await {
        Ok(_) => bail!("the IdP still honours the refresh token"),
        Err(e) => match e.downcast_ref::<IdpError>().and_then(IdpError::oauth_error) {
            Some("invalid_grant") => Ok(()),
            other => Err(anyhow!("expected invalid_grant, got {other:?}: {e:#}")),
        },
    }
}

/// The user's INBOX holds no message.
async fn mailbox_is_empty(target: &MailTarget, user: &str, token: &str) -> anyhow::Result<()> {
    let mut imap = live::imap_login(target, user, token).await?;
    let select = imap.select("INBOX").await?;
    let exists = select
        .untagged
        .iter()
        .find_map(|l| {
            l.strip_prefix("* ")?
                .strip_suffix(" EXISTS")?
                .parse::<u32>()
                .ok()
        })
        .context("no EXISTS in the SELECT answer")?;
    if exists != 0 {
        bail!("INBOX holds {exists} message(s)");
    }
    Ok(())
}
