//! Single sign-on: one browser login at the IdP, then a second client of the realm gets its own
//! tokens from the same browser without the password; both tokens work on every way in.

use anyhow::{Context, bail};
use serde_json::Value;

use super::access::{self, Path};
use super::{Account, IdpTarget, MailTarget, Report};
use crate::idp::{AuthCodeOutcome, BrowserSession, IdpClient};
use crate::tokens::decode_unverified;

/// The two logins of one browser, for flows that continue from there (single log-out).
pub struct SignedOn {
    pub browser: BrowserSession,
    /// The confidential client's tokens (the password was typed).
    pub confidential: AuthCodeOutcome,
    /// The web client's tokens (single sign-on, no password).
    pub web: AuthCodeOutcome,
}

/// Logs `account` in with the confidential client, then the web client from the same browser.
pub async fn sign_on(idp: &IdpTarget, account: &Account) -> anyhow::Result<SignedOn> {
    let browser = BrowserSession::new()?;
    let confidential = IdpClient::new(idp.confidential.clone())?
        .auth_code_login(&browser, Some((&account.mail, &account.password)))
        .await
        .context("browser login (confidential client)")?;
    if !confidential.login_form_shown {
        bail!("a fresh browser was not shown the login form");
    }
    let web = IdpClient::new(idp.web.clone())?
        .auth_code_login(&browser, None)
        .await
        .context("single sign-on (web client)")?;
    Ok(SignedOn {
        browser,
        confidential,
        web,
    })
}

/// The client a token was issued to (`client_id`, else `azp`, else the only `aud`).
pub fn client_of(token: &str) -> anyhow::Result<String> {
    let (_, claims) = decode_unverified(token)?;
    let single_aud = match claims.get("aud") {
        Some(Value::String(a)) => Some(a.clone()),
        Some(Value::Array(list)) if list.len() == 1 => list[0].as_str().map(str::to_string),
        _ => None,
    };
    claims
        .get("client_id")
        .or_else(|| claims.get("azp"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(single_aud)
        .with_context(|| format!("no client_id, azp or single aud in {claims}"))
}

pub async fn single_sign_on(target: &MailTarget, idp: &IdpTarget, account: &Account) -> Report {
    let mut report = Report::new("single sign-on");
    let Some(on) = report.step(
        "browser login, then the second client by SSO",
        sign_on(idp, account).await,
    ) else {
        return report;
    };
    report.check(
        "the second client got its tokens without the login form",
        if on.web.login_form_shown {
            Err(anyhow::anyhow!("the IdP asked for the password again"))
        } else {
            Ok(())
        },
    );
    for (client, outcome) in [
        (&idp.confidential.client_id, &on.confidential),
        (&idp.web.client_id, &on.web),
    ] {
        report.check(
            format!("the {client} token is issued to {client}"),
            client_of(&outcome.tokens.access_token).and_then(|got| {
                if &got == client {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("issued to {got}"))
                }
            }),
        );
        for path in Path::ALL.into_iter().filter(|p| p.offered(target)) {
            report.check(
                format!("the {client} token opens {}", path.name()),
                access::accepted(target, path, &account.mail, &outcome.tokens.access_token).await,
            );
        }
    }
    report
}
