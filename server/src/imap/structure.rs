//! ENVELOPE and BODY / BODYSTRUCTURE data items (RFC 3501 section 7.4.2).

use base64::Engine as _;
use mail_parser::{Addr, Address, MessageParser};

use super::mime::{self, Content, Part};
use super::response::{nstring, string};

/// `(date subject from sender reply-to to cc bcc in-reply-to message-id)` of a header block.
pub fn envelope(out: &mut Vec<u8>, header: &[u8]) {
    let parsed = MessageParser::default().parse_headers(header);
    let raw = |name: &str| mime::header_value(header, name);
    let field = |out: &mut Vec<u8>, name: &str| {
        let value = raw(name);
        nstring(out, value.as_deref().map(str::as_bytes));
    };
    out.push(b'(');
    field(out, "Date");
    out.push(b' ');
    field(out, "Subject");
    let from = parsed.as_ref().and_then(|m| m.from());
    let sender = parsed.as_ref().and_then(|m| m.sender()).or(from);
    let reply_to = parsed.as_ref().and_then(|m| m.reply_to()).or(from);
    for list in [
        from,
        sender,
        reply_to,
        parsed.as_ref().and_then(|m| m.to()),
        parsed.as_ref().and_then(|m| m.cc()),
        parsed.as_ref().and_then(|m| m.bcc()),
    ] {
        out.push(b' ');
        addresses(out, list);
    }
    out.push(b' ');
    field(out, "In-Reply-To");
    out.push(b' ');
    field(out, "Message-ID");
    out.push(b')');
}

fn addresses(out: &mut Vec<u8>, list: Option<&Address<'_>>) {
    let mut items = Vec::new();
    match list {
        Some(Address::List(addrs)) => {
            for a in addrs {
                address(&mut items, a);
            }
        }
        Some(Address::Group(groups)) => {
            for g in groups {
                // Group syntax: a start marker with the group name, the members, an end marker.
                if let Some(name) = &g.name {
                    items.extend_from_slice(b"(NIL NIL ");
                    string(&mut items, encode_word(name).as_bytes());
                    items.extend_from_slice(b" NIL)");
                }
                for a in &g.addresses {
                    address(&mut items, a);
                }
                if g.name.is_some() {
                    items.extend_from_slice(b"(NIL NIL NIL NIL)");
                }
            }
        }
        None => {}
    }
    if items.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        out.extend_from_slice(&items);
        out.push(b')');
    }
}

fn address(out: &mut Vec<u8>, a: &Addr<'_>) {
    let Some(addr) = a.address.as_deref() else {
        return;
    };
    let (mailbox, host) = addr.rsplit_once('@').unwrap_or((addr, ""));
    out.push(b'(');
    let name = a.name.as_deref().map(encode_word);
    nstring(out, name.as_deref().map(str::as_bytes));
    out.extend_from_slice(b" NIL ");
    string(out, mailbox.as_bytes());
    out.push(b' ');
    string(out, host.as_bytes());
    out.push(b')');
}

/// mail-parser decodes encoded words; IMAP strings are 7-bit, so non-ASCII text goes back into
/// an RFC 2047 encoded word.
fn encode_word(text: &str) -> String {
    if text.is_ascii() {
        text.to_string()
    } else {
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
        )
    }
}

/// BODY (`extensible` = false) or BODYSTRUCTURE (true) of an entity.
pub fn body_structure(out: &mut Vec<u8>, data: &[u8], part: &Part, extensible: bool) {
    let header = &data[part.header.clone()];
    if let Content::Multipart(children) = &part.content
        && !children.is_empty()
    {
        out.push(b'(');
        for child in children {
            body_structure(out, data, child, extensible);
        }
        out.push(b' ');
        string(out, part.subtype.as_bytes());
        if extensible {
            out.push(b' ');
            params(out, &part.params);
            out.push(b' ');
            extension(out, header);
        }
        out.push(b')');
        return;
    }
    let body = &data[part.body.clone()];
    let field = |name: &str| mime::header_value(header, name);
    out.push(b'(');
    string(out, part.media_type.as_bytes());
    out.push(b' ');
    string(out, part.subtype.as_bytes());
    out.push(b' ');
    params(out, &part.params);
    out.push(b' ');
    nstring(out, field("Content-ID").as_deref().map(str::as_bytes));
    out.push(b' ');
    nstring(
        out,
        field("Content-Description").as_deref().map(str::as_bytes),
    );
    out.push(b' ');
    let encoding = field("Content-Transfer-Encoding").unwrap_or_else(|| "7BIT".into());
    string(out, encoding.as_bytes());
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    if let Content::Message(inner) = &part.content {
        out.push(b' ');
        envelope(out, &data[inner.header.clone()]);
        out.push(b' ');
        body_structure(out, data, inner, extensible);
        out.extend_from_slice(format!(" {}", mime::count_lines(body)).as_bytes());
    } else if part.media_type == "text" {
        out.extend_from_slice(format!(" {}", mime::count_lines(body)).as_bytes());
    }
    if extensible {
        out.push(b' ');
        nstring(out, field("Content-MD5").as_deref().map(str::as_bytes));
        out.push(b' ');
        extension(out, header);
    }
    out.push(b')');
}

/// `disposition language location`, shared by single parts and multiparts.
fn extension(out: &mut Vec<u8>, header: &[u8]) {
    match mime::header_value(header, "Content-Disposition") {
        Some(value) => {
            let disposition = mime::parse_params(&value);
            out.push(b'(');
            string(out, disposition.main.as_bytes());
            out.push(b' ');
            params(out, &disposition.params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match mime::header_value(header, "Content-Language") {
        Some(value) => {
            let tags: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            match tags.as_slice() {
                [] => out.extend_from_slice(b"NIL"),
                [one] => string(out, one.as_bytes()),
                many => {
                    out.push(b'(');
                    for (i, t) in many.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        string(out, t.as_bytes());
                    }
                    out.push(b')');
                }
            }
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(
        out,
        mime::header_value(header, "Content-Location")
            .as_deref()
            .map(str::as_bytes),
    );
}

fn params(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, name.as_bytes());
        out.push(b' ');
        string(out, value.as_bytes());
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(header: &[u8]) -> String {
        let mut out = Vec::new();
        envelope(&mut out, header);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn envelope_fields() {
        let header = b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nFrom: Fred Foobar <foobar@Blurdybloop.COM>\r\nSubject: afternoon meeting\r\nTo: mooch@owatagu.siam.edu, \"Joe\" <joe@x.org>\r\nMessage-Id: <B27397-0100000@Blurdybloop.COM>\r\n\r\n";
        assert_eq!(
            env(header),
            "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"afternoon meeting\" ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) ((NIL NIL \"mooch\" \"owatagu.siam.edu\")(\"Joe\" NIL \"joe\" \"x.org\")) NIL NIL NIL \"<B27397-0100000@Blurdybloop.COM>\")"
        );
        assert_eq!(env(b""), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    }

    #[test]
    fn non_ascii_names_are_encoded() {
        let header = "From: =?utf-8?q?J=C3=B6rg?= <j@x.org>\r\n\r\n".as_bytes();
        let e = env(header);
        assert!(
            e.contains("((\"=?utf-8?b?SsO2cmc=?=\" NIL \"j\" \"x.org\"))"),
            "{e}"
        );
    }

    #[test]
    fn body_structures() {
        let data = b"Subject: x\r\n\r\nhello\r\nworld\r\n";
        let root = mime::parse(data);
        let mut out = Vec::new();
        body_structure(&mut out, data, &root, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 14 2)"
        );
        let data = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n--B\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\r\nAAAA\r\n--B--\r\n";
        let root = mime::parse(data);
        let mut out = Vec::new();
        body_structure(&mut out, data, &root, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 2 1 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 4 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"B\") NIL NIL NIL)"
        );
    }

    #[test]
    fn message_rfc822_part() {
        let data = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody\r\n--B--\r\n";
        let root = mime::parse(data);
        let mut out = Vec::new();
        body_structure(&mut out, data, &root, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "((\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 22 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 4 1) 3) \"mixed\")"
        );
    }
}
