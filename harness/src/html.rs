//! Just enough HTML for a headless browser: the forms of a page (action, inputs, buttons) with
//! HTML entities decoded, and the IdP's error banner. LemonLDAP::NG's login form posts to `#`
//! with a `user` field; Keycloak's posts to an absolute `login-actions` URL with `username`;
//! their logout confirmations are forms with a `confirm` / `confirmLogout` button.

use anyhow::Context;
use url::Url;

/// One `<form>`: its `action` and the attributes of every `<input>` and `<button>` in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub action: Option<String>,
    pub controls: Vec<Vec<(String, String)>>,
}

impl Form {
    fn typed<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Vec<(String, String)>> + 'a {
        self.controls
            .iter()
            .filter(move |c| attr(c, "type").is_some_and(|t| t.eq_ignore_ascii_case(kind)))
    }

    /// The name of the password input, if the form has one.
    pub fn password_field(&self) -> Option<&str> {
        self.typed("password").find_map(|c| attr(c, "name"))
    }

    /// The user-name input: the first named text-like input (`user`, `username`, `login`...).
    pub fn user_field(&self) -> Option<&str> {
        self.controls
            .iter()
            .filter(|c| {
                attr(c, "type")
                    .is_none_or(|t| ["text", "email"].iter().any(|k| t.eq_ignore_ascii_case(k)))
            })
            .find_map(|c| attr(c, "name"))
    }

    /// `name=value` of every hidden input.
    pub fn hidden(&self) -> Vec<(String, String)> {
        self.typed("hidden")
            .filter_map(|c| {
                Some((
                    attr(c, "name")?.to_string(),
                    attr(c, "value").unwrap_or("").to_string(),
                ))
            })
            .collect()
    }

    /// A submit control whose name contains `word` (case-insensitive), as `name=value` (value
    /// `1` when it has none).
    pub fn submit_named(&self, word: &str) -> Option<(String, String)> {
        let word = word.to_ascii_lowercase();
        self.controls
            .iter()
            .filter(|c| {
                let submit_type = attr(c, "type").map(|t| t.eq_ignore_ascii_case("submit"));
                // A `<button>` submits unless its type says otherwise.
                submit_type == Some(true)
                    || (attr(c, "tag") == Some("button") && submit_type.is_none())
            })
            .find_map(|c| {
                let name = attr(c, "name")?;
                name.to_ascii_lowercase().contains(&word).then(|| {
                    (
                        name.to_string(),
                        attr(c, "value")
                            .filter(|v| !v.is_empty())
                            .unwrap_or("1")
                            .to_string(),
                    )
                })
            })
    }

    /// Where the form posts: its action resolved against `page`; `#` or none = `page` itself.
    pub fn target(&self, page: &Url) -> anyhow::Result<Url> {
        match self.action.as_deref().map(str::trim) {
            None | Some("") | Some("#") => Ok(page.clone()),
            Some(action) => page
                .join(action)
                .with_context(|| format!("form action {action:?}")),
        }
    }
}

fn regex(
    cell: &'static std::sync::OnceLock<Option<regex::Regex>>,
    re: &str,
) -> Option<&'static regex::Regex> {
    cell.get_or_init(|| regex::Regex::new(re).ok()).as_ref()
}

/// Attributes of one tag, names lower-cased, values unescaped.
fn attributes(tag: &str) -> Vec<(String, String)> {
    static ATTR: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) = regex(
        &ATTR,
        r#"(?s)([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))"#,
    ) else {
        return Vec::new();
    };
    re.captures_iter(tag)
        .filter_map(|c| {
            let name = c.get(1)?.as_str().to_ascii_lowercase();
            let value = c.get(2).or(c.get(3)).or(c.get(4))?.as_str();
            Some((name, html_unescape(value)))
        })
        .collect()
}

/// The `<input>` and `<button>` tags of a fragment; a button gets a synthetic `tag=button`.
fn controls(fragment: &str) -> Vec<Vec<(String, String)>> {
    static CONTROL: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) = regex(&CONTROL, r"(?is)<(input|button)\b[^>]*>") else {
        return Vec::new();
    };
    re.captures_iter(fragment)
        .filter_map(|c| {
            let whole = c.get(0)?.as_str();
            let mut attrs = attributes(whole);
            if c.get(1)?.as_str().eq_ignore_ascii_case("button") {
                attrs.push(("tag".into(), "button".into()));
            }
            Some(attrs)
        })
        .collect()
}

/// Every form of the page; controls outside any form make one form without an action.
pub fn forms(page: &str) -> Vec<Form> {
    static FORM: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) = regex(&FORM, r"(?is)<form\b([^>]*)>(.*?)</form>") else {
        return Vec::new();
    };
    let found: Vec<Form> = re
        .captures_iter(page)
        .filter_map(|c| {
            let attrs = attributes(c.get(1)?.as_str());
            Some(Form {
                action: attr(&attrs, "action").map(str::to_string),
                controls: controls(c.get(2)?.as_str()),
            })
        })
        .collect();
    if found.is_empty() {
        let all = controls(page);
        if !all.is_empty() {
            return vec![Form {
                action: None,
                controls: all,
            }];
        }
    }
    found
}

/// The form with a password input (a login form), if the page has one.
pub fn login_form(page: &str) -> Option<Form> {
    forms(page)
        .into_iter()
        .find(|f| f.password_field().is_some())
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The HTML entities that appear in attribute values.
pub fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let decoded = tail.find(';').and_then(|end| {
            let entity = &tail[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let num = entity.strip_prefix('#')?;
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// LemonLDAP::NG's error banner (`<div class="message message-... alert">...</div>`), if any.
pub fn portal_message(page: &str) -> Option<String> {
    let re =
        regex::Regex::new(r#"(?s)<div[^>]*class="[^"]*\bmessage\b[^"]*"[^>]*>(.*?)</div>"#).ok()?;
    let inner = re.captures(page)?.get(1)?.as_str();
    let tags = regex::Regex::new(r"(?s)<[^>]*>").ok()?;
    let text = tags.replace_all(inner, " ");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() {
        return Some(text);
    }
    // 2.21 fills the text in with JavaScript; the error number (PE_*) is in `trmsg`.
    let code = regex::Regex::new(r#"trmsg="(\d+)""#).ok()?;
    let n = code.captures(inner)?.get(1)?.as_str();
    Some(format!(
        "portal error {n}{}",
        if n == "5" { " (bad credentials)" } else { "" }
    ))
}

pub fn snippet(page: &str) -> String {
    let compact = page.split_whitespace().collect::<Vec<_>>().join(" ");
    compact.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_form_fields() {
        let page = r##"<form action="#" method="post" class="login">
            <input type="hidden" name="url" value="aHR0cDovL2E/Yj0xJmFtcDtjPTI=" />
            <input name="token" type="hidden" value="17000&amp;abc&#x3D;&#61;">
            <input type='hidden' name='skin' value='bootstrap'>
            <input type="text" name="user" value="">
            <input type="password" name="password" class="form-control">
            <INPUT TYPE="HIDDEN" NAME="timezone" VALUE=1>
        </form>"##;
        assert!(login_form(page).is_some());
        assert!(login_form("<p>name=\"password\" is not an input</p>").is_none());
        assert_eq!(
            login_form(page).expect("form").hidden(),
            vec![
                (
                    "url".to_string(),
                    "aHR0cDovL2E/Yj0xJmFtcDtjPTI=".to_string()
                ),
                ("token".to_string(), "17000&abc==".to_string()),
                ("skin".to_string(), "bootstrap".to_string()),
                ("timezone".to_string(), "1".to_string()),
            ]
        );
    }

    #[test]
    fn unescape_and_messages() {
        assert_eq!(
            html_unescape("a&amp;b&lt;&#65;&#x42;&bogus;&"),
            "a&b<AB&bogus;&"
        );
        let page = r#"<div class="message message-negative alert"><span trmsg="5">Wrong credentials</span></div>"#;
        assert_eq!(portal_message(page).as_deref(), Some("Wrong credentials"));
        let page = r#"<div class="message message-negative alert" role="alert"><span trmsg="5"></span>
        </div>"#;
        assert_eq!(
            portal_message(page).as_deref(),
            Some("portal error 5 (bad credentials)")
        );
    }

    #[test]
    fn keycloak_login_and_logout_forms() {
        let login = r#"<form id="kc-form-login" onsubmit="x" action="http://localhost:1/realms/m/login-actions/authenticate?session_code=a&amp;execution=b" method="post">
            <input id="username" name="username" value="" type="text" autocomplete="username" autofocus>
            <input id="password" name="password" value="" type="password">
            <input type="hidden" id="id-hidden-input" name="credentialId" />
            <input tabindex="4" name="login" id="kc-login" type="submit" value="Sign In"/>
        </form>"#;
        let form = login_form(login).expect("login form");
        assert_eq!(form.user_field(), Some("username"));
        assert_eq!(form.password_field(), Some("password"));
        let page = Url::parse("http://localhost:1/realms/m/protocol/openid-connect/auth?x=1")
            .expect("url");
        assert_eq!(
            form.target(&page).expect("target").as_str(),
            "http://localhost:1/realms/m/login-actions/authenticate?session_code=a&execution=b"
        );
        let logout = r#"<form class="form-actions" action="/realms/m/protocol/openid-connect/logout/logout-confirm?client_id=account&amp;tab_id=T" method="POST">
            <input type="hidden" name="session_code" value="S">
            <input tabindex="4" class="b" name="confirmLogout" id="kc-logout" type="submit" value="Logout"/>
        </form>"#;
        let form = &forms(logout)[0];
        assert_eq!(
            form.hidden(),
            vec![("session_code".to_string(), "S".to_string())]
        );
        assert_eq!(
            form.submit_named("confirm"),
            Some(("confirmLogout".to_string(), "Logout".to_string()))
        );
        assert_eq!(
            form.target(&page).expect("target").as_str(),
            "http://localhost:1/realms/m/protocol/openid-connect/logout/logout-confirm?client_id=account&tab_id=T"
        );
        // LemonLDAP::NG's confirmation is a button; its form posts back to the page.
        let llng = r##"<form action="#" method="post"><input type="hidden" name="url" value="u"><button type="submit" name="confirm" class="btn">OK</button></form>"##;
        let form = &forms(llng)[0];
        assert_eq!(
            form.submit_named("confirm"),
            Some(("confirm".into(), "1".into()))
        );
        assert_eq!(form.target(&page).expect("target"), page);
    }
}
