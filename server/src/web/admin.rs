//! `POST /admin/revoke` with `{"sub": ..}`, `{"sid": ..}` or `{"user": ..}` (plus an optional
//! `iss`, default the configured issuer): the same path as a logout, for identities listed in
//! `server.admins`. A user revocation ends every session of that user, whatever the login
//! method, and revokes the subjects of their live token sessions so the gateway refuses them too.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::HttpContext;
use crate::auth::request_auth::{HttpIdentity, Problem};
use crate::auth::revocation::Revocation;

pub const PATH: &str = "/admin/revoke";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub user: Option<String>,
    pub iss: Option<String>,
}

/// What the request names, checked without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Subject { issuer: Option<String>, sub: String },
    Session { issuer: Option<String>, sid: String },
    User(String),
}

pub fn parse(body: &[u8]) -> Result<Target, String> {
    let req: RevokeRequest =
        serde_json::from_slice(body).map_err(|e| format!("not a revocation request: {e}"))?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    match (nonempty(req.sub), nonempty(req.sid), nonempty(req.user)) {
        (Some(sub), None, None) => Ok(Target::Subject {
            issuer: req.iss,
            sub,
        }),
        (None, Some(sid), None) => Ok(Target::Session {
            issuer: req.iss,
            sid,
        }),
        (None, None, Some(user)) if req.iss.is_none() => Ok(Target::User(user)),
        (None, None, Some(_)) => Err("iss goes with sub or sid, not with user".into()),
        _ => Err("name exactly one of sub, sid or user".into()),
    }
}

pub async fn revoke(
    State(ctx): State<Arc<HttpContext>>,
    Extension(identity): Extension<HttpIdentity>,
    body: Bytes,
) -> Response {
    if !ctx
        .admins
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&identity.user))
    {
        tracing::warn!(user = %identity.user, "admin revocation refused: not in server.admins");
        return Problem::new(StatusCode::FORBIDDEN, "not an administrator").into_response();
    }
    let Some(revocation) = &ctx.revocation else {
        return Problem::new(StatusCode::NOT_FOUND, "revocation is not configured").into_response();
    };
    let target = match parse(&body) {
        Ok(t) => t,
        Err(why) => return Problem::new(StatusCode::BAD_REQUEST, why).into_response(),
    };
    let issuer =
        |given: Option<String>| given.or_else(|| ctx.issuer.as_ref().and_then(|v| v.issuer()));
    let now = crate::time::now_unix().max(0) as u64;
    let revocations = match target {
        Target::Subject { issuer: iss, sub } => match issuer(iss) {
            Some(issuer) => vec![Revocation::Subject {
                issuer,
                subject: sub,
                before: now,
            }],
            None => return no_issuer(),
        },
        Target::Session { issuer: iss, sid } => match issuer(iss) {
            Some(issuer) => vec![Revocation::Session { issuer, sid }],
            None => return no_issuer(),
        },
        Target::User(name) => {
            let user = match ctx.authenticator().directory().lookup(&name).await {
                Ok(Some(canonical)) => canonical,
                Ok(None) => {
                    return Problem::new(
                        StatusCode::NOT_FOUND,
                        format!("user {name:?} is not in the directory"),
                    )
                    .into_response();
                }
                Err(e) => {
                    return Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                        .into_response();
                }
            };
            // The gateway knows tokens by subject, not by user: revoke the subjects seen here.
            let subjects: BTreeSet<(String, String)> = revocation
                .registry()
                .sessions()
                .iter()
                .filter(|(_, s)| s.user.eq_ignore_ascii_case(&user))
                .filter_map(|(_, s)| {
                    s.token
                        .as_ref()
                        .map(|t| (t.issuer.clone(), t.subject.clone()))
                })
                .collect();
            let mut list = vec![Revocation::User { user, before: now }];
            list.extend(
                subjects
                    .into_iter()
                    .map(|(issuer, subject)| Revocation::Subject {
                        issuer,
                        subject,
                        before: now,
                    }),
            );
            list
        }
    };
    let mut ended = 0;
    for r in &revocations {
        match revocation.revoke(r.clone()).await {
            Ok(n) => ended += n,
            Err(e) => {
                tracing::warn!(error = %e, "admin revocation could not be recorded");
                return Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .into_response();
            }
        }
    }
    tracing::info!(admin = %identity.user, ?revocations, ended, "admin revocation");
    Json(json!({ "revoked": revocations, "ended": ended })).into_response()
}

fn no_issuer() -> Response {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "the issuer is not known yet: pass iss",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_target() {
        assert_eq!(
            parse(br#"{"sub":"alice"}"#),
            Ok(Target::Subject {
                issuer: None,
                sub: "alice".into()
            })
        );
        assert_eq!(
            parse(br#"{"sid":"s1","iss":"https://idp"}"#),
            Ok(Target::Session {
                issuer: Some("https://idp".into()),
                sid: "s1".into()
            })
        );
        assert_eq!(
            parse(br#"{"user":"demo"}"#),
            Ok(Target::User("demo".into()))
        );
        for bad in [
            &br#"{}"#[..],
            br#"{"sub":"a","sid":"b"}"#,
            br#"{"user":"u","iss":"i"}"#,
            br#"{"sub":" "}"#,
            br#"{"subject":"a"}"#,
            b"not json",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
