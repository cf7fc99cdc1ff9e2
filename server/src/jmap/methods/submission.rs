//! EmailSubmission/get, /changes, /query, /set (RFC 8621 §7). Sending goes through
//! [`crate::smtp::delivery::deliver`], the path SMTP submission uses: same checks (envelope
//! sender = the user, recipients known to the directory, at most 100), same trace headers.
//! Bcc is stripped from the delivered copy. Records live in memory; undo is not supported
//! (`maxDelayedSend` 0: everything is `final` at once).

use std::collections::{BTreeSet, VecDeque};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::email::set as email_set;
use super::email::utc_date;
use super::{Call, ChangesArgs, Comparator, Filter, GetArgs, Paging, SetResponse};
use super::{get_ids, get_response, page, parse_args, project, select_properties};
use crate::auth::directory::DirectoryError;
use crate::jmap::error::{MethodError, SetError};
use crate::jmap::ids;
use crate::jmap::view::{EmailView, parse_message};
use crate::smtp::command::ReversePath;
use crate::smtp::delivery::{self, DeliveryError, Envelope, Trace};
use crate::smtp::session::MAX_RECIPIENTS;
use crate::store::StoreError;
use crate::time::now_unix;

/// Records kept per user.
const KEEP: usize = 1000;

const PROPERTIES: [&str; 10] = [
    "id",
    "identityId",
    "emailId",
    "threadId",
    "envelope",
    "sendAt",
    "undoStatus",
    "deliveryStatus",
    "dsnBlobIds",
    "mdnBlobIds",
];

/// The user's submissions, newest last.
#[derive(Debug, Default)]
pub struct Submissions {
    next: u64,
    list: VecDeque<Map<String, Value>>,
}

impl Submissions {
    fn find(&self, id: &str) -> Option<&Map<String, Value>> {
        self.list.iter().find(|s| s["id"] == json!(id))
    }
}

fn lock<'a>(call: &'a Call<'_>) -> std::sync::MutexGuard<'a, Submissions> {
    call.tracker
        .submissions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn state(call: &Call<'_>) -> String {
    call.state(call.tracker.states().submission)
}

pub fn get(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: GetArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    let props = select_properties(args.properties, &PROPERTIES, &PROPERTIES)?;
    let all: Vec<String> = lock(call)
        .list
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    let ids = get_ids(call, args.ids, || all)?;
    let subs = lock(call);
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        match subs.find(&id) {
            Some(s) => list.push(project(s.clone(), &props)),
            None => not_found.push(id),
        }
    }
    drop(subs);
    Ok(get_response(
        call.account_id(),
        state(call),
        list,
        not_found,
    ))
}

/// Only "no change" is answerable: submissions are not in the change log.
pub fn changes(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: ChangesArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    let now = state(call);
    if args.since_state != now {
        return Err(MethodError::cannot_calculate_changes());
    }
    Ok(json!({
        "accountId": call.account_id(), "oldState": now, "newState": now,
        "hasMoreChanges": false, "created": [], "updated": [], "destroyed": [],
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QueryArgs {
    account_id: String,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    sort: Option<Vec<Comparator>>,
    #[serde(default)]
    position: i64,
    #[serde(default)]
    anchor: Option<String>,
    #[serde(default)]
    anchor_offset: i64,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    calculate_total: bool,
}

type Cond = Vec<(String, Value)>;

fn parse_cond(m: &Map<String, Value>) -> Result<Cond, MethodError> {
    for k in m.keys() {
        if !matches!(
            k.as_str(),
            "identityIds" | "emailIds" | "threadIds" | "undoStatus" | "before" | "after"
        ) {
            return Err(MethodError::unsupported_filter(format!(
                "unknown EmailSubmission filter {k:?}"
            )));
        }
    }
    Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn cond_matches(s: &Map<String, Value>, cond: &Cond) -> bool {
    cond.iter().all(|(k, v)| {
        let field = |name: &str| s.get(name).cloned().unwrap_or(Value::Null);
        match k.as_str() {
            "identityIds" => v
                .as_array()
                .is_some_and(|l| l.contains(&field("identityId"))),
            "emailIds" => v.as_array().is_some_and(|l| l.contains(&field("emailId"))),
            "threadIds" => v.as_array().is_some_and(|l| l.contains(&field("threadId"))),
            "undoStatus" => *v == field("undoStatus"),
            // RFC 3339 UTC strings of one format compare like the dates they encode.
            "before" => field("sendAt").as_str() < v.as_str(),
            "after" => field("sendAt").as_str() >= v.as_str(),
            _ => false,
        }
    })
}

pub fn query(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: QueryArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    let filter = args
        .filter
        .as_ref()
        .map(|f| Filter::parse(f, &parse_cond, call.filter_caps()))
        .transpose()?;
    let sort = args.sort.unwrap_or_default();
    for c in &sort {
        if !matches!(c.property.as_str(), "emailId" | "threadId" | "sentAt") {
            return Err(MethodError::unsupported_sort(format!(
                "cannot sort submissions by {:?}",
                c.property
            )));
        }
    }
    let mut list: Vec<Map<String, Value>> = lock(call)
        .list
        .iter()
        .filter(|s| {
            filter
                .as_ref()
                .is_none_or(|f| f.matches(&|c| cond_matches(s, c)))
        })
        .cloned()
        .collect();
    list.sort_by(|a, b| {
        for c in &sort {
            let key = if c.property == "sentAt" {
                "sendAt"
            } else {
                c.property.as_str()
            };
            let ord = a[key].as_str().cmp(&b[key].as_str());
            let ord = if c.is_ascending { ord } else { ord.reverse() };
            if ord.is_ne() {
                return ord;
            }
        }
        std::cmp::Ordering::Equal
    });
    let ids = list
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    let paging = Paging {
        position: args.position,
        anchor: args.anchor,
        anchor_offset: args.anchor_offset,
        limit: args.limit,
        calculate_total: args.calculate_total,
    };
    page(call, ids, &paging, state(call))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubmissionSetArgs {
    account_id: String,
    #[serde(default)]
    if_in_state: Option<String>,
    #[serde(default)]
    create: Option<Map<String, Value>>,
    #[serde(default)]
    update: Option<Map<String, Value>>,
    #[serde(default)]
    destroy: Option<Vec<String>>,
    #[serde(default)]
    on_success_update_email: Option<Map<String, Value>>,
    #[serde(default)]
    on_success_destroy_email: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateObject {
    identity_id: String,
    email_id: String,
    #[serde(default)]
    envelope: Option<EnvelopeJson>,
    #[serde(default)]
    #[allow(dead_code)]
    send_at: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    undo_status: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeJson {
    mail_from: AddressJson,
    rcpt_to: Vec<AddressJson>,
}

#[derive(Debug, Clone, Deserialize)]
struct AddressJson {
    email: String,
    #[serde(default)]
    #[allow(dead_code)]
    parameters: Option<Value>,
}

/// A create that passed the local checks, waiting for recipient lookups.
struct Pending {
    creation_id: String,
    email_id: String,
    thread_id: String,
    mail_from: String,
    rcpt_to: Vec<String>,
    message: Vec<u8>,
}

/// Removes every `Bcc:` field (with its continuation lines) from the header section.
pub fn strip_bcc(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        if line == b"\r\n" || line == b"\n" {
            // End of the header section: the body goes through untouched.
            out.extend_from_slice(rest);
            return out;
        }
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    out
}

/// Envelope from the message headers: Sender (else From) and every To/Cc/Bcc address.
fn derived_envelope(email: &EmailView) -> Result<(String, Vec<String>), SetError> {
    let msg = parse_message(email.meta.data.as_slice())
        .ok_or_else(|| SetError::new("invalidEmail", "the email cannot be parsed"))?;
    let from = msg
        .sender()
        .or(msg.from())
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_string)
        .ok_or_else(|| SetError::new("invalidEmail", "the email has no From address"))?;
    let mut seen = BTreeSet::new();
    let mut rcpt = Vec::new();
    for list in [msg.to(), msg.cc(), msg.bcc()].into_iter().flatten() {
        for a in list.iter() {
            if let Some(addr) = a.address()
                && seen.insert(addr.to_ascii_lowercase())
            {
                rcpt.push(addr.to_string());
            }
        }
    }
    Ok((from, rcpt))
}

fn prepare(
    call: &Call<'_>,
    snap: &crate::jmap::view::Snapshot,
    creation_id: &str,
    obj: Value,
) -> Result<Pending, SetError> {
    let obj: CreateObject = serde_json::from_value(obj)
        .map_err(|e| SetError::invalid_properties(&[], e.to_string()))?;
    if obj.identity_id != ids::identity_id(call.user()) {
        return Err(SetError::invalid_properties(
            &["identityId"],
            "no such identity",
        ));
    }
    let email_id = call.resolve_id(&obj.email_id).unwrap_or(obj.email_id);
    let email = snap
        .emails
        .get(&email_id)
        .ok_or_else(|| SetError::invalid_properties(&["emailId"], "no such email"))?;
    let (mail_from, rcpt_to) = match obj.envelope {
        Some(env) => (
            env.mail_from.email,
            env.rcpt_to.into_iter().map(|a| a.email).collect(),
        ),
        None => derived_envelope(email)?,
    };
    if !mail_from.is_empty() && !mail_from.eq_ignore_ascii_case(call.user()) {
        tracing::info!(user = %call.user(), sender = %mail_from, "EmailSubmission refused: sender not owned");
        return Err(SetError::new(
            "forbiddenFrom",
            "the envelope sender must be your own address",
        ));
    }
    let foreign: Vec<String> = crate::sieve::header_addresses(email.meta.data.as_slice(), "From")
        .into_iter()
        .filter(|a| !a.eq_ignore_ascii_case(call.user()))
        .collect();
    if !foreign.is_empty() {
        tracing::info!(user = %call.user(), from = ?foreign, "EmailSubmission refused: From header not owned");
        return Err(SetError::new(
            "forbiddenFrom",
            "the From header must name only your own address",
        ));
    }
    if rcpt_to.is_empty() {
        return Err(SetError::new(
            "noRecipients",
            "the envelope has no recipients",
        ));
    }
    if rcpt_to.len() > MAX_RECIPIENTS {
        return Err(SetError::new("tooManyRecipients", "too many recipients")
            .with("maxRecipients", json!(MAX_RECIPIENTS)));
    }
    Ok(Pending {
        creation_id: creation_id.to_string(),
        email_id: email.id().to_string(),
        thread_id: email.meta.thread_id.clone(),
        mail_from,
        rcpt_to,
        message: strip_bcc(&email.meta.data),
    })
}

/// Canonical recipients, or the addresses the directory does not know.
async fn lookup_all(
    call: &Call<'_>,
    rcpt: &[String],
) -> Result<Result<Vec<String>, Vec<String>>, DirectoryError> {
    let mut canonical = Vec::new();
    let mut unknown = Vec::new();
    for r in rcpt {
        match call.ctx.directory.lookup(r).await? {
            Some(c) => {
                if !canonical
                    .iter()
                    .any(|x: &String| x.eq_ignore_ascii_case(&c))
                {
                    canonical.push(c);
                }
            }
            None => unknown.push(r.clone()),
        }
    }
    Ok(if unknown.is_empty() {
        Ok(canonical)
    } else {
        Err(unknown)
    })
}

fn delivery_error(e: DeliveryError) -> SetError {
    match e {
        DeliveryError::Store {
            source: StoreError::TooLarge(n),
            ..
        } => SetError::new("tooLarge", format!("message of {n} bytes is too large")),
        other => {
            tracing::error!(error = %other, "JMAP submission delivery failed");
            SetError::new("serverFail", "delivery failed")
        }
    }
}

pub async fn set(call: &mut Call<'_>, args: Map<String, Value>) -> Vec<(String, Value)> {
    match set_inner(call, args).await {
        Ok(out) => out,
        Err(e) => vec![("error".to_string(), e.to_json())],
    }
}

async fn set_inner(
    call: &mut Call<'_>,
    args: Map<String, Value>,
) -> Result<Vec<(String, Value)>, MethodError> {
    let args: SubmissionSetArgs = parse_args(args)?;
    let old_state = state(call);
    let count = args.create.as_ref().map_or(0, Map::len)
        + args.update.as_ref().map_or(0, Map::len)
        + args.destroy.as_ref().map_or(0, Vec::len);
    super::check_set(
        call,
        &args.account_id,
        count,
        args.if_in_state.as_deref(),
        &old_state,
    )?;
    let (snap, _) = call.refresh();
    let mut res = SetResponse::new();

    let mut pending = Vec::new();
    for (cid, obj) in args.create.unwrap_or_default() {
        match prepare(call, &snap, &cid, obj) {
            Ok(p) => pending.push(p),
            Err(e) => {
                res.not_created.insert(cid, e.to_json());
            }
        }
    }
    // Every lookup before any delivery: a directory outage fails the call with nothing sent.
    let mut resolved = Vec::new();
    for p in pending {
        match lookup_all(call, &p.rcpt_to).await {
            Err(e) => {
                tracing::warn!(user = %call.user(), error = %e, "EmailSubmission: directory unavailable");
                return Err(MethodError::server_unavailable(
                    "directory unavailable, try again later",
                ));
            }
            Ok(Err(unknown)) => {
                tracing::info!(user = %call.user(), ?unknown, "EmailSubmission refused: unknown recipients");
                res.not_created.insert(
                    p.creation_id.clone(),
                    SetError::new("invalidRecipients", "recipients not found")
                        .with("invalidRecipients", json!(unknown))
                        .to_json(),
                );
            }
            Ok(Ok(canonical)) => resolved.push((p, canonical)),
        }
    }

    let mut succeeded: Vec<(String, String)> = Vec::new(); // (submission id, email id)
    let mut created_refs: Vec<(String, String)> = Vec::new(); // (creation id, submission id)
    for (p, recipients) in resolved {
        let envelope = Envelope {
            from: if p.mail_from.is_empty() {
                ReversePath::Null
            } else {
                ReversePath::Mailbox(p.mail_from.clone())
            },
            recipients: recipients.clone(),
            message: p.message,
            trace: Trace {
                helo: "jmap".into(),
                peer: call.caller.peer,
                protocol: if call.caller.secure { "HTTPS" } else { "HTTP" },
            },
        };
        match delivery::deliver(
            call.ctx.store.clone(),
            call.ctx.filter().clone(),
            &call.ctx.hostname,
            envelope,
        )
        .await
        {
            Ok(queue_id) => {
                let id = {
                    let mut subs = lock(call);
                    subs.next += 1;
                    format!("s{}", subs.next)
                };
                tracing::info!(user = %call.user(), %queue_id, recipients = recipients.len(), "JMAP submission delivered");
                let send_at = utc_date(now_unix());
                let status: Map<String, Value> = p
                    .rcpt_to
                    .iter()
                    .map(|r| {
                        (
                            r.clone(),
                            json!({"smtpReply": format!("250 2.0.0 Ok: queued as {queue_id}"),
                                   "delivered": "yes", "displayed": "unknown"}),
                        )
                    })
                    .collect();
                let record = json!({
                    "id": id,
                    "identityId": ids::identity_id(call.user()),
                    "emailId": p.email_id,
                    "threadId": p.thread_id,
                    "envelope": {
                        "mailFrom": {"email": p.mail_from, "parameters": null},
                        "rcptTo": p.rcpt_to.iter().map(|r| json!({"email": r, "parameters": null})).collect::<Vec<_>>(),
                    },
                    "sendAt": send_at,
                    "undoStatus": "final",
                    "deliveryStatus": status,
                    "dsnBlobIds": [],
                    "mdnBlobIds": [],
                });
                if let Value::Object(record) = record {
                    let mut subs = lock(call);
                    subs.list.push_back(record);
                    while subs.list.len() > KEEP {
                        subs.list.pop_front();
                    }
                }
                call.created_ids.insert(p.creation_id.clone(), id.clone());
                res.created.insert(
                    p.creation_id.clone(),
                    json!({"id": id, "sendAt": send_at, "undoStatus": "final"}),
                );
                created_refs.push((p.creation_id, id.clone()));
                succeeded.push((id, p.email_id));
            }
            Err(e) => {
                res.not_created
                    .insert(p.creation_id, delivery_error(e).to_json());
            }
        }
    }

    for (id, _) in args.update.unwrap_or_default() {
        let id = call.resolve_id(&id).unwrap_or(id);
        let err = if lock(call).find(&id).is_some() {
            SetError::new("cannotUnsend", "submissions are final once accepted")
        } else {
            SetError::not_found()
        };
        res.not_updated.insert(id, err.to_json());
    }
    let mut changed = !res.created.is_empty();
    for id in args.destroy.unwrap_or_default() {
        let id = call.resolve_id(&id).unwrap_or(id);
        let mut subs = lock(call);
        match subs.list.iter().position(|s| s["id"] == json!(id)) {
            Some(i) => {
                subs.list.remove(i);
                res.destroyed.push(id);
                changed = true;
            }
            None => {
                res.not_destroyed
                    .insert(id, SetError::not_found().to_json());
            }
        }
    }
    if changed {
        call.tracker.bump_submission();
    }
    let mut out = vec![(
        "EmailSubmission/set".to_string(),
        res.into_json(call.account_id(), old_state, state(call)),
    )];

    // RFC 8621 §7.5: the implicit Email/set for successful submissions.
    let email_of = |key: &str| -> Option<String> {
        let sub_id = match key.strip_prefix('#') {
            Some(cid) => created_refs
                .iter()
                .find(|(c, _)| c == cid)
                .map(|(_, s)| s.clone())?,
            None => key.to_string(),
        };
        succeeded
            .iter()
            .find(|(s, _)| *s == sub_id)
            .map(|(_, e)| e.clone())
    };
    let mut update = Map::new();
    for (key, patch) in args.on_success_update_email.unwrap_or_default() {
        if let Some(email) = email_of(&key) {
            update.insert(email, patch);
        }
    }
    let destroy: Vec<String> = args
        .on_success_destroy_email
        .unwrap_or_default()
        .iter()
        .filter_map(|k| email_of(k))
        .collect();
    if !update.is_empty() || !destroy.is_empty() {
        let mut email_args = Map::new();
        email_args.insert("accountId".into(), json!(call.account_id()));
        if !update.is_empty() {
            email_args.insert("update".into(), Value::Object(update));
        }
        if !destroy.is_empty() {
            email_args.insert("destroy".into(), json!(destroy));
        }
        match email_set(call, email_args) {
            Ok(v) => out.push(("Email/set".into(), v)),
            Err(e) => out.push(("error".into(), e.to_json())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_is_stripped_from_headers_only() {
        let msg = b"From: a@x\r\nBcc: secret@x,\r\n  other@x\r\nTo: b@x\r\nBCC: more@x\r\n\r\nBcc: body stays\r\n";
        let out = String::from_utf8(strip_bcc(msg)).unwrap();
        assert_eq!(out, "From: a@x\r\nTo: b@x\r\n\r\nBcc: body stays\r\n");
        assert_eq!(strip_bcc(b"X: y\r\n"), b"X: y\r\n");
    }
}
