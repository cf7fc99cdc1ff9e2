//! Revocation beyond the IdP's own logout: hostile logout tokens refused, a logout reaching
//! every server instance, an administrator revoking a user, the introspection re-check for IdPs
//! that send no back-channel call, and the revocation store going away and coming back.

use std::future::Future;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use super::access::{self, Path};
use super::live::{self, LiveSession};
use super::sso::sign_on;
use super::{Account, END_DEADLINE, IdpTarget, Level, MailTarget, Report, Spec};
use crate::clients::jmap::{Auth, JmapClient};
use crate::idp::IdpClient;
use crate::tokens::{HostileLogout, TokenForge, decode_unverified};

/// `sid` and `sub` of an access token.
pub fn session_of(token: &str) -> anyhow::Result<(Option<String>, String)> {
    let (_, claims) = decode_unverified(token)?;
    let sid = claims
        .get("sid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .map(str::to_string)
        .context("the token has no sub")?;
    Ok((sid, sub))
}

/// POSTs `logout_token` as a form; (status, Cache-Control, body).
pub async fn post_logout_token(
    url: &str,
    logout_token: &str,
) -> anyhow::Result<(u16, Option<String>, String)> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let resp = http
        .post(url)
        .form(&[("logout_token", logout_token)])
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((status, cache, resp.text().await.unwrap_or_default()))
}

fn expect_refused(status: u16, body: &str, reason: &str) -> anyhow::Result<()> {
    if status != 400 {
        bail!("expected 400, got {status}: {body}");
    }
    let json: Value = serde_json::from_str(body).context("the 400 body is not JSON")?;
    if json.get("error").and_then(Value::as_str) != Some("invalid_request") {
        bail!("expected error invalid_request: {json}");
    }
    let description = json
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !description.to_lowercase().contains(reason) {
        bail!("the error_description does not name {reason:?}: {json}");
    }
    Ok(())
}

/// Every hostile logout token gets 400 and ends nothing; then a valid one (same `sid`) ends the
/// session, and sending it again is refused as a replay. `forge` signs with the IdP's key.
pub async fn hostile_logout_tokens(
    target: &MailTarget,
    backchannel_url: &str,
    forge: &TokenForge,
    account: &Account,
    token: &str,
) -> Report {
    let mut report = Report::new("hostile logout tokens");
    let Some((sid, sub)) = report.step("the token names its session", session_of(token)) else {
        return report;
    };
    let Some(mut victim) = report.step(
        "open an IMAP session",
        live::imap_selected(target, &account.mail, token).await,
    ) else {
        return report;
    };
    for kind in HostileLogout::ALL {
        let result = async {
            let bad = forge.try_hostile_logout(kind, sid.as_deref(), Some(&sub))?;
            let (status, _, body) = post_logout_token(backchannel_url, &bad).await?;
            expect_refused(status, &body, kind.expected_reason())?;
            victim.still_alive().await.context("the session was ended")
        }
        .await;
        // Replays and age limits are optional in the spec (§2.6 "MAY"/"optionally").
        let level = match kind {
            HostileLogout::TooOld => Level::Should,
            _ => Level::Must,
        };
        report.check_spec(
            Spec::new(
                format!(
                    "backchannel.hostile-logout-token.{}",
                    super::sasl::kebab(&format!("{kind:?}"))
                ),
                format!("a logout token ({kind:?}) gets 400 and ends nothing"),
                "backchannel",
                "OpenID Connect Back-Channel Logout 1.0 §2.6",
                level,
            ),
            format!(
                "{kind:?}: 400 naming {:?}, nothing ended",
                kind.expected_reason()
            ),
            result,
        );
    }
    let Some(valid) = report.step(
        "a valid logout token for that session",
        forge.try_logout_token(&forge.logout_claims(sid.as_deref(), Some(&sub))),
    ) else {
        return report;
    };
    report.check_spec(
        Spec::must(
            "backchannel.valid-logout-token.accepted",
            "a valid logout token gets 200 with Cache-Control: no-store",
            "backchannel",
            "OpenID Connect Back-Channel Logout 1.0 §2.8",
        ),
        "the valid logout token: 200, Cache-Control: no-store",
        async {
            let (status, cache, body) = post_logout_token(backchannel_url, &valid).await?;
            if status != 200 {
                bail!("expected 200, got {status}: {body}");
            }
            if cache.as_deref() != Some("no-store") {
                bail!("Cache-Control is {cache:?}");
            }
            Ok(())
        }
        .await,
    );
    report.check_spec(
        Spec::must(
            "backchannel.valid-logout-token.ends-session",
            "a valid logout token ends the session it names",
            "backchannel",
            "OpenID Connect Back-Channel Logout 1.0 §2.7",
        ),
        "the session ended",
        victim.ended(END_DEADLINE).await.map(|_| ()),
    );
    report.check_spec(
        Spec::should(
            "backchannel.replayed-jti",
            "the same logout token again gets 400",
            "backchannel",
            "OpenID Connect Back-Channel Logout 1.0 §2.6",
        ),
        "the same logout token again: 400 (replayed jti)",
        async {
            let (status, _, body) = post_logout_token(backchannel_url, &valid).await?;
            expect_refused(status, &body, "replay")
        }
        .await,
    );
    report
}

/// A logout delivered to one instance ends the sessions on every instance (they share the
/// store). `targets[0]` is the instance the IdP calls.
pub async fn logout_reaches_every_instance(
    targets: &[MailTarget],
    idp: &IdpTarget,
    account: &Account,
) -> Report {
    let mut report = Report::new("logout across instances");
    let Some(on) = report.step("browser login", sign_on(idp, account).await) else {
        return report;
    };
    let token = on.confidential.tokens.access_token.clone();
    let mut sessions = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        for (kind, session) in [
            (
                "IMAP IDLE",
                live::imap_idle(target, &account.mail, &token).await,
            ),
            (
                "JMAP WebSocket",
                live::websocket_direct(target, &token).await,
            ),
        ] {
            if let Some(s) = report.step(format!("open {kind} on instance {}", i + 1), session) {
                sessions.push((i + 1, kind, s));
            }
        }
    }
    let logout = async {
        IdpClient::new(idp.confidential.clone())?
            .browser_logout(&on.browser, &idp.logout_url)
            .await
    }
    .await;
    if report.step("log out at the IdP", logout).is_none() {
        return report;
    }
    for (instance, kind, mut session) in sessions {
        report.check(
            format!("{kind} on instance {instance} ended"),
            session.ended(END_DEADLINE).await.map(|_| ()),
        );
    }
    for (i, target) in targets.iter().enumerate() {
        report.check(
            format!("the old token is refused on instance {}", i + 1),
            access::refused(target, Path::Imap, &account.mail, &token, None).await,
        );
    }
    report
}

/// POSTs `body` to `<http>/admin/revoke` with Basic `admin`; (status, body).
pub async fn admin_revoke(
    admin_url: &str,
    admin: &Account,
    body: &Value,
) -> anyhow::Result<(u16, String)> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let resp = http
        .post(admin_url)
        .basic_auth(&admin.mail, Some(&admin.password))
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {admin_url}"))?;
    Ok((
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    ))
}

/// An administrator revokes a user: every session of that user ends, whatever the login method
/// (a password IMAP session too), and the user's token is refused; someone else may not.
pub async fn admin_revocation(
    target: &MailTarget,
    admin_url: &str,
    admin: &Account,
    victim: &Account,
    victim_token: &str,
) -> Report {
    let mut report = Report::new("admin revocation");
    report.check(
        "a non-administrator is refused with 403",
        async {
            let (status, body) =
                admin_revoke(admin_url, victim, &serde_json::json!({"user": victim.mail})).await?;
            if status != 403 {
                bail!("expected 403, got {status}: {body}");
            }
            Ok(())
        }
        .await,
    );
    let mut sessions = Vec::new();
    for (name, session) in [
        (
            "IMAP (bearer)",
            live::imap_selected(target, &victim.mail, victim_token).await,
        ),
        ("IMAP (password)", imap_password(target, victim).await),
        (
            "SMTP (bearer) in DATA",
            live::smtp_in_data(target, &victim.mail, victim_token, &victim.mail).await,
        ),
        (
            "JMAP WebSocket",
            live::websocket_direct(target, victim_token).await,
        ),
    ] {
        if let Some(s) = report.step(format!("open {name}"), session) {
            sessions.push((name, s));
        }
    }
    report.check(
        "the administrator revokes the user: 200 with what was revoked",
        async {
            let (status, body) =
                admin_revoke(admin_url, admin, &serde_json::json!({"user": victim.mail})).await?;
            if status != 200 {
                bail!("expected 200, got {status}: {body}");
            }
            let json: Value = serde_json::from_str(&body)?;
            if !json.get("revoked").is_some_and(Value::is_array) {
                bail!("no revoked list: {json}");
            }
            Ok(())
        }
        .await,
    );
    for (name, mut session) in sessions {
        report.check(
            format!("{name} ended"),
            session.ended(END_DEADLINE).await.map(|_| ()),
        );
    }
    for path in Path::ALL.into_iter().filter(|p| p.offered(target)) {
        report.check(
            format!("the user's token is refused on {}", path.name()),
            access::refused(target, path, &victim.mail, victim_token, Some("revoked")).await,
        );
    }
    report
}

/// IMAPS + LOGIN with the password, INBOX selected.
async fn imap_password(target: &MailTarget, account: &Account) -> anyhow::Result<LiveSession> {
    let mut imap =
        crate::clients::imap::ImapClient::connect_tls(target.imaps_addr()?, &target.ca_pem).await?;
    let login = imap.login(&account.mail, &account.password).await?;
    if !login.is_ok() {
        bail!("LOGIN refused: {login:?}");
    }
    let select = imap.select("INBOX").await?;
    if !select.is_ok() {
        bail!("SELECT: {select:?}");
    }
    Ok(LiveSession::ImapSelected(imap))
}

/// The IdP session is killed without a back-channel call (`kill`); the server's introspection
/// re-check ends the live session and the token is refused from then on.
pub async fn introspection_recheck<F>(
    target: &MailTarget,
    account: &Account,
    token: &str,
    kill: F,
) -> Report
where
    F: Future<Output = anyhow::Result<()>>,
{
    let mut report = Report::new("introspection re-check");
    let Some(mut session) = report.step(
        "open an IMAP session",
        live::imap_idle(target, &account.mail, token).await,
    ) else {
        return report;
    };
    if report
        .step("kill the IdP session (no back-channel call)", kill.await)
        .is_none()
    {
        return report;
    }
    report.check(
        "the re-check ended the session",
        session.ended(END_DEADLINE).await.map(|_| ()),
    );
    report.check(
        "the token is refused on IMAP",
        access::refused(target, Path::Imap, &account.mail, token, None).await,
    );
    report
}

/// The revocation store goes away: new logins fail closed with each protocol's temporary
/// failure (server and gateway), open sessions live on; once it is back, logins work again.
pub async fn store_outage<S, R>(
    target: &MailTarget,
    account: &Account,
    token: &str,
    stop: S,
    restart: R,
) -> Report
where
    S: Future<Output = anyhow::Result<()>>,
    R: Future<Output = anyhow::Result<()>>,
{
    let mut report = Report::new("revocation store outage");
    let mut open = Vec::new();
    for (name, session) in [
        (
            "IMAP IDLE",
            live::imap_idle(target, &account.mail, token).await,
        ),
        (
            "JMAP WebSocket",
            live::websocket_direct(target, token).await,
        ),
    ] {
        if let Some(s) = report.step(format!("open {name}"), session) {
            open.push((name, s));
        }
    }
    if report.step("stop the store", stop.await).is_none() {
        return report;
    }
    for path in Path::ALL.into_iter().filter(|p| p.offered(target)) {
        report.check(
            format!("{} fails closed", path.name()),
            access::unavailable(target, path, &account.mail, token).await,
        );
    }
    for (name, session) in &mut open {
        report.check(
            format!("the open {name} lives on"),
            session.still_alive().await,
        );
    }
    if report
        .step("start the store again", restart.await)
        .is_none()
    {
        return report;
    }
    for path in Path::ALL.into_iter().filter(|p| p.offered(target)) {
        report.check(
            format!("{} works again", path.name()),
            recovered(target, path, &account.mail, token).await,
        );
    }
    report
}

/// Logins work again within the deadline (the store's clients reconnect on their own).
async fn recovered(target: &MailTarget, path: Path, user: &str, token: &str) -> anyhow::Result<()> {
    let deadline =
        crate::stack::wait::Deadline::new(format!("{} to work again", path.name()), END_DEADLINE);
    loop {
        match access::accepted(target, path, user, token).await {
            Ok(()) => return Ok(()),
            Err(e) => deadline
                .tick(format!("{e:#}"))
                .await
                .map_err(|t| anyhow!("{t}"))?,
        }
    }
}

/// What a hostile client puts in its own `Connection` header: the session headers the gateway
/// forwards. A proxy drops every header named there (hop-by-hop) after the gateway set it.
pub const HOSTILE_CONNECTION: &str = "X-User-Sid, X-User-Sub, X-User-Iat, X-User-Exp";

/// Which part of the session a back-channel logout names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutNames {
    Sid,
    Sub,
}

/// Issue 13's single log-out bypass through the gateway: a JMAP WebSocket and an EventSource
/// opened through `target`'s gateway by a client whose `Connection` header names the session
/// headers still end when a back-channel logout names that `sid` (or `sub`); the old token is
/// refused at the gateway afterwards. `forge` signs logout tokens with the IdP's key.
pub async fn hostile_connection_header(
    target: &MailTarget,
    idp: &IdpTarget,
    backchannel_url: &str,
    forge: &TokenForge,
    account: &Account,
    names: LogoutNames,
) -> Report {
    let mut report = Report::new("hostile Connection header through the gateway");
    let Some(gateway) = report.step(
        "the target has a gateway",
        target
            .gateway_jmap_session
            .clone()
            .context("no gateway session URL"),
    ) else {
        return report;
    };
    let Some(on) = report.step("browser login", sign_on(idp, account).await) else {
        return report;
    };
    let token = on.confidential.tokens.access_token.clone();
    let Some((sid, sub)) = report.step("the token names its session", session_of(&token)) else {
        return report;
    };
    let hostile = [("Connection".to_string(), HOSTILE_CONNECTION.to_string())];
    let client = || -> anyhow::Result<JmapClient> {
        Ok(
            JmapClient::new(&gateway, Auth::Bearer(token.clone()), &hostile)?
                .with_ca(&target.ca_pem)?,
        )
    };
    let mut doomed = Vec::new();
    let ws = async {
        let jmap = client()?;
        let account = jmap.session().await?.account_id;
        let mut ws = jmap.connect_ws().await?;
        let answer = ws.request(mailbox_get(&account)).await?;
        if answer.pointer("/methodResponses/0/0") != Some(&Value::from("Mailbox/get")) {
            bail!("Mailbox/get over the WebSocket answered {answer}");
        }
        anyhow::Ok(LiveSession::WebSocket(Box::new(ws)))
    }
    .await;
    if let Some(s) = report.step("open a WebSocket with the hostile header", ws) {
        doomed.push(("the WebSocket", s));
    }
    let events = async {
        let events = client()?.open_event_source().await?;
        anyhow::Ok(LiveSession::EventSource(Box::new(events)))
    }
    .await;
    if let Some(s) = report.step("open an EventSource with the hostile header", events) {
        doomed.push(("the EventSource", s));
    }
    let claims = match names {
        LogoutNames::Sid => sid
            .as_deref()
            .map(|sid| forge.logout_claims(Some(sid), None))
            .context("the browser login's token has no sid"),
        LogoutNames::Sub => Ok(forge.logout_claims(None, Some(&sub))),
    };
    let Some(logout) = report.step(
        format!("a logout token naming only the {names:?}"),
        claims.and_then(|c| forge.try_logout_token(&c)),
    ) else {
        return report;
    };
    report.check(
        "the logout token is accepted",
        async {
            let (status, _, body) = post_logout_token(backchannel_url, &logout).await?;
            if status != 200 {
                bail!("expected 200, got {status}: {body}");
            }
            Ok(())
        }
        .await,
    );
    for (name, mut session) in doomed {
        report.check(
            format!("{name} ended"),
            session.ended(END_DEADLINE).await.map(|_| ()),
        );
    }
    report.check(
        "the old token is refused through the gateway, hostile header or not",
        async {
            let err = match client()?.session().await {
                Ok(session) => bail!("the gateway served {}'s session", session.username),
                Err(e) => e,
            };
            if err.status() != Some(401) {
                bail!("expected 401, got {err}");
            }
            Ok(())
        }
        .await,
    );
    report
}

fn mailbox_get(account: &str) -> Value {
    serde_json::json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Mailbox/get", {"accountId": account, "ids": null}, "m"]]
    })
}
