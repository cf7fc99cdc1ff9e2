//! Email properties that need the parsed message: headers in every RFC 8621 §4.1.2 form,
//! addresses, body parts (§4.1.4) and body values.

use mail_parser::{Address, HeaderForm, HeaderValue, Message, MessagePart, MimeHeaders, PartType};
use serde_json::{Map, Value, json};

use crate::jmap::ids;
use crate::jmap::mime::valid_field_name;

/// Body part properties a client may ask for.
pub const BODY_PROPERTIES: [&str; 12] = [
    "partId",
    "blobId",
    "size",
    "headers",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
    "subParts",
];

pub const DEFAULT_BODY_PROPERTIES: [&str; 10] = [
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
];

/// A parsed `header:Name[:asForm][:all]` property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderProperty {
    pub name: String,
    pub form: Form,
    pub all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Raw,
    Text,
    Addresses,
    GroupedAddresses,
    MessageIds,
    Date,
    Urls,
}

impl HeaderProperty {
    pub fn parse(property: &str) -> Option<Self> {
        let rest = property.strip_prefix("header:")?;
        let mut parts = rest.split(':');
        let name = parts.next().filter(|n| valid_field_name(n))?.to_string();
        let mut form = Form::Raw;
        let mut all = false;
        for (i, p) in parts.enumerate() {
            match p {
                "all" => all = true,
                _ if i == 0 => {
                    form = match p {
                        "asRaw" => Form::Raw,
                        "asText" => Form::Text,
                        "asAddresses" => Form::Addresses,
                        "asGroupedAddresses" => Form::GroupedAddresses,
                        "asMessageIds" => Form::MessageIds,
                        "asDate" => Form::Date,
                        "asURLs" => Form::Urls,
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        Some(Self { name, form, all })
    }
}

/// Raw value of every instance of a header in `part` (leading space kept, CRLF dropped).
fn raw_values<'a>(raw: &'a [u8], part: &MessagePart<'_>, name: &str) -> Vec<&'a str> {
    part.headers
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .filter_map(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
        .filter_map(|b| std::str::from_utf8(b).ok())
        .map(|s| s.trim_end_matches(['\r', '\n']))
        .collect()
}

/// `header:...` on the top-level message.
pub fn header_property(msg: &Message<'_>, prop: &HeaderProperty) -> Value {
    let values: Vec<Value> = match prop.form {
        Form::Raw => raw_values(msg.raw_message.as_ref(), &msg.parts[0], &prop.name)
            .into_iter()
            .map(|s| json!(s))
            .collect(),
        form => {
            let hf = match form {
                Form::Text => HeaderForm::Text,
                Form::Addresses => HeaderForm::Addresses,
                Form::GroupedAddresses => HeaderForm::GroupedAddresses,
                Form::MessageIds => HeaderForm::MessageIds,
                Form::Date => HeaderForm::Date,
                _ => HeaderForm::URLs,
            };
            msg.header_as(prop.name.as_str(), hf)
                .iter()
                .map(|v| form_value(v, form))
                .collect()
        }
    };
    if prop.all {
        Value::Array(values)
    } else {
        values.into_iter().last().unwrap_or(Value::Null)
    }
}

fn form_value(v: &HeaderValue<'_>, form: Form) -> Value {
    match form {
        Form::Raw | Form::Text => match v {
            HeaderValue::Text(t) => json!(t.trim()),
            HeaderValue::TextList(l) => json!(l.join(", ")),
            _ => Value::Null,
        },
        Form::Addresses => v.as_address().map_or(Value::Null, addresses),
        Form::GroupedAddresses => v.as_address().map_or(Value::Null, grouped),
        Form::MessageIds => message_ids(v),
        Form::Date => v
            .as_datetime()
            .filter(|d| d.is_valid())
            .map_or(Value::Null, |d| json!(d.to_rfc3339())),
        Form::Urls => v.as_address().map_or(Value::Null, |a| {
            Value::Array(
                a.iter()
                    .filter_map(|x| x.address())
                    .map(|u| json!(u))
                    .collect(),
            )
        }),
    }
}

/// EmailAddress[] (groups flattened).
pub fn addresses(addr: &Address<'_>) -> Value {
    Value::Array(
        addr.iter()
            .map(|a| json!({"name": a.name(), "email": a.address().unwrap_or_default()}))
            .collect(),
    )
}

/// EmailAddressGroup[].
fn grouped(addr: &Address<'_>) -> Value {
    match addr {
        Address::List(_) => json!([{"name": null, "addresses": addresses(addr)}]),
        Address::Group(groups) => Value::Array(
            groups
                .iter()
                .map(|g| {
                    json!({
                        "name": g.name,
                        "addresses": g.addresses.iter()
                            .map(|a| json!({"name": a.name(), "email": a.address().unwrap_or_default()}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
    }
}

pub fn message_ids(v: &HeaderValue<'_>) -> Value {
    match v {
        HeaderValue::Text(t) => json!([t]),
        HeaderValue::TextList(l) => json!(l),
        _ => Value::Null,
    }
}

pub fn opt_addresses(addr: Option<&Address<'_>>) -> Value {
    addr.map_or(Value::Null, addresses)
}

/// All header fields of a part as `{name, value}` (raw).
fn header_list(raw: &[u8], part: &MessagePart<'_>) -> Value {
    Value::Array(
        part.headers
            .iter()
            .map(|h| {
                let value = raw
                    .get(h.offset_start as usize..h.offset_end as usize)
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let name = raw
                    .get(h.offset_field as usize..h.offset_start as usize)
                    .map(|b| {
                        String::from_utf8_lossy(b)
                            .trim_end_matches(':')
                            .trim()
                            .to_string()
                    })
                    .unwrap_or_else(|| h.name.as_str().to_string());
                json!({"name": name, "value": value.trim_end_matches(['\r', '\n'])})
            })
            .collect(),
    )
}

pub fn top_headers(msg: &Message<'_>) -> Value {
    header_list(msg.raw_message.as_ref(), &msg.parts[0])
}

/// `type/subtype`, lower case; text/plain when absent.
pub fn part_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match &ct.c_subtype {
            Some(sub) => format!("{}/{}", ct.c_type, sub).to_ascii_lowercase(),
            None => ct.c_type.to_ascii_lowercase(),
        },
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".into(),
        None => "text/plain".into(),
    }
}

/// One EmailBodyPart; `subParts` recurses only when asked (bodyStructure).
pub fn part_json(msg: &Message<'_>, email_id: &str, index: u32, props: &[String]) -> Value {
    let Some(part) = msg.parts.get(index as usize) else {
        return Value::Null;
    };
    let multipart = matches!(part.body, PartType::Multipart(_));
    let ty = part_type(part);
    let mut out = Map::new();
    for p in props {
        let v = match p.as_str() {
            "partId" if multipart => Value::Null,
            "partId" => json!(index.to_string()),
            "blobId" if multipart => Value::Null,
            "blobId" => json!(ids::part_blob_id(email_id, index)),
            "size" => json!(if multipart { 0 } else { part.len() }),
            "headers" => header_list(msg.raw_message.as_ref(), part),
            "name" => json!(part.attachment_name()),
            "type" => json!(ty),
            "charset" => match part.content_type().and_then(|c| c.attribute("charset")) {
                Some(c) => json!(c),
                None if ty.starts_with("text/") => json!("us-ascii"),
                None => Value::Null,
            },
            "disposition" => json!(
                part.content_disposition()
                    .map(|d| d.c_type.to_ascii_lowercase())
            ),
            "cid" => json!(part.content_id().map(|c| c.trim_matches(['<', '>', ' ']))),
            "language" => match part.content_language() {
                HeaderValue::Text(t) => json!([t]),
                HeaderValue::TextList(l) => json!(l),
                _ => Value::Null,
            },
            "location" => json!(part.content_location()),
            "subParts" => match &part.body {
                PartType::Multipart(children) => Value::Array(
                    children
                        .iter()
                        .map(|c| part_json(msg, email_id, *c, props))
                        .collect(),
                ),
                _ => Value::Null,
            },
            _ => continue,
        };
        out.insert(p.clone(), v);
    }
    Value::Object(out)
}

/// Decoded text of a text part, cut at `max` bytes on a char boundary (0 = no limit).
pub fn body_value(part: &MessagePart<'_>, max: usize) -> Option<Value> {
    let text = match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.as_ref(),
        _ => return None,
    };
    let (value, truncated) = if max > 0 && text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        (&text[..cut], true)
    } else {
        (text, false)
    };
    Some(json!({
        "value": value,
        "isEncodingProblem": part.is_encoding_problem,
        "isTruncated": truncated,
    }))
}

/// The decoded bytes of a leaf part (for part blob downloads).
pub fn part_bytes(msg: &Message<'_>, index: u32) -> Option<Vec<u8>> {
    let part = msg.parts.get(index as usize)?;
    match &part.body {
        PartType::Multipart(_) => None,
        _ => Some(part.contents().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_property_syntax() {
        assert_eq!(
            HeaderProperty::parse("header:List-Id:asText:all"),
            Some(HeaderProperty {
                name: "List-Id".into(),
                form: Form::Text,
                all: true
            })
        );
        assert_eq!(
            HeaderProperty::parse("header:X-A").map(|h| (h.form, h.all)),
            Some((Form::Raw, false))
        );
        assert_eq!(
            HeaderProperty::parse("header:X-A:all").map(|h| (h.form, h.all)),
            Some((Form::Raw, true))
        );
        assert_eq!(HeaderProperty::parse("header:X-A:asBogus"), None);
        assert_eq!(HeaderProperty::parse("header::asText"), None);
        assert_eq!(HeaderProperty::parse("header:A:all:asText"), None);
        assert_eq!(HeaderProperty::parse("subject"), None);
    }

    #[test]
    fn header_forms() {
        let raw = b"From: =?UTF-8?Q?J=C3=B6rg?= <j@x.org>\r\nX-List: <http://a>, <mailto:b@c>\r\n\
X-List: second\r\nReferences: <a@b> <c@d>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0100\r\n\r\nbody\r\n";
        let msg = crate::jmap::view::parse_message(raw).unwrap();
        let p = |s: &str| header_property(&msg, &HeaderProperty::parse(s).unwrap());
        assert_eq!(
            p("header:From:asAddresses"),
            json!([{"name": "Jörg", "email": "j@x.org"}])
        );
        assert_eq!(
            p("header:x-list:all"),
            json!([" <http://a>, <mailto:b@c>", " second"])
        );
        assert_eq!(p("header:X-List"), json!(" second"));
        assert_eq!(p("header:References:asMessageIds"), json!(["a@b", "c@d"]));
        assert_eq!(p("header:Date:asDate"), json!("2023-11-14T22:13:20+01:00"));
        assert_eq!(p("header:From:asText"), json!("Jörg <j@x.org>"));
        assert_eq!(p("header:Missing"), Value::Null);
        assert_eq!(p("header:Missing:all"), json!([]));
    }
}
