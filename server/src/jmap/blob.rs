//! Blobs (RFC 8620 §6): uploads kept in memory per account (bounded, oldest evicted first),
//! and downloads of uploads, whole messages and single MIME parts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use super::JmapContext;
use super::error::{problem, problem_response};
use super::ids;
use super::methods::email_part_blob;
use super::routes::Authed;
use super::view::Snapshot;

#[derive(Debug, Clone)]
pub struct Stored {
    pub data: Arc<Vec<u8>>,
    pub content_type: String,
}

#[derive(Default)]
struct Account {
    blobs: HashMap<String, Stored>,
    order: VecDeque<String>,
    total: usize,
}

/// Uploaded blobs. RFC 8620 lets a server drop unreferenced uploads; we drop the oldest once
/// an account holds more than `limit` bytes.
pub struct BlobStore {
    limit: usize,
    inner: Mutex<HashMap<String, Account>>,
}

impl BlobStore {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            inner: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Account>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a blob; its id (content-addressed, so re-uploads are free).
    pub fn put(&self, account: &str, data: Vec<u8>, content_type: String) -> String {
        let id = ids::blob_id(&data);
        let mut all = self.lock();
        let acc = all.entry(account.to_string()).or_default();
        if let Some(existing) = acc.blobs.get_mut(&id) {
            existing.content_type = content_type;
            return id;
        }
        acc.total += data.len();
        acc.blobs.insert(
            id.clone(),
            Stored {
                data: Arc::new(data),
                content_type,
            },
        );
        acc.order.push_back(id.clone());
        while acc.total > self.limit && acc.order.len() > 1 {
            let Some(old) = acc.order.pop_front() else {
                break;
            };
            if let Some(b) = acc.blobs.remove(&old) {
                acc.total -= b.data.len();
            }
        }
        id
    }

    pub fn get(&self, account: &str, blob_id: &str) -> Option<Stored> {
        self.lock().get(account)?.blobs.get(blob_id).cloned()
    }
}

/// Any blob the account can read: an upload, a whole message, or one part of a message.
pub fn resolve(
    ctx: &JmapContext,
    account_id: &str,
    snap: &Snapshot,
    blob_id: &str,
) -> Option<(Arc<Vec<u8>>, Option<String>)> {
    if let Some(b) = ctx.blobs.get(account_id, blob_id) {
        return Some((b.data, Some(b.content_type)));
    }
    if let Some(e) = snap.email_by_blob(blob_id) {
        return Some((e.meta.data.clone(), Some("message/rfc822".into())));
    }
    let (email_id, part) = ids::parse_part_blob_id(blob_id)?;
    let email = snap.emails.get(&email_id)?;
    let (data, ty) = email_part_blob(email, part)?;
    Some((Arc::new(data), Some(ty)))
}

fn forbidden_account(user: &str, account_id: &str) -> Response {
    tracing::info!(%user, account_id, "JMAP blob request for another account");
    problem_response(
        StatusCode::FORBIDDEN,
        json!({
            "type": "urn:ietf:params:jmap:error:accountNotFound",
            "status": 403,
            "detail": "no such account for this user",
        }),
    )
}

/// `POST /upload/{accountId}`.
pub async fn upload(
    State(ctx): State<Arc<JmapContext>>,
    authed: Authed,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if account_id != authed.caller.account_id {
        return forbidden_account(&authed.caller.user, &account_id);
    }
    let tracker = ctx.tracker(&authed.caller.user);
    let Ok(_permit) = tracker.uploads.clone().try_acquire_owned() else {
        tracing::info!(user = %authed.caller.user, "upload refused: too many concurrent uploads");
        return problem_response(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"type": "urn:ietf:params:jmap:error:limit", "status": 429,
                   "limit": "maxConcurrentUpload", "detail": "too many concurrent uploads"}),
        );
    };
    let limit = ctx.limits.max_size_upload;
    let data = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            tracing::info!(user = %authed.caller.user, error = %e, "upload refused: too large or unreadable");
            return problem_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"type": "urn:ietf:params:jmap:error:limit", "status": 413,
                       "limit": "maxSizeUpload",
                       "detail": format!("upload exceeds {limit} bytes or could not be read")}),
            );
        }
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("application/octet-stream")
        .to_string();
    let size = data.len();
    let blob_id = ctx.blobs.put(&account_id, data, content_type.clone());
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "accountId": account_id,
            "blobId": blob_id,
            "type": content_type,
            "size": size,
        })),
    )
        .into_response()
}

/// `GET /download/{accountId}/{blobId}/{name}?type=...`.
pub async fn download(
    State(ctx): State<Arc<JmapContext>>,
    authed: Authed,
    Path((account_id, blob_id, name)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    if account_id != authed.caller.account_id {
        return forbidden_account(&authed.caller.user, &account_id);
    }
    if !ids::is_valid(&blob_id) {
        return problem(StatusCode::NOT_FOUND, "no such blob");
    }
    let tracker = ctx.tracker(&authed.caller.user);
    let (snap, _) = tracker.refresh(ctx.store.as_ref());
    let Some((data, blob_type)) = resolve(&ctx, &account_id, &snap, &blob_id) else {
        tracing::debug!(user = %authed.caller.user, %blob_id, "download: no such blob");
        return problem(StatusCode::NOT_FOUND, "no such blob");
    };
    let requested = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "type" || k == "accept")
            .map(|(_, v)| v.into_owned())
    });
    let content_type = requested
        .or(blob_type)
        .filter(|t| t.contains('/'))
        .and_then(|t| HeaderValue::from_str(&t).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&content_disposition(&name))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_DISPOSITION, disposition),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("private, immutable, max-age=31536000"),
            ),
        ],
        data.to_vec(),
    )
        .into_response()
}

/// `attachment; filename="..."` with an RFC 6266 `filename*` for non-ASCII names.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ascii == name {
        format!("attachment; filename=\"{name}\"")
    } else {
        let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_content_addressed_and_bounded() {
        let store = BlobStore::new(10);
        let a = store.put("acc", b"12345".to_vec(), "text/plain".into());
        assert_eq!(a, store.put("acc", b"12345".to_vec(), "text/x".into()));
        assert_eq!(store.get("acc", &a).unwrap().content_type, "text/x");
        assert!(store.get("other", &a).is_none());
        let b = store.put("acc", b"678901".to_vec(), "x/y".into());
        assert!(
            store.get("acc", &a).is_none(),
            "oldest evicted over the limit"
        );
        assert!(store.get("acc", &b).is_some());
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\""
        );
        assert_eq!(
            content_disposition("é\".txt"),
            "attachment; filename=\"__.txt\"; filename*=UTF-8''%C3%A9%22.txt"
        );
    }
}
