//! MIME structure of a stored message as byte ranges, for BODY[section] and BODYSTRUCTURE.
//!
//! Written on raw bytes (not on mail-parser's tree) because IMAP sections are defined on the
//! exact octets: every part keeps the ranges of its header and body inside the whole message.

use std::ops::Range;

/// Deepest nesting of multiparts / message/rfc822 parts followed; deeper parts are leaves.
const MAX_DEPTH: usize = 32;

/// A Content-Type (or Content-Disposition) value: `main` and parameters in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderParams {
    pub main: String,
    pub params: Vec<(String, String)>,
}

impl HeaderParams {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One entity: a message or a body part.
#[derive(Debug, Clone)]
pub struct Part {
    /// The header, including the blank line that ends it (empty if there is none).
    pub header: Range<usize>,
    pub body: Range<usize>,
    /// Lower-case media type and subtype.
    pub media_type: String,
    pub subtype: String,
    /// Content-Type parameters (`charset`, `boundary`, ...).
    pub params: Vec<(String, String)>,
    pub content: Content,
}

#[derive(Debug, Clone)]
pub enum Content {
    Leaf,
    Multipart(Vec<Part>),
    /// A message/rfc822 part: the encapsulated message, parsed.
    Message(Box<Part>),
}

impl Part {
    pub fn is(&self, media_type: &str, subtype: &str) -> bool {
        self.media_type == media_type && self.subtype == subtype
    }
}

/// Parses a whole message.
pub fn parse(data: &[u8]) -> Part {
    entity(data, 0..data.len(), false, 0)
}

/// Parses one entity inside `range`; `digest` makes message/rfc822 the default type.
fn entity(data: &[u8], range: Range<usize>, digest: bool, depth: usize) -> Part {
    let (header, body) = split_header(data, range);
    let ctype = header_value(&data[header.clone()], "Content-Type").map(|v| parse_params(&v));
    let (media_type, subtype, params) = match ctype.as_ref().and_then(|c| {
        let (t, s) = c.main.split_once('/')?;
        let (t, s) = (t.trim(), s.trim());
        (!t.is_empty() && !s.is_empty()).then(|| (t.to_ascii_lowercase(), s.to_ascii_lowercase()))
    }) {
        Some((t, s)) => (t, s, ctype.map(|c| c.params).unwrap_or_default()),
        None if digest => ("message".into(), "rfc822".into(), Vec::new()),
        None => (
            "text".into(),
            "plain".into(),
            vec![("charset".into(), "us-ascii".into())],
        ),
    };
    let mut part = Part {
        header,
        body: body.clone(),
        media_type,
        subtype,
        params,
        content: Content::Leaf,
    };
    if depth >= MAX_DEPTH {
        return part;
    }
    if part.media_type == "multipart" {
        let params = HeaderParams {
            main: String::new(),
            params: part.params.clone(),
        };
        if let Some(boundary) = params.param("boundary").filter(|b| !b.is_empty()) {
            let is_digest = part.subtype == "digest";
            let children = split_multipart(data, body, boundary.as_bytes())
                .into_iter()
                .map(|r| entity(data, r, is_digest, depth + 1))
                .collect();
            part.content = Content::Multipart(children);
        }
    } else if part.is("message", "rfc822") {
        part.content = Content::Message(Box::new(entity(data, body, false, depth + 1)));
    }
    part
}

/// Splits at the first empty line: (header with the empty line, body).
pub fn split_header(data: &[u8], range: Range<usize>) -> (Range<usize>, Range<usize>) {
    let bytes = &data[range.clone()];
    let mut pos = 0;
    // A part may start with the empty line directly: no header fields at all.
    while pos < bytes.len() {
        let line_end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| pos + i + 1);
        let line = &bytes[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            let split = range.start + line_end;
            return (range.start..split, split..range.end);
        }
        pos = line_end;
    }
    (range.clone(), range.end..range.end)
}

/// Ranges of the body parts between `--boundary` lines (delimiter line breaks excluded).
fn split_multipart(data: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    let mut pos = body.start;
    while pos < body.end {
        let line_end = data[pos..body.end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.end, |i| pos + i + 1);
        let line = &data[pos..line_end];
        if let Some(rest) = line.strip_prefix(delimiter.as_slice()) {
            let (close, rest) = match rest.strip_prefix(b"--") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            if rest.iter().all(|b| b.is_ascii_whitespace()) {
                if let Some(start) = open.take() {
                    // The line break before the delimiter belongs to the delimiter.
                    let mut end = pos;
                    if end > start && data[end - 1] == b'\n' {
                        end -= 1;
                        if end > start && data[end - 1] == b'\r' {
                            end -= 1;
                        }
                    }
                    parts.push(start..end);
                }
                if close {
                    return parts;
                }
                open = Some(line_end);
            }
        }
        pos = line_end;
    }
    if let Some(start) = open {
        parts.push(start..body.end);
    }
    parts
}

/// One header field: its name and the exact bytes (continuation lines and line end included).
pub struct Field<'a> {
    pub name: &'a [u8],
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// The value, unfolded and trimmed.
    pub fn value(&self) -> String {
        let colon = self.raw.iter().position(|&b| b == b':').unwrap_or(0);
        let value = &self.raw[(colon + 1).min(self.raw.len())..];
        let text = String::from_utf8_lossy(value);
        let unfolded: String = text.chars().filter(|&c| c != '\r' && c != '\n').collect();
        unfolded.trim().to_string()
    }
}

/// The fields of a header block (stops at the empty line).
pub fn fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    let mut current: Option<(usize, usize)> = None;
    while pos < header.len() {
        let line_end = header[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(header.len(), |i| pos + i + 1);
        let line = &header[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            if let Some((start, name_end)) = current.take() {
                out.push(Field {
                    name: &header[start..name_end],
                    raw: &header[start..pos],
                });
            }
            // A line without a colon is not a field; it is skipped.
            current = line
                .iter()
                .position(|&b| b == b':')
                .map(|colon| (pos, pos + colon));
        }
        pos = line_end;
    }
    if let Some((start, name_end)) = current {
        out.push(Field {
            name: &header[start..name_end],
            raw: &header[start..pos],
        });
    }
    out
}

/// The first field named `name` (case-insensitive), unfolded and trimmed.
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    fields(header)
        .into_iter()
        .find(|f| trim(f.name).eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| f.value())
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// The fields whose names are (or, with `exclude`, are not) in `names`, followed by the empty
/// line, as BODY[HEADER.FIELDS (...)] returns them.
pub fn filter_fields(header: &[u8], names: &[Vec<u8>], exclude: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields(header) {
        let name = trim(field.name);
        let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name));
        if listed != exclude {
            out.extend_from_slice(field.raw);
            if !field.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Parses `main; name=value; name="quoted value"` (comments in parentheses are dropped).
pub fn parse_params(value: &str) -> HeaderParams {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut comment_depth = 0u32;
    for c in value.chars() {
        if in_quotes {
            if escaped {
                current.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
                current.push('"');
            } else {
                current.push(c);
            }
            continue;
        }
        match c {
            '(' => comment_depth += 1,
            ')' if comment_depth > 0 => comment_depth -= 1,
            _ if comment_depth > 0 => {}
            '"' => {
                in_quotes = true;
                current.push('"');
            }
            ';' => segments.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    segments.push(current);
    let mut iter = segments.into_iter();
    let main = iter.next().unwrap_or_default().trim().to_string();
    let params = iter
        .filter_map(|seg| {
            let (name, value) = seg.split_once('=')?;
            let name = name.trim();
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (!name.is_empty()).then(|| (name.to_string(), value.to_string()))
        })
        .collect();
    HeaderParams { main, params }
}

/// Follows a section part path (`1.2.3`): the entity it names, if any.
pub fn resolve<'a>(root: &'a Part, path: &[u32]) -> Option<&'a Part> {
    // `holder` is the message whose body the next number indexes.
    let mut holder = root;
    let mut found: Option<&Part> = None;
    for (i, &n) in path.iter().enumerate() {
        let index = usize::try_from(n).ok()?.checked_sub(1)?;
        let part = match &holder.content {
            Content::Multipart(children) => children.get(index)?,
            // A single-part entity has exactly one part: itself.
            _ if index == 0 => holder,
            _ => return None,
        };
        found = Some(part);
        if i + 1 < path.len() {
            holder = match &part.content {
                Content::Message(inner) => inner,
                Content::Multipart(_) => part,
                Content::Leaf => return None,
            };
        }
    }
    found
}

/// Number of lines (LF count, plus one for a last line without line end).
pub fn count_lines(bytes: &[u8]) -> usize {
    let lf = bytes.iter().filter(|&&b| b == b'\n').count();
    if bytes.last().is_some_and(|&b| b != b'\n') {
        lf + 1
    } else {
        lf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const MULTI: &[u8] = b"From: A <a@x.org>\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\npreamble\r\n--BB\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n--BB\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=CC\r\n\r\n--CC\r\n\r\ninner text\r\n--CC\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--CC--\r\n\r\n--BB--\r\nepilogue\r\n";

    fn text<'a>(data: &'a [u8], r: &Range<usize>) -> &'a str {
        std::str::from_utf8(&data[r.clone()]).unwrap()
    }

    #[test]
    fn single_part_message() {
        let data = b"Subject: x\r\nX: y\r\n folded\r\n\r\nbody\r\n";
        let root = parse(data);
        assert_eq!(
            text(data, &root.header),
            "Subject: x\r\nX: y\r\n folded\r\n\r\n"
        );
        assert_eq!(text(data, &root.body), "body\r\n");
        assert!(root.is("text", "plain"));
        assert_eq!(
            header_value(&data[root.header.clone()], "x").as_deref(),
            Some("y folded")
        );
        let one = resolve(&root, &[1]).unwrap();
        assert_eq!(text(data, &one.body), "body\r\n");
        assert!(resolve(&root, &[2]).is_none());
        assert!(resolve(&root, &[1, 1]).is_none());
    }

    #[test]
    fn nested_multipart_and_message() {
        let root = parse(MULTI);
        assert!(root.is("multipart", "mixed"));
        let p1 = resolve(&root, &[1]).unwrap();
        assert_eq!(text(MULTI, &p1.body), "hello\r\nworld");
        assert_eq!(
            text(MULTI, &p1.header),
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        let p2 = resolve(&root, &[2]).unwrap();
        assert!(p2.is("message", "rfc822"));
        let Content::Message(inner) = &p2.content else {
            panic!("message/rfc822 not parsed")
        };
        assert!(inner.is("multipart", "alternative"));
        let p21 = resolve(&root, &[2, 1]).unwrap();
        assert!(p21.is("text", "plain"), "no header: default type");
        assert_eq!(text(MULTI, &p21.body), "inner text");
        let p22 = resolve(&root, &[2, 2]).unwrap();
        assert_eq!(text(MULTI, &p22.body), "<b>x</b>");
        assert!(resolve(&root, &[3]).is_none());
        assert!(resolve(&root, &[0]).is_none());
    }

    #[test]
    fn params_and_field_filters() {
        let p = parse_params("multipart/mixed; boundary=\"a;b\" ; charset=UTF-8 (comment)");
        assert_eq!(p.main, "multipart/mixed");
        assert_eq!(p.param("BOUNDARY"), Some("a;b"));
        assert_eq!(p.param("charset"), Some("UTF-8"));
        let header = b"From: a\r\nTo: b\r\n c\r\nSubject: s\r\n\r\n";
        assert_eq!(
            filter_fields(header, &[b"to".to_vec(), b"SUBJECT".to_vec()], false),
            b"To: b\r\n c\r\nSubject: s\r\n\r\n"
        );
        assert_eq!(
            filter_fields(header, &[b"to".to_vec()], true),
            b"From: a\r\nSubject: s\r\n\r\n"
        );
    }

    #[test]
    fn headerless_and_unterminated() {
        let data = b"no header at all";
        let root = parse(data);
        assert_eq!(root.body, data.len()..data.len());
        let data = b"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\na\r\n--X\r\nb";
        let root = parse(data);
        let Content::Multipart(children) = &root.content else {
            panic!("not multipart")
        };
        assert_eq!(children.len(), 2);
        assert_eq!(text(data, &children[1].header), "b");
        assert_eq!(count_lines(b"a\r\nb"), 2);
        assert_eq!(count_lines(b"a\r\n"), 1);
        assert_eq!(count_lines(b""), 0);
    }
}
