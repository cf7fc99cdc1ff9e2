//! The `MAIL_OIDC_*` environment file: what `mail-oidc up` writes once every service answers, and
//! what the other commands (and scripts, and tests) read back.

use std::collections::HashMap;

use crate::idp::IdpSettings;
use crate::stack::Stack;

/// Every `MAIL_OIDC_*` entry of the stack, in the order they are written.
pub fn entries(
    stack: &Stack,
    settings: &IdpSettings,
    user: &str,
    password: &str,
    access_token: &str,
) -> Vec<(&'static str, String)> {
    let ep = stack.endpoints();
    let realm = stack.realm();
    let web = realm.web_client();
    let admin = realm.admin();
    vec![
        ("MAIL_OIDC_IMAP", ep.imap.to_string()),
        ("MAIL_OIDC_IMAPS", ep.imaps.to_string()),
        ("MAIL_OIDC_SUBMISSION", ep.submission.to_string()),
        ("MAIL_OIDC_SUBMISSIONS", ep.submissions.to_string()),
        ("MAIL_OIDC_SMTP", ep.smtp.to_string()),
        ("MAIL_OIDC_POP3", ep.pop3.to_string()),
        ("MAIL_OIDC_POP3S", ep.pop3s.to_string()),
        ("MAIL_OIDC_SIEVE", ep.sieve.to_string()),
        ("MAIL_OIDC_HTTP", format!("http://{}", ep.http)),
        ("MAIL_OIDC_JMAP", ep.jmap_session.clone()),
        ("MAIL_OIDC_GATEWAY", ep.gateway.clone()),
        ("MAIL_OIDC_ISSUER", ep.issuer.clone()),
        ("MAIL_OIDC_DISCOVERY_URL", ep.discovery_url.clone()),
        (
            "MAIL_OIDC_AUTHORIZATION_ENDPOINT",
            ep.authorization_endpoint.clone(),
        ),
        ("MAIL_OIDC_TOKEN_ENDPOINT", ep.token_endpoint.clone()),
        ("MAIL_OIDC_LOGOUT_URL", ep.logout_url.clone()),
        (
            "MAIL_OIDC_BACKCHANNEL_LOGOUT_URL",
            ep.backchannel_logout_url.clone(),
        ),
        ("MAIL_OIDC_CLIENT_ID", settings.client_id.clone()),
        (
            "MAIL_OIDC_CLIENT_SECRET",
            settings.client_secret.clone().unwrap_or_default(),
        ),
        ("MAIL_OIDC_REDIRECT_URI", settings.redirect_uri.clone()),
        (
            "MAIL_OIDC_WEB_CLIENT_ID",
            web.map(|c| c.client_id.clone()).unwrap_or_default(),
        ),
        (
            "MAIL_OIDC_WEB_REDIRECT_URI",
            web.and_then(|c| c.redirect_uris.first().cloned())
                .unwrap_or_default(),
        ),
        ("MAIL_OIDC_USER", user.to_string()),
        ("MAIL_OIDC_PASSWORD", password.to_string()),
        (
            "MAIL_OIDC_ADMIN_USER",
            admin.map(|a| a.mail.clone()).unwrap_or_default(),
        ),
        (
            "MAIL_OIDC_ADMIN_PASSWORD",
            admin.map(|a| a.password.clone()).unwrap_or_default(),
        ),
        ("MAIL_OIDC_CA_CERT", ep.ca_cert.display().to_string()),
        ("MAIL_OIDC_LDAP_URL", ep.ldap_url.clone()),
        ("MAIL_OIDC_REDIS_URL", ep.redis_url.clone()),
        ("MAIL_OIDC_ACCESS_TOKEN", access_token.to_string()),
    ]
}

/// `KEY=VALUE` lines.
pub fn render(entries: &[(&str, String)]) -> String {
    entries.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// `KEY=VALUE` lines; blank lines and `#` comments skipped, optional quotes removed.
pub fn parse(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let unquoted = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                .unwrap_or(v);
            (
                k.trim().trim_start_matches("export ").trim().to_string(),
                unquoted.to_string(),
            )
        })
        .collect()
}
