//! Email/get (RFC 8621 §4.2).

use std::collections::BTreeSet;

use mail_parser::{DateTime, Message, MessagePartId, PartType};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::body::{self, BODY_PROPERTIES, DEFAULT_BODY_PROPERTIES, HeaderProperty};
use crate::jmap::error::MethodError;
use crate::jmap::methods::{Call, get_ids, get_response, parse_args};
use crate::jmap::view::{EmailView, parse_message};

/// Properties that need no parsing.
const META: [&str; 7] = [
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
];

const PARSED: [&str; 19] = [
    "headers",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyStructure",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

const DEFAULT: [&str; 24] = [
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

/// Longest preview, in characters (RFC 8621: at most 256).
const PREVIEW_LEN: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EmailGetArgs {
    account_id: String,
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    properties: Option<Vec<String>>,
    #[serde(default)]
    body_properties: Option<Vec<String>>,
    #[serde(default)]
    fetch_text_body_values: bool,
    #[serde(default, rename = "fetchHTMLBodyValues")]
    fetch_html_body_values: bool,
    #[serde(default)]
    fetch_all_body_values: bool,
    #[serde(default)]
    max_body_value_bytes: u64,
}

/// What the client wants rendered.
struct Render {
    props: Vec<String>,
    body_props: Vec<String>,
    fetch_text: bool,
    fetch_html: bool,
    fetch_all: bool,
    max_value: usize,
}

pub fn get(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: EmailGetArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    let mut props = match args.properties {
        None => DEFAULT.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            for p in &list {
                let known = META.contains(&p.as_str())
                    || PARSED.contains(&p.as_str())
                    || HeaderProperty::parse(p).is_some();
                if !known {
                    return Err(MethodError::invalid_arguments(format!(
                        "unknown property {p:?}"
                    )));
                }
            }
            list
        }
    };
    if !props.iter().any(|p| p == "id") {
        props.insert(0, "id".into());
    }
    let body_props = match args.body_properties {
        None => DEFAULT_BODY_PROPERTIES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(list) => {
            if let Some(bad) = list.iter().find(|p| {
                !BODY_PROPERTIES.contains(&p.as_str()) && HeaderProperty::parse(p).is_none()
            }) {
                return Err(MethodError::invalid_arguments(format!(
                    "unknown body property {bad:?}"
                )));
            }
            list
        }
    };
    let render = Render {
        props,
        body_props,
        fetch_text: args.fetch_text_body_values,
        fetch_html: args.fetch_html_body_values,
        fetch_all: args.fetch_all_body_values,
        max_value: usize::try_from(args.max_body_value_bytes).unwrap_or(usize::MAX),
    };
    let (snap, states) = call.refresh();
    let ids = get_ids(call, args.ids, || snap.emails.keys().cloned().collect())?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        match snap.emails.get(&id) {
            Some(e) => list.push(render_email(e, &render)),
            None => not_found.push(id),
        }
    }
    Ok(get_response(
        call.account_id(),
        call.state(states.email),
        list,
        not_found,
    ))
}

/// RFC 3339 UTC date of a Unix time.
pub fn utc_date(unix: i64) -> String {
    DateTime::from_timestamp(unix).to_rfc3339()
}

fn render_email(e: &EmailView, r: &Render) -> Value {
    let needs_parse = r.props.iter().any(|p| !META.contains(&p.as_str()));
    let parsed = if needs_parse {
        parse_message(e.meta.data.as_slice())
    } else {
        None
    };
    let mut out = Map::new();
    for p in &r.props {
        let v = match p.as_str() {
            "id" => json!(e.id()),
            "blobId" => json!(e.meta.blob_id),
            "threadId" => json!(e.meta.thread_id),
            "mailboxIds" => Value::Object(
                e.mailbox_ids()
                    .into_iter()
                    .map(|m| (m.to_string(), json!(true)))
                    .collect(),
            ),
            "keywords" => Value::Object(
                e.keywords
                    .iter()
                    .map(|k| (k.clone(), json!(true)))
                    .collect(),
            ),
            "size" => json!(e.meta.size),
            "receivedAt" => json!(utc_date(e.meta.received_at)),
            other => match &parsed {
                Some(msg) => parsed_property(msg, e, other, r),
                None => unparsed_default(other),
            },
        };
        out.insert(p.clone(), v);
    }
    Value::Object(out)
}

/// A message mail-parser could not read at all: empty values, never an error.
fn unparsed_default(prop: &str) -> Value {
    match prop {
        "hasAttachment" => json!(false),
        "preview" => json!(""),
        "headers" | "textBody" | "htmlBody" | "attachments" => json!([]),
        "bodyValues" => json!({}),
        _ => Value::Null,
    }
}

fn parsed_property(msg: &Message<'_>, e: &EmailView, prop: &str, r: &Render) -> Value {
    let id = e.id();
    let parts = |list: &[MessagePartId]| -> Value {
        Value::Array(
            list.iter()
                .map(|i| body::part_json(msg, id, *i, &leaf_props(&r.body_props)))
                .collect(),
        )
    };
    match prop {
        "headers" => body::top_headers(msg),
        "messageId" => msg
            .header("Message-ID")
            .map_or(Value::Null, body::message_ids),
        "inReplyTo" => body::message_ids(msg.in_reply_to()),
        "references" => body::message_ids(msg.references()),
        "sender" => body::opt_addresses(msg.sender()),
        "from" => body::opt_addresses(msg.from()),
        "to" => body::opt_addresses(msg.to()),
        "cc" => body::opt_addresses(msg.cc()),
        "bcc" => body::opt_addresses(msg.bcc()),
        "replyTo" => body::opt_addresses(msg.reply_to()),
        "subject" => json!(msg.subject()),
        "sentAt" => msg
            .date()
            .filter(|d| d.is_valid())
            .map_or(Value::Null, |d| json!(d.to_rfc3339())),
        "hasAttachment" => json!(e.meta.has_attachment),
        "preview" => json!(
            msg.body_preview(PREVIEW_LEN)
                .map(|p| p.trim().to_string())
                .unwrap_or_default()
        ),
        "bodyStructure" => body::part_json(msg, id, 0, &r.body_props),
        "textBody" => parts(&msg.text_body),
        "htmlBody" => parts(&msg.html_body),
        "attachments" => parts(&msg.attachments),
        "bodyValues" => body_values(msg, r),
        other => match HeaderProperty::parse(other) {
            Some(h) => body::header_property(msg, &h),
            None => Value::Null,
        },
    }
}

/// textBody/htmlBody/attachments never carry subParts.
fn leaf_props(props: &[String]) -> Vec<String> {
    props.iter().filter(|p| *p != "subParts").cloned().collect()
}

fn body_values(msg: &Message<'_>, r: &Render) -> Value {
    let mut wanted = BTreeSet::new();
    if r.fetch_text || r.fetch_all {
        wanted.extend(msg.text_body.iter().copied());
    }
    if r.fetch_html || r.fetch_all {
        wanted.extend(msg.html_body.iter().copied());
    }
    if r.fetch_all {
        wanted.extend(
            msg.parts
                .iter()
                .enumerate()
                .filter(|(_, p)| matches!(p.body, PartType::Text(_) | PartType::Html(_)))
                .filter_map(|(i, _)| u32::try_from(i).ok()),
        );
    }
    let mut out = Map::new();
    for i in wanted {
        if let Some(part) = msg.parts.get(i as usize)
            && let Some(v) = body::body_value(part, r.max_value)
        {
            out.insert(i.to_string(), v);
        }
    }
    Value::Object(out)
}
