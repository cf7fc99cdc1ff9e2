//! What tests read from a message: top-level headers (unfolded, RFC 2047-decoded), the
//! addresses in address headers, and the body under the RFC 5173 transforms. The header block
//! is split here; mail-parser decodes encoded words, address lists and MIME parts.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::ops::Range;

use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

/// Nested `message/rfc822` levels the body test descends into.
const MAX_NESTED_MESSAGES: usize = 8;

pub(crate) struct MessageView<'m> {
    raw: &'m [u8],
    headers: Vec<RawHeader<'m>>,
    body_start: usize,
    parsed: OnceCell<Option<Message<'m>>>,
    text: OnceCell<Vec<String>>,
}

struct RawHeader<'m> {
    name: &'m [u8],
    /// From after the colon through the end of the last continuation line.
    value: Range<usize>,
}

impl<'m> MessageView<'m> {
    pub(crate) fn new(raw: &'m [u8]) -> Self {
        let (headers, body_start) = split_headers(raw);
        Self {
            raw,
            headers,
            body_start,
            parsed: OnceCell::new(),
            text: OnceCell::new(),
        }
    }

    pub(crate) fn header_count(&self) -> usize {
        self.headers.len()
    }

    pub(crate) fn size(&self) -> usize {
        self.raw.len()
    }

    fn raw_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'m [u8]> + 'a {
        let raw = self.raw;
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(move |h| raw.get(h.value.clone()).unwrap_or_default())
    }

    pub(crate) fn has_header(&self, name: &str) -> bool {
        self.raw_values(name).next().is_some()
    }

    /// Every value of the header, unfolded and with encoded words decoded (RFC 5228 section
    /// 5.7), in message order. Leading and trailing blanks are removed.
    pub(crate) fn header_values(&self, name: &str) -> Vec<String> {
        self.raw_values(name)
            .map(
                |raw| match MessageStream::new(&with_newline(raw)).parse_unstructured() {
                    HeaderValue::Text(text) => text.into_owned(),
                    _ => String::new(),
                },
            )
            .collect()
    }

    /// The addr-specs of every address in the header's values; display names and group
    /// names are not addresses (RFC 5228 section 2.7.4).
    pub(crate) fn header_addresses(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for raw in self.raw_values(name) {
            let value = with_newline(raw);
            let HeaderValue::Address(address) = MessageStream::new(&value).parse_address() else {
                continue;
            };
            let addrs: Vec<_> = match &address {
                Address::List(list) => list.iter().collect(),
                Address::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).collect(),
            };
            out.extend(
                addrs
                    .into_iter()
                    .filter_map(|a| match (&a.address, &a.name) {
                        (Some(address), _) => Some(address.as_ref()),
                        // mail-parser reads a lone word (`To: root`) as a display name;
                        // it is really an address without a domain.
                        (None, Some(word)) if !word.contains(char::is_whitespace) => {
                            Some(word.as_ref())
                        }
                        _ => None,
                    })
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty()),
            );
        }
        out
    }

    /// The MIME tree. The message comes from any sender, so a panic inside the parser (none
    /// is known) would take the delivery down with it: it is caught and the message is then
    /// read as unstructured text.
    fn parsed(&self) -> Option<&Message<'m>> {
        self.parsed
            .get_or_init(|| {
                let raw = self.raw;
                std::panic::catch_unwind(|| MessageParser::default().parse(raw)).unwrap_or_else(
                    |_| {
                        tracing::warn!(
                            "sieve: the MIME parser panicked; matching the body as plain text"
                        );
                        None
                    },
                )
            })
            .as_ref()
    }

    /// The undecoded body after the header block.
    pub(crate) fn raw_body(&self) -> Cow<'m, str> {
        String::from_utf8_lossy(self.raw.get(self.body_start..).unwrap_or_default())
    }

    /// Decoded text of every `text/*` part; HTML is reduced to its text. RFC 5173 section 5.3
    /// leaves `:text` to the implementation's best effort, and allows exactly this.
    pub(crate) fn text_parts(&self) -> &[String] {
        self.text.get_or_init(|| self.extract_text())
    }

    fn extract_text(&self) -> Vec<String> {
        let Some(message) = self.parsed() else {
            return vec![self.raw_body().into_owned()];
        };
        let mut out = Vec::new();
        for_each_part(message, |_, part| match &part.body {
            PartType::Text(text) => out.push(text.to_string()),
            PartType::Html(html) => out.push(html_to_text(html)),
            _ => {}
        });
        out
    }

    /// `:content`: parts whose content type matches one of `types` (RFC 5173 section 5.2).
    /// Leaf parts are transfer-decoded (and charset-decoded when text); a multipart matches
    /// with its prologue and epilogue; a `message/rfc822` part with its header.
    pub(crate) fn content_parts(&self, types: &[String]) -> Vec<String> {
        let Some(message) = self.parsed() else {
            return if types.iter().any(|t| type_matches(t, "text", "plain")) {
                vec![self.raw_body().into_owned()]
            } else {
                Vec::new()
            };
        };
        let mut out = Vec::new();
        for_each_part(message, |raw, part| {
            let (ctype, subtype) = content_type(part);
            if !types.iter().any(|t| type_matches(t, &ctype, &subtype)) {
                return;
            }
            match &part.body {
                PartType::Text(text) | PartType::Html(text) => out.push(text.to_string()),
                PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                    out.push(String::from_utf8_lossy(bytes).into_owned());
                }
                PartType::Message(nested) => {
                    // A nested message's offsets point into the outer message's bytes.
                    let header = nested.parts.first().map_or(&[][..], |root| {
                        offsets(
                            nested.raw_message.as_ref(),
                            root.offset_header,
                            root.offset_body,
                        )
                    });
                    out.push(String::from_utf8_lossy(header).into_owned());
                }
                PartType::Multipart(_) => out.push(prologue_and_epilogue(raw, part)),
            }
        });
        out
    }
}

/// Visits every part of `message` and of the messages nested in it, depth-bounded. The
/// callback also gets the raw bytes the part's offsets point into.
fn for_each_part<'m>(
    message: &Message<'m>,
    mut visit: impl FnMut(&[u8], &mail_parser::MessagePart<'m>),
) {
    let mut stack = vec![(message, 0usize)];
    while let Some((message, depth)) = stack.pop() {
        for part in &message.parts {
            visit(message.raw_message.as_ref(), part);
            if let PartType::Message(nested) = &part.body
                && depth < MAX_NESTED_MESSAGES
            {
                stack.push((nested, depth + 1));
            }
        }
    }
}

/// Type and subtype, lowercased; a part without Content-Type is text/plain (RFC 2045
/// section 5.2), except what mail-parser already recognised as a nested message.
fn content_type(part: &mail_parser::MessagePart<'_>) -> (String, String) {
    match part.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase(),
        ),
        None => match part.body {
            PartType::Message(_) => ("message".into(), "rfc822".into()),
            _ => ("text".into(), "plain".into()),
        },
    }
}

/// RFC 5173 section 5.2: `""` matches every type, `"type"` every subtype of it,
/// `"type/subtype"` just that; a leading, trailing or second `/` matches nothing.
fn type_matches(wanted: &str, ctype: &str, subtype: &str) -> bool {
    if wanted.is_empty() {
        return true;
    }
    match wanted.split_once('/') {
        None => wanted.eq_ignore_ascii_case(ctype),
        Some((t, s)) if !t.is_empty() && !s.is_empty() && !s.contains('/') => {
            t.eq_ignore_ascii_case(ctype) && s.eq_ignore_ascii_case(subtype)
        }
        Some(_) => false,
    }
}

/// The text before the first boundary line and after the closing one.
fn prologue_and_epilogue(raw: &[u8], part: &mail_parser::MessagePart<'_>) -> String {
    let Some(boundary) = part
        .content_type()
        .and_then(|ct| ct.attribute("boundary"))
        .map(|b| format!("--{b}"))
    else {
        return String::new();
    };
    let body = offsets(raw, part.offset_body, part.offset_end);
    let mut prologue = None;
    let mut epilogue_start = None;
    let mut offset = 0;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let trimmed = line.trim_ascii_end();
        if let Some(rest) = trimmed.strip_prefix(boundary.as_bytes()) {
            if prologue.is_none() {
                prologue = Some(&body[..offset]);
            }
            if rest.starts_with(b"--") {
                epilogue_start = Some(offset + line.len());
            }
        }
        offset += line.len();
    }
    let mut out = String::from_utf8_lossy(prologue.unwrap_or_default()).into_owned();
    if let Some(from) = epilogue_start {
        out.push_str(&String::from_utf8_lossy(
            body.get(from..).unwrap_or_default(),
        ));
    }
    out
}

/// `raw[start..end]`, empty when mail-parser's offsets don't fit.
fn offsets(raw: &[u8], start: u32, end: u32) -> &[u8] {
    let start = usize::try_from(start).unwrap_or(usize::MAX);
    let end = usize::try_from(end).unwrap_or(usize::MAX).min(raw.len());
    raw.get(start..end).unwrap_or_default()
}

fn with_newline(raw: &[u8]) -> Cow<'_, [u8]> {
    if raw.ends_with(b"\n") {
        Cow::Borrowed(raw)
    } else {
        let mut owned = raw.to_vec();
        owned.push(b'\n');
        Cow::Owned(owned)
    }
}

/// Splits the top-level header block into fields and finds where the body starts. Lines
/// that are neither a field nor a continuation (an mbox `From ` line, garbage) are skipped.
fn split_headers(raw: &[u8]) -> (Vec<RawHeader<'_>>, usize) {
    let mut headers: Vec<RawHeader<'_>> = Vec::new();
    let mut pos = 0;
    // Whether the last line was a field we kept, so a continuation line extends it.
    let mut continuing = false;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        if line == b"\n" || line == b"\r\n" {
            return (headers, end);
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if let (true, Some(last)) = (continuing, headers.last_mut()) {
                last.value.end = end;
            }
        } else {
            continuing = false;
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                let name = line[..colon].trim_ascii_end();
                // RFC 5322 field names: printable ASCII except the colon, at least one.
                if !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b)) {
                    headers.push(RawHeader {
                        name,
                        value: pos + colon + 1..end,
                    });
                    continuing = true;
                }
            }
        }
        pos = end;
    }
    (headers, raw.len())
}

/// Visible text of an HTML part: tags dropped, `script`/`style` contents dropped, a few
/// common entities decoded. Good enough for matching words; not a renderer.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut skip_until: Option<String> = None;
    while let Some(lt) = rest.find('<') {
        if skip_until.is_none() {
            push_decoded(&mut out, &rest[..lt]);
        }
        let after = &rest[lt..];
        let tag_end = after.find('>').map_or(after.len(), |i| i + 1);
        let (closing, name) = tag_name(&after[1..tag_end]);
        if let Some(until) = &skip_until {
            if closing && name == *until {
                skip_until = None;
            }
        } else if !closing && (name == "script" || name == "style") {
            skip_until = Some(name);
        } else {
            let block = [
                "br", "p", "div", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
            ];
            if block.contains(&name.as_str()) {
                out.push('\n');
            }
        }
        rest = &after[tag_end..];
    }
    if skip_until.is_none() {
        push_decoded(&mut out, rest);
    }
    out
}

/// Whether a tag (the text after `<`) closes, and its lowercased name.
fn tag_name(tag: &str) -> (bool, String) {
    let (closing, rest) = match tag.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, tag),
    };
    let name = rest
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (closing, name)
}

fn push_decoded(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let entity_end = after.find(';').filter(|&i| i <= 10);
        let decoded = entity_end.and_then(|i| decode_entity(&after[1..i]));
        match (entity_end, decoded) {
            (Some(i), Some(c)) => {
                out.push(c);
                rest = &after[i + 1..];
            }
            _ => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
}

fn decode_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_split_unfolded_and_decoded() {
        let raw = b"From nobody Mon Jan  1 00:00:00 2024\r\nSubject: =?UTF-8?Q?Caf=C3=A9?= is\r\n open\r\nX-Empty:\r\nsubject : second\r\n\r\nbody: not a header\r\n";
        let view = MessageView::new(raw);
        assert_eq!(
            view.header_values("SUBJECT"),
            vec!["Caf\u{e9} is open", "second"]
        );
        assert_eq!(view.header_values("x-empty"), vec![""]);
        assert!(view.has_header("X-Empty"));
        assert!(!view.has_header("body"));
        assert!(!view.has_header("From nobody Mon Jan  1 00"));
        assert_eq!(view.raw_body(), "body: not a header\r\n");
    }

    #[test]
    fn message_without_body_or_final_newline() {
        let view = MessageView::new(b"Subject: no newline");
        assert_eq!(view.header_values("subject"), vec!["no newline"]);
        assert_eq!(view.raw_body(), "");
        let empty = MessageView::new(b"");
        assert!(empty.header_values("subject").is_empty());
        assert_eq!(empty.size(), 0);
    }

    #[test]
    fn addresses_skip_display_names_and_groups() {
        let raw = b"To: \"Doe, John\" <john@example.com>, jane@example.org,\r\n  Team: a@x.test, \"B\" <b@y.test>;, undisclosed-recipients:;\r\n\r\n";
        let view = MessageView::new(raw);
        assert_eq!(
            view.header_addresses("to"),
            vec![
                "john@example.com",
                "jane@example.org",
                "a@x.test",
                "b@y.test"
            ]
        );
    }

    #[test]
    fn content_types_match_per_rfc_5173() {
        assert!(type_matches("", "image", "png"));
        assert!(type_matches("TEXT", "text", "html"));
        assert!(type_matches("text/plain", "text", "plain"));
        assert!(!type_matches("text/plain", "text", "html"));
        assert!(!type_matches("text/", "text", "plain"));
        assert!(!type_matches("/plain", "text", "plain"));
        assert!(!type_matches("text/plain/x", "text", "plain"));
    }

    #[test]
    fn html_is_reduced_to_text() {
        let html = "<html><head><style>p {color: red}</style></head><body><p>Fish &amp; chips&nbsp;&#33;&#x21;</p><script>var x = '<b>';</script>tail &bogus; &</body></html>";
        assert_eq!(html_to_text(html), "\nFish & chips !!\ntail &bogus; &");
        assert_eq!(html_to_text("a <b unclosed"), "a ");
        assert_eq!(
            html_to_text("one<br/>two<h1>three</h1>"),
            "one\ntwo\nthree\n"
        );
    }
}
