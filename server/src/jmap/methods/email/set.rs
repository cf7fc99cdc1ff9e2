//! Email/set (create drafts, keyword updates, mailbox moves, destroy) and Email/import
//! (RFC 8621 §4.6, §4.8). A move appends a copy (same bytes, same internal date, so the same
//! content-derived id) to the new mailboxes before expunging the old copies.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::query::parse_date;
use crate::jmap::blob;
use crate::jmap::error::{MethodError, SetError};
use crate::jmap::methods::{Call, SetArgs, SetResponse, check_set, parse_args};
use crate::jmap::mime::build_message;
use crate::jmap::view::{
    EmailView, MessageMeta, Snapshot, flag_to_keyword, keyword_to_flag, valid_keyword,
};
use crate::store::StoreError;
use crate::time::now_unix;

fn store_error(e: StoreError) -> SetError {
    match e {
        StoreError::TooLarge(n) => {
            SetError::new("tooLarge", format!("message of {n} bytes is too large"))
        }
        StoreError::OverQuota { .. } => SetError::new("overQuota", e.to_string()),
        StoreError::NoSuchMailbox(m) => {
            SetError::invalid_properties(&["mailboxIds"], format!("mailbox {m:?} vanished"))
        }
        other => SetError::new("serverFail", other.to_string()),
    }
}

/// `{id: true, ...}` -> mailbox store names, resolving `#creationId`s.
fn mailboxes_of(
    call: &Call<'_>,
    snap: &Snapshot,
    value: Option<&Value>,
    prop: &str,
) -> Result<BTreeMap<String, String>, SetError> {
    let Some(Value::Object(map)) = value else {
        return Err(SetError::invalid_properties(
            &[prop],
            "mailboxIds must be an object",
        ));
    };
    let mut out = BTreeMap::new();
    for (id, v) in map {
        if *v != json!(true) {
            return Err(SetError::invalid_properties(&[prop], "values must be true"));
        }
        let id = call.resolve_id(id).unwrap_or_else(|| id.clone());
        let m = snap
            .mailbox(&id)
            .ok_or_else(|| SetError::invalid_properties(&[prop], format!("no mailbox {id:?}")))?;
        out.insert(id, m.name.clone());
    }
    if out.is_empty() {
        return Err(SetError::invalid_properties(
            &[prop],
            "an email needs a mailbox",
        ));
    }
    Ok(out)
}

fn keywords_of(value: Option<&Value>) -> Result<BTreeSet<String>, SetError> {
    match value {
        None | Some(Value::Null) => Ok(BTreeSet::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                if *v == json!(true) && valid_keyword(k) {
                    Ok(k.to_ascii_lowercase())
                } else {
                    Err(SetError::invalid_properties(
                        &["keywords"],
                        format!("bad keyword {k:?}"),
                    ))
                }
            })
            .collect(),
        Some(_) => Err(SetError::invalid_properties(
            &["keywords"],
            "must be an object",
        )),
    }
}

fn flags_for(keywords: &BTreeSet<String>) -> BTreeSet<String> {
    keywords.iter().map(|k| keyword_to_flag(k)).collect()
}

/// Appends `data` to every mailbox; on failure the copies already stored are removed.
fn append_all(
    call: &Call<'_>,
    mailboxes: &BTreeMap<String, String>,
    data: &Arc<Vec<u8>>,
    flags: &BTreeSet<String>,
    received_at: i64,
) -> Result<(), SetError> {
    let mut done: Vec<(&str, u32)> = Vec::new();
    for name in mailboxes.values() {
        // Every mailbox shares the one copy of the bytes.
        match call.store().append_shared(
            call.user(),
            name,
            data.clone(),
            flags.clone(),
            Some(received_at),
        ) {
            Ok(uid) => done.push((name, uid)),
            Err(e) => {
                for (n, uid) in done {
                    if let Err(e) = call.store().expunge(call.user(), n, &[uid]) {
                        tracing::error!(mailbox = n, uid, error = %e, "rollback of JMAP append failed");
                    }
                }
                return Err(store_error(e));
            }
        }
    }
    Ok(())
}

/// Stores a new email; the `created` object.
fn store_new(
    call: &mut Call<'_>,
    creation_id: &str,
    data: Vec<u8>,
    mailboxes: &BTreeMap<String, String>,
    keywords: &BTreeSet<String>,
    received_at: i64,
) -> Result<Value, SetError> {
    let data = Arc::new(data);
    append_all(call, mailboxes, &data, &flags_for(keywords), received_at)?;
    let meta = MessageMeta::parse(data, received_at);
    call.created_ids
        .insert(creation_id.to_string(), meta.email_id.clone());
    Ok(json!({
        "id": meta.email_id,
        "blobId": meta.blob_id,
        "threadId": meta.thread_id,
        "size": meta.size,
    }))
}

fn create_one(
    call: &mut Call<'_>,
    snap: &Snapshot,
    creation_id: &str,
    obj: &Value,
) -> Result<Value, SetError> {
    let Some(obj) = obj.as_object() else {
        return Err(SetError::invalid_properties(&[], "not an object"));
    };
    let mailboxes = mailboxes_of(call, snap, obj.get("mailboxIds"), "mailboxIds")?;
    let keywords = keywords_of(obj.get("keywords"))?;
    let received_at = match obj.get("receivedAt") {
        None | Some(Value::Null) => now_unix(),
        Some(v) => v
            .as_str()
            .and_then(parse_date)
            .ok_or_else(|| SetError::invalid_properties(&["receivedAt"], "must be a UTCDate"))?,
    };
    let account = call.account_id().to_string();
    let lookup = |id: &str| blob::resolve(call.ctx, &account, snap, id);
    let data = build_message(obj, &call.ctx.hostname, now_unix(), &lookup)?;
    if data.len() > call.ctx.limits.max_size_upload {
        return Err(SetError::new("tooLarge", "message exceeds the size limit"));
    }
    store_new(call, creation_id, data, &mailboxes, &keywords, received_at)
}

/// The keyword and mailbox sets an update patch asks for.
fn apply_patch(
    call: &Call<'_>,
    snap: &Snapshot,
    email: &EmailView,
    patch: &Map<String, Value>,
) -> Result<(BTreeSet<String>, BTreeMap<String, String>), SetError> {
    let mut keywords = email.keywords.clone();
    let mut mailboxes: BTreeMap<String, String> = email
        .copies
        .iter()
        .map(|c| (c.mailbox_id.clone(), c.mailbox.clone()))
        .collect();
    let mut whole_keywords = false;
    let mut whole_mailboxes = false;
    for (path, value) in patch {
        let unescape = |s: &str| s.replace("~1", "/").replace("~0", "~");
        if path == "keywords" {
            keywords = keywords_of(Some(value))?;
            whole_keywords = true;
        } else if path == "mailboxIds" {
            mailboxes = mailboxes_of(call, snap, Some(value), "mailboxIds")?;
            whole_mailboxes = true;
        } else if let Some(kw) = path.strip_prefix("keywords/") {
            let kw = unescape(kw);
            if whole_keywords || !valid_keyword(&kw) {
                return Err(SetError::new("invalidPatch", format!("bad patch {path:?}")));
            }
            match value {
                Value::Bool(true) => {
                    keywords.insert(kw.to_ascii_lowercase());
                }
                Value::Null | Value::Bool(false) => {
                    keywords.remove(&kw.to_ascii_lowercase());
                }
                _ => {
                    return Err(SetError::invalid_properties(
                        &["keywords"],
                        "must be true or null",
                    ));
                }
            }
        } else if let Some(id) = path.strip_prefix("mailboxIds/") {
            if whole_mailboxes {
                return Err(SetError::new("invalidPatch", format!("bad patch {path:?}")));
            }
            let id = unescape(id);
            let id = call.resolve_id(&id).unwrap_or(id);
            match value {
                Value::Bool(true) => {
                    let m = snap.mailbox(&id).ok_or_else(|| {
                        SetError::invalid_properties(&["mailboxIds"], format!("no mailbox {id:?}"))
                    })?;
                    mailboxes.insert(id, m.name.clone());
                }
                Value::Null | Value::Bool(false) => {
                    mailboxes.remove(&id);
                }
                _ => {
                    return Err(SetError::invalid_properties(
                        &["mailboxIds"],
                        "must be true or null",
                    ));
                }
            }
        } else {
            let prop = path.split('/').next().unwrap_or(path);
            return Err(SetError::invalid_properties(
                &[prop],
                format!("{prop:?} cannot be changed"),
            ));
        }
    }
    if mailboxes.is_empty() {
        return Err(SetError::invalid_properties(
            &["mailboxIds"],
            "an email needs a mailbox",
        ));
    }
    Ok((keywords, mailboxes))
}

/// Applies keywords to every copy and moves copies between mailboxes.
fn update_one(call: &Call<'_>, snap: &Snapshot, id: &str, patch: &Value) -> Result<(), SetError> {
    let email = snap.emails.get(id).ok_or_else(SetError::not_found)?;
    let patch = patch
        .as_object()
        .ok_or_else(|| SetError::new("invalidPatch", "patch must be an object"))?;
    let (keywords, mailboxes) = apply_patch(call, snap, email, patch)?;
    let store = call.store();
    let user = call.user();
    let wanted = flags_for(&keywords);
    // Flags JMAP cannot see (\Deleted) stay on each copy.
    let flags_of = |old: &BTreeSet<String>| -> BTreeSet<String> {
        old.iter()
            .filter(|f| flag_to_keyword(f).is_none())
            .cloned()
            .chain(wanted.iter().cloned())
            .collect()
    };
    let kept: BTreeSet<&str> = email
        .copies
        .iter()
        .map(|c| c.mailbox_id.as_str())
        .filter(|m| mailboxes.contains_key(*m))
        .collect();
    let added: BTreeMap<String, String> = mailboxes
        .iter()
        .filter(|(m, _)| !email.copies.iter().any(|c| c.mailbox_id == **m))
        .map(|(m, n)| (m.clone(), n.clone()))
        .collect();
    if !added.is_empty() {
        append_all(
            call,
            &added,
            &email.meta.data,
            &wanted,
            email.meta.received_at,
        )?;
    }
    for c in &email.copies {
        let result = if kept.contains(c.mailbox_id.as_str()) {
            let flags = flags_of(&c.flags);
            if flags == c.flags {
                Ok(())
            } else {
                store.set_flags(user, &c.mailbox, c.uid, flags)
            }
        } else {
            store.expunge(user, &c.mailbox, &[c.uid]).map(|_| ())
        };
        result.map_err(store_error)?;
    }
    Ok(())
}

fn destroy_one(call: &Call<'_>, snap: &Snapshot, id: &str) -> Result<(), SetError> {
    let email = snap.emails.get(id).ok_or_else(SetError::not_found)?;
    for c in &email.copies {
        call.store()
            .expunge(call.user(), &c.mailbox, &[c.uid])
            .map_err(store_error)?;
    }
    Ok(())
}

pub fn set(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: SetArgs = parse_args(args)?;
    let (snap, states) = call.refresh();
    let old_state = call.state(states.email);
    check_set(
        call,
        &args.account_id,
        args.count(),
        args.if_in_state.as_deref(),
        &old_state,
    )?;
    let mut res = SetResponse::new();
    for (cid, obj) in args.create.unwrap_or_default() {
        match create_one(call, &snap, &cid, &obj) {
            Ok(created) => {
                res.created.insert(cid, created);
            }
            Err(e) => {
                tracing::debug!(user = %call.user(), creation_id = %cid, error = e.kind, "Email/set create refused");
                res.not_created.insert(cid, e.to_json());
            }
        }
    }
    // Updates and destroys see the emails created above.
    let (snap, _) = call.refresh();
    for (id, patch) in args.update.unwrap_or_default() {
        let id = call.resolve_id(&id).unwrap_or(id);
        match update_one(call, &snap, &id, &patch) {
            Ok(()) => {
                res.updated.insert(id, Value::Null);
            }
            Err(e) => {
                res.not_updated.insert(id, e.to_json());
            }
        }
    }
    let (snap, _) = call.refresh();
    for id in args.destroy.unwrap_or_default() {
        let id = call.resolve_id(&id).unwrap_or(id);
        match destroy_one(call, &snap, &id) {
            Ok(()) => res.destroyed.push(id),
            Err(e) => {
                res.not_destroyed.insert(id, e.to_json());
            }
        }
    }
    let (_, states) = call.refresh();
    Ok(res.into_json(call.account_id(), old_state, call.state(states.email)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportArgs {
    account_id: String,
    #[serde(default)]
    if_in_state: Option<String>,
    emails: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportEmail {
    blob_id: String,
    mailbox_ids: Value,
    #[serde(default)]
    keywords: Option<Value>,
    #[serde(default)]
    received_at: Option<String>,
}

fn import_one(
    call: &mut Call<'_>,
    snap: &Snapshot,
    creation_id: &str,
    value: Value,
) -> Result<Value, SetError> {
    let e: ImportEmail = serde_json::from_value(value)
        .map_err(|e| SetError::invalid_properties(&[], e.to_string()))?;
    let mailboxes = mailboxes_of(call, snap, Some(&e.mailbox_ids), "mailboxIds")?;
    let keywords = keywords_of(e.keywords.as_ref())?;
    let received_at = match e.received_at.as_deref() {
        None => now_unix(),
        Some(s) => parse_date(s)
            .ok_or_else(|| SetError::invalid_properties(&["receivedAt"], "must be a UTCDate"))?,
    };
    let (data, _) =
        blob::resolve(call.ctx, call.account_id(), snap, &e.blob_id).ok_or_else(|| {
            SetError::new("blobNotFound", "no such blob").with("notFound", json!([e.blob_id]))
        })?;
    if crate::jmap::view::parse_message(&data).is_none() {
        return Err(SetError::new("invalidEmail", "the blob is not an email"));
    }
    store_new(
        call,
        creation_id,
        data.to_vec(),
        &mailboxes,
        &keywords,
        received_at,
    )
}

pub fn import(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: ImportArgs = parse_args(args)?;
    let (snap, states) = call.refresh();
    let old_state = call.state(states.email);
    check_set(
        call,
        &args.account_id,
        args.emails.len(),
        args.if_in_state.as_deref(),
        &old_state,
    )?;
    let mut created = Map::new();
    let mut not_created = Map::new();
    for (cid, value) in args.emails {
        match import_one(call, &snap, &cid, value) {
            Ok(v) => {
                created.insert(cid, v);
            }
            Err(e) => {
                not_created.insert(cid, e.to_json());
            }
        }
    }
    let (_, states) = call.refresh();
    let opt = |m: Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    Ok(json!({
        "accountId": call.account_id(),
        "oldState": old_state,
        "newState": call.state(states.email),
        "created": opt(created),
        "notCreated": opt(not_created),
    }))
}
