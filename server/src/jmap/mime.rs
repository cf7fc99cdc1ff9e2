//! Builds an RFC 5322/MIME message from Email/set create properties (RFC 8621 §4.6): headers
//! from the convenience properties and `header:` forms, text/html bodies from `bodyValues`,
//! attachments from blobs. Nothing a client sends can inject a header line.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::SetError;
use crate::smtp::delivery::rfc2822_date;

/// Resolves a blob id to its bytes and (if known) media type.
pub type BlobLookup<'a> = &'a dyn Fn(&str) -> Option<(Arc<Vec<u8>>, Option<String>)>;

/// Create properties handled by the caller, not the builder.
const CALLER_PROPERTIES: [&str; 3] = ["mailboxIds", "keywords", "receivedAt"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmailAddress {
    #[serde(default)]
    name: Option<String>,
    email: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BodyPart {
    #[serde(default)]
    part_id: Option<String>,
    #[serde(default)]
    blob_id: Option<String>,
    #[serde(default, rename = "type")]
    content_type: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disposition: Option<String>,
    #[serde(default)]
    cid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BodyValue {
    value: String,
}

fn invalid(prop: &str, why: impl Into<String>) -> SetError {
    SetError::invalid_properties(&[prop], why)
}

/// The message bytes for a create object.
pub fn build_message(
    obj: &Map<String, Value>,
    hostname: &str,
    now: i64,
    lookup: BlobLookup<'_>,
) -> Result<Vec<u8>, SetError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    // `again`: a further value of the same `header:...:all` property.
    let mut add = |name: &str, value: String, again: bool| -> Result<(), SetError> {
        if !names.insert(name.to_ascii_lowercase()) && !again {
            return Err(invalid(name, format!("header {name} given twice")));
        }
        headers.push((name.to_string(), value));
        Ok(())
    };

    for (key, value) in obj {
        let key = key.as_str();
        if CALLER_PROPERTIES.contains(&key)
            || matches!(key, "textBody" | "htmlBody" | "attachments" | "bodyValues")
            || value.is_null()
        {
            continue;
        }
        match key {
            "from" | "sender" | "to" | "cc" | "bcc" | "replyTo" => {
                let list: Vec<EmailAddress> = serde_json::from_value(value.clone())
                    .map_err(|e| invalid(key, e.to_string()))?;
                if list.is_empty() {
                    continue;
                }
                let header = match key {
                    "from" => "From",
                    "sender" => "Sender",
                    "to" => "To",
                    "cc" => "Cc",
                    "bcc" => "Bcc",
                    _ => "Reply-To",
                };
                add(
                    header,
                    format_addresses(&list).map_err(|e| invalid(key, e))?,
                    false,
                )?;
            }
            "subject" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| invalid(key, "must be a string"))?;
                add("Subject", encode_text(s), false)?;
            }
            "sentAt" => {
                let d = value
                    .as_str()
                    .and_then(mail_parser::DateTime::parse_rfc3339)
                    .filter(|d| d.is_valid())
                    .ok_or_else(|| invalid(key, "must be an RFC 3339 date"))?;
                add("Date", d.to_rfc822(), false)?;
            }
            "messageId" | "inReplyTo" | "references" => {
                let ids: Vec<String> = serde_json::from_value(value.clone())
                    .map_err(|e| invalid(key, e.to_string()))?;
                if ids.is_empty() || (key == "messageId" && ids.len() != 1) {
                    return Err(invalid(key, "wrong number of message ids"));
                }
                let header = match key {
                    "messageId" => "Message-ID",
                    "inReplyTo" => "In-Reply-To",
                    _ => "References",
                };
                add(
                    header,
                    format_ids(&ids).map_err(|e| invalid(key, e))?,
                    false,
                )?;
            }
            "headers" => {
                #[derive(Deserialize)]
                struct Field {
                    name: String,
                    value: String,
                }
                let list: Vec<Field> = serde_json::from_value(value.clone())
                    .map_err(|e| invalid(key, e.to_string()))?;
                for f in list {
                    if !valid_field_name(&f.name)
                        || has_line_break(&f.value)
                        || is_mime_header(&f.name)
                    {
                        return Err(invalid(key, format!("bad header field {:?}", f.name)));
                    }
                    add(&f.name, f.value.trim_start().to_string(), true)?;
                }
            }
            k if k.starts_with("header:") => {
                for (i, (name, v)) in header_form(k, value)?.into_iter().enumerate() {
                    if is_mime_header(&name) {
                        return Err(invalid(k, "MIME headers are set by the server"));
                    }
                    add(&name, v, i > 0)?;
                }
            }
            other => return Err(invalid(other, format!("{other:?} cannot be set on create"))),
        }
    }
    if !names.contains("date") {
        headers.push(("Date".into(), rfc2822_date(now)));
    }
    if !names.contains("message-id") {
        headers.push((
            "Message-ID".into(),
            format!(
                "<{:016x}{:08x}@{hostname}>",
                rand::random::<u64>(),
                rand::random::<u32>()
            ),
        ));
    }
    headers.push(("MIME-Version".into(), "1.0".into()));

    let body = build_body(obj, lookup)?;
    let mut out = String::new();
    for (name, value) in &headers {
        push_header(&mut out, name, value);
    }
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// RFC 5322 field name: printable ASCII except `:`.
pub fn valid_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

fn is_mime_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("content-") || n == "mime-version"
}

fn has_line_break(s: &str) -> bool {
    s.contains(['\r', '\n', '\0'])
}

/// `header:Name[:asForm][:all]` on create -> (name, value) lines.
fn header_form(key: &str, value: &Value) -> Result<Vec<(String, String)>, SetError> {
    let rest = key.strip_prefix("header:").unwrap_or_default();
    let mut parts = rest.split(':');
    let name = parts.next().unwrap_or_default().to_string();
    if !valid_field_name(&name) {
        return Err(invalid(key, "bad header name"));
    }
    let mut form = "asRaw";
    let mut all = false;
    for p in parts {
        match p {
            "all" => all = true,
            f if f.starts_with("as") && !all => form = f,
            _ => return Err(invalid(key, "bad header property")),
        }
    }
    let values: Vec<Value> = if all {
        match value {
            Value::Array(list) => list.clone(),
            _ => return Err(invalid(key, "`:all` needs an array")),
        }
    } else {
        vec![value.clone()]
    };
    let mut out = Vec::new();
    for v in values {
        let text = match form {
            "asRaw" => {
                let s = v.as_str().ok_or_else(|| invalid(key, "must be a string"))?;
                // Folded raw values are fine; anything else that breaks a line is not.
                let unfolded = s.replace("\r\n ", " ").replace("\r\n\t", " ");
                if has_line_break(&unfolded) {
                    return Err(invalid(key, "line break in header value"));
                }
                unfolded.trim_start().to_string()
            }
            "asText" => encode_text(v.as_str().ok_or_else(|| invalid(key, "must be a string"))?),
            "asAddresses" => {
                let list: Vec<EmailAddress> =
                    serde_json::from_value(v).map_err(|e| invalid(key, e.to_string()))?;
                format_addresses(&list).map_err(|e| invalid(key, e))?
            }
            "asMessageIds" => {
                let ids: Vec<String> =
                    serde_json::from_value(v).map_err(|e| invalid(key, e.to_string()))?;
                format_ids(&ids).map_err(|e| invalid(key, e))?
            }
            "asDate" => v
                .as_str()
                .and_then(mail_parser::DateTime::parse_rfc3339)
                .filter(|d| d.is_valid())
                .map(|d| d.to_rfc822())
                .ok_or_else(|| invalid(key, "must be an RFC 3339 date"))?,
            "asURLs" => {
                let urls: Vec<String> =
                    serde_json::from_value(v).map_err(|e| invalid(key, e.to_string()))?;
                if urls
                    .iter()
                    .any(|u| u.contains(['<', '>', ' ']) || has_line_break(u))
                {
                    return Err(invalid(key, "bad URL"));
                }
                urls.iter()
                    .map(|u| format!("<{u}>"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            _ => return Err(invalid(key, "unsupported header form")),
        };
        out.push((name.clone(), text));
    }
    Ok(out)
}

fn format_addresses(list: &[EmailAddress]) -> Result<String, String> {
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        let email = a.email.trim();
        let ok = !email.is_empty()
            && email.contains('@')
            && !email
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || "<>,;\"\\()[]".contains(c));
        if !ok {
            return Err(format!("bad email address {:?}", a.email));
        }
        match a.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) if has_line_break(name) => return Err("line break in name".into()),
            Some(name) => out.push(format!("{} <{email}>", encode_phrase(name))),
            None => out.push(email.to_string()),
        }
    }
    Ok(out.join(", "))
}

fn format_ids(ids: &[String]) -> Result<String, String> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.trim_matches(['<', '>']);
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| (33..=126).contains(&b) && b != b'<' && b != b'>')
        {
            return Err(format!("bad message id {id:?}"));
        }
        out.push(format!("<{id}>"));
    }
    Ok(out.join(" "))
}

/// RFC 2047 B-encoded words, each at most 75 chars, split on char boundaries.
fn encoded_words(s: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
    }
    words.join(" ")
}

/// Unstructured text (Subject): as is when plain ASCII, else encoded words.
fn encode_text(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let plain = s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) && !s.contains("=?");
    if plain { s } else { encoded_words(&s) }
}

/// A display name: atoms as is, quoted string when it has specials, encoded words if not ASCII.
fn encode_phrase(s: &str) -> String {
    if !s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) || s.contains("=?") {
        return encoded_words(s);
    }
    let atext =
        |c: char| c.is_ascii_alphanumeric() || c == ' ' || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if s.chars().all(atext) {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// `Name: value` folded at spaces so lines stay under 78 chars where possible.
fn push_header(out: &mut String, name: &str, value: &str) {
    let mut line_len = name.len() + 1;
    out.push_str(name);
    out.push(':');
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if line_len + 1 + word.len() > 78 && line_len > name.len() + 1 {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(word);
        line_len += 1 + word.len();
    }
    out.push_str("\r\n");
}

/// Quoted-printable (RFC 2045 §6.7), line ends normalised to CRLF.
pub fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let normalized = text.replace("\r\n", "\n");
    for (i, line) in normalized.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let bytes = line.as_bytes();
        let mut col = 0;
        for (j, &b) in bytes.iter().enumerate() {
            let last = j + 1 == bytes.len();
            let literal =
                (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece_len = if literal { 1 } else { 3 };
            if col + piece_len > 75 {
                out.push_str("=\r\n");
                col = 0;
            }
            if literal {
                out.push(b as char);
            } else {
                let _ = write!(out, "={b:02X}");
            }
            col += piece_len;
        }
    }
    out
}

fn base64_lines(data: &[u8]) -> String {
    let encoded = STANDARD.encode(data);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

fn boundary() -> String {
    format!(
        "=_{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// A MIME entity: its own headers (Content-*) and body, ready to embed.
struct Entity {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Entity {
    fn text(text: &str, subtype: &str) -> Self {
        Entity {
            headers: vec![
                (
                    "Content-Type".into(),
                    format!("text/{subtype}; charset=utf-8"),
                ),
                (
                    "Content-Transfer-Encoding".into(),
                    "quoted-printable".into(),
                ),
            ],
            body: quoted_printable(text).into_bytes(),
        }
    }

    fn multipart(subtype: &str, parts: Vec<Entity>) -> Self {
        let b = boundary();
        let mut body = Vec::new();
        for p in parts {
            body.extend_from_slice(format!("--{b}\r\n").as_bytes());
            body.extend_from_slice(&p.render());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        Entity {
            headers: vec![(
                "Content-Type".into(),
                format!("multipart/{subtype}; boundary=\"{b}\""),
            )],
            body,
        }
    }

    fn render(self) -> Vec<u8> {
        let mut head = String::new();
        for (n, v) in &self.headers {
            push_header(&mut head, n, v);
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// A MIME parameter value: quoted ASCII, or RFC 2231 `name*=utf-8''...` otherwise.
fn param(name: &str, value: &str) -> String {
    if value.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        format!(
            "{name}=\"{}\"",
            value.replace('\\', "\\\\").replace('"', "\\\"")
        )
    } else {
        let mut enc = String::new();
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                enc.push(b as char);
            } else {
                let _ = write!(enc, "%{b:02X}");
            }
        }
        format!("{name}*=utf-8''{enc}")
    }
}

fn valid_media_type(t: &str) -> bool {
    let mut it = t.splitn(2, '/');
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!((it.next(), it.next()), (Some(a), Some(b)) if token(a) && token(b))
}

fn build_body(obj: &Map<String, Value>, lookup: BlobLookup<'_>) -> Result<Vec<u8>, SetError> {
    let values: Map<String, Value> = match obj.get("bodyValues") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(invalid("bodyValues", "must be an object")),
    };
    let text_of = |key: &str, want: &str| -> Result<Option<String>, SetError> {
        let parts: Vec<BodyPart> = match obj.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| invalid(key, e.to_string()))?
            }
        };
        match parts.as_slice() {
            [] => Ok(None),
            [p] => {
                if p.content_type
                    .as_deref()
                    .is_some_and(|t| !t.eq_ignore_ascii_case(want))
                {
                    return Err(invalid(key, format!("type must be {want}")));
                }
                let id = p
                    .part_id
                    .as_deref()
                    .ok_or_else(|| invalid(key, "partId is required"))?;
                let v: BodyValue = values
                    .get(id)
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .ok_or_else(|| invalid("bodyValues", format!("no body value {id:?}")))?;
                Ok(Some(v.value))
            }
            _ => Err(invalid(key, "at most one part")),
        }
    };
    let text = text_of("textBody", "text/plain")?;
    let html = text_of("htmlBody", "text/html")?;
    let main = match (text, html) {
        (Some(t), Some(h)) => Entity::multipart(
            "alternative",
            vec![Entity::text(&t, "plain"), Entity::text(&h, "html")],
        ),
        (Some(t), None) => Entity::text(&t, "plain"),
        (None, Some(h)) => Entity::text(&h, "html"),
        (None, None) => Entity::text("", "plain"),
    };
    let attachments: Vec<BodyPart> = match obj.get("attachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| invalid("attachments", e.to_string()))?
        }
    };
    let entity = if attachments.is_empty() {
        main
    } else {
        let mut parts = vec![main];
        let mut missing = Vec::new();
        for a in attachments {
            let blob_id = a
                .blob_id
                .as_deref()
                .ok_or_else(|| invalid("attachments", "blobId is required"))?;
            let Some((data, blob_type)) = lookup(blob_id) else {
                missing.push(blob_id.to_string());
                continue;
            };
            let ty = a
                .content_type
                .or(blob_type)
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase();
            if !valid_media_type(&ty) {
                return Err(invalid("attachments", format!("bad type {ty:?}")));
            }
            let mut ct = ty;
            let mut cd = match a.disposition.as_deref() {
                Some("inline") => "inline".to_string(),
                _ => "attachment".to_string(),
            };
            if let Some(name) = a.name.as_deref().filter(|n| !n.is_empty()) {
                if has_line_break(name) {
                    return Err(invalid("attachments", "line break in name"));
                }
                ct = format!("{ct}; {}", param("name", name));
                cd = format!("{cd}; {}", param("filename", name));
            }
            let mut headers = vec![
                ("Content-Type".to_string(), ct),
                ("Content-Disposition".to_string(), cd),
                (
                    "Content-Transfer-Encoding".to_string(),
                    "base64".to_string(),
                ),
            ];
            if let Some(cid) = a.cid.as_deref() {
                let ids = format_ids(&[cid.to_string()]).map_err(|e| invalid("attachments", e))?;
                headers.push(("Content-ID".into(), ids));
            }
            parts.push(Entity {
                headers,
                body: base64_lines(&data).into_bytes(),
            });
        }
        if !missing.is_empty() {
            return Err(SetError::new("blobNotFound", "attachment blobs not found")
                .with("notFound", serde_json::json!(missing)));
        }
        Entity::multipart("mixed", parts)
    };
    Ok(entity.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn no_blobs(_: &str) -> Option<(Arc<Vec<u8>>, Option<String>)> {
        None
    }

    #[test]
    fn qp_encodes_and_wraps() {
        assert_eq!(quoted_printable("a=b"), "a=3Db");
        assert_eq!(quoted_printable("trailing \nx"), "trailing=20\r\nx");
        assert_eq!(quoted_printable("é"), "=C3=A9");
        let long = quoted_printable(&"x".repeat(200));
        assert!(long.split("\r\n").all(|l| l.len() <= 76));
        assert_eq!(long.replace("=\r\n", ""), "x".repeat(200));
    }

    #[test]
    fn phrases_and_words() {
        assert_eq!(encode_phrase("Alice Smith"), "Alice Smith");
        assert_eq!(encode_phrase("Smith, Alice"), "\"Smith, Alice\"");
        assert_eq!(encode_phrase("Jörg"), "=?UTF-8?B?SsO2cmc=?=");
        let long = encoded_words(&"ü".repeat(100));
        assert!(long.split(' ').all(|w| w.len() <= 75));
        assert_eq!(param("filename", "a\"b.txt"), "filename=\"a\\\"b.txt\"");
        assert_eq!(param("filename", "é.txt"), "filename*=utf-8''%C3%A9.txt");
    }

    #[test]
    fn builds_a_parseable_message() {
        let o = obj(json!({
            "mailboxIds": {"x": true},
            "from": [{"name": "Älice", "email": "alice@example.com"}],
            "to": [{"email": "bob@example.com"}, {"name": "C, D", "email": "cd@example.com"}],
            "subject": "Grüße",
            "sentAt": "2024-01-02T03:04:05+01:00",
            "inReplyTo": ["p@x"],
            "header:X-Custom:asText": "hé",
            "textBody": [{"partId": "t", "type": "text/plain"}],
            "htmlBody": [{"partId": "h", "type": "text/html"}],
            "bodyValues": {"t": {"value": "Hello =\nworld"}, "h": {"value": "<p>Hello</p>"}},
            "attachments": [{"blobId": "b1", "type": "text/csv", "name": "données.csv"}],
        }));
        let lookup = |id: &str| (id == "b1").then(|| (Arc::new(b"a,b\n1,2\n".to_vec()), None));
        let bytes = build_message(&o, "mx.example.com", 0, &lookup).unwrap();
        let msg = crate::jmap::view::parse_message(&bytes).unwrap();
        assert_eq!(msg.subject(), Some("Grüße"));
        let from = msg.from().unwrap().first().unwrap();
        assert_eq!(
            (from.name(), from.address()),
            (Some("Älice"), Some("alice@example.com"))
        );
        assert_eq!(msg.to().unwrap().iter().count(), 2);
        assert_eq!(
            msg.to().unwrap().iter().nth(1).unwrap().name(),
            Some("C, D")
        );
        assert_eq!(
            msg.date().unwrap().to_rfc3339(),
            "2024-01-02T03:04:05+01:00"
        );
        assert!(msg.message_id().unwrap().ends_with("@mx.example.com"));
        assert_eq!(
            msg.body_text(0).unwrap().trim_end(),
            "Hello =\nworld".replace('\n', "\r\n")
        );
        assert_eq!(msg.body_html(0).unwrap(), "<p>Hello</p>");
        assert_eq!(msg.attachment_count(), 1);
        let att = msg.attachment(0).unwrap();
        use mail_parser::MimeHeaders;
        assert_eq!(att.attachment_name(), Some("données.csv"));
        assert_eq!(att.contents(), b"a,b\n1,2\n");
        assert!(String::from_utf8_lossy(&bytes).contains("X-Custom: =?UTF-8?B?"));
    }

    #[test]
    fn refuses_injection_and_bad_input() {
        let cases = [
            json!({"subject": 5}),
            json!({"from": [{"email": "a@b\r\nBcc: x@y"}]}),
            json!({"from": [{"email": "no-at-sign"}]}),
            json!({"header:X-A": "a\r\nBcc: x@y"}),
            json!({"header:Content-Type": "text/html"}),
            json!({"headers": [{"name": "X:Y", "value": "v"}]}),
            json!({"messageId": ["a", "b"]}),
            json!({"messageId": ["a b"]}),
            json!({"sentAt": "yesterday"}),
            json!({"id": "x"}),
            json!({"textBody": [{"partId": "missing"}]}),
            json!({"textBody": [{"partId": "t", "type": "text/html"}], "bodyValues": {"t": {"value": "x"}}}),
            json!({"attachments": [{"blobId": "nope"}]}),
            json!({"subject": "a", "header:Subject": "b"}),
        ];
        for c in cases {
            let e = build_message(&obj(c.clone()), "h", 0, &no_blobs).unwrap_err();
            assert!(
                e.kind == "invalidProperties" || e.kind == "blobNotFound",
                "{c}: {e:?}"
            );
        }
        // A folded raw value is accepted.
        let ok = build_message(&obj(json!({"header:X-A": "a\r\n b"})), "h", 0, &no_blobs).unwrap();
        assert!(String::from_utf8_lossy(&ok).contains("X-A: a b\r\n"));
    }
}
