//! The Session resource (RFC 8620 §2) with the mail, submission and WebSocket capabilities.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::JmapContext;
use super::api::{CORE, Caller, LIMITS, MAIL, SUBMISSION, WEBSOCKET};

/// Changes only when what the session says changes (user, limits, run).
pub fn session_state(ctx: &JmapContext, user: &str) -> String {
    let mut h = Sha256::new();
    h.update(user.to_ascii_lowercase().as_bytes());
    h.update(format!("{:?}", ctx.limits).as_bytes());
    h.update(ctx.epoch.as_bytes());
    let mut s = URL_SAFE_NO_PAD.encode(h.finalize());
    s.truncate(16);
    s
}

/// `ws://` for `http://`, `wss://` for `https://`.
fn ws_base(base: &str) -> String {
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    }
}

pub fn session_json(ctx: &JmapContext, caller: &Caller, base: &str) -> Value {
    let l = &ctx.limits;
    let account = &caller.account_id;
    json!({
        "capabilities": {
            CORE: {
                "maxSizeUpload": l.max_size_upload,
                "maxConcurrentUpload": l.max_concurrent_upload,
                "maxSizeRequest": l.max_size_request,
                "maxConcurrentRequests": l.max_concurrent_requests,
                "maxCallsInRequest": l.max_calls_in_request,
                "maxObjectsInGet": l.max_objects_in_get,
                "maxObjectsInSet": l.max_objects_in_set,
                "collationAlgorithms": ["i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"],
            },
            MAIL: {},
            SUBMISSION: {},
            WEBSOCKET: {
                "url": format!("{}/jmap/ws", ws_base(base)),
                "supportsPush": true,
            },
            LIMITS: {
                "maxFilterConditions": l.max_filter_conditions,
                "maxFilterDepth": l.max_filter_depth,
                "maxValuesInRequest": l.max_values_in_request,
                "maxDepthInRequest": l.max_depth_in_request,
            },
        },
        "accounts": {
            account.as_str(): {
                "name": caller.user,
                "isPersonal": true,
                "isReadOnly": false,
                "accountCapabilities": {
                    CORE: {},
                    MAIL: {
                        "maxMailboxesPerEmail": null,
                        "maxMailboxDepth": null,
                        "maxSizeMailboxName": 490,
                        "maxSizeAttachmentsPerEmail": l.max_size_upload,
                        "emailQuerySortOptions": [
                            "receivedAt", "size", "from", "to", "subject", "sentAt",
                            "hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"
                        ],
                        "mayCreateTopLevelMailbox": true,
                    },
                    SUBMISSION: {
                        "maxDelayedSend": 0,
                        "submissionExtensions": {},
                    },
                },
            },
        },
        "primaryAccounts": {
            CORE: account,
            MAIL: account,
            SUBMISSION: account,
        },
        "username": caller.user,
        "apiUrl": format!("{base}/jmap"),
        "downloadUrl": format!("{base}/download/{{accountId}}/{{blobId}}/{{name}}?type={{type}}"),
        "uploadUrl": format!("{base}/upload/{{accountId}}"),
        "eventSourceUrl": format!("{base}/jmap/eventsource?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"),
        "state": session_state(ctx, &caller.user),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls() {
        assert_eq!(
            ws_base("https://mail.example.com/x"),
            "wss://mail.example.com/x"
        );
        assert_eq!(ws_base("http://127.0.0.1:8080"), "ws://127.0.0.1:8080");
    }
}
