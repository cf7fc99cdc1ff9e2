//! Wire formatting of server responses: status lines, strings (quoted or literal), dates, sets.
//!
//! Responses are written by hand rather than through imap-codec's encoder because FETCH data is
//! built straight from the stored bytes; every string goes through [`string`] / [`nstring`],
//! which choose a quoted string or a literal, so client data can never break the framing.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::time::UtcFields;

/// The kind of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
        }
    }
}

/// `<tag> OK|NO|BAD [code] text`. The tag `*` gives an untagged status.
pub fn status(out: &mut Vec<u8>, tag: &str, status: Status, code: Option<&str>, text: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    if let Some(code) = code {
        out.push(b'[');
        out.extend_from_slice(code.as_bytes());
        out.extend_from_slice(b"] ");
    }
    out.extend_from_slice(sanitize(text).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `* <text>` for data responses already formatted (`* 3 EXISTS`, `* CAPABILITY ...`).
pub fn untagged(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"* ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `+ <text>` continuation request.
pub fn continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    // `+ ` alone is a valid (empty) SASL challenge, so no placeholder text here.
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Human-readable text must stay on one line and not start a response code by accident.
fn sanitize(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.is_empty() || text.starts_with('[') {
        format!("- {text}")
    } else {
        text
    }
}

/// Whether bytes can go in a quoted string (RFC 3501: 7-bit, no CR/LF/NUL; `"` and `\` escaped).
fn quotable(bytes: &[u8]) -> bool {
    bytes.len() <= 1024
        && bytes
            .iter()
            .all(|&b| (0x01..0x80).contains(&b) && b != b'\r' && b != b'\n')
}

/// A string: quoted when possible, otherwise a literal.
pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    if quotable(bytes) {
        out.push(b'"');
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, bytes);
    }
}

/// A string or NIL.
pub fn nstring(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => string(out, b),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A synchronizing literal `{n}\r\n<bytes>`.
pub fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
}

/// A string value as text, for building response lines that are known to stay quotable
/// (mailbox names); falls back to a literal inside the returned bytes otherwise.
pub fn string_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, bytes);
    out
}

/// `(\Seen \Deleted)`, plus `\Recent` when asked.
pub fn flag_list(flags: &BTreeSet<String>, recent: bool) -> String {
    let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
    if recent {
        all.push("\\Recent");
    }
    format!("({})", all.join(" "))
}

/// Compact set syntax: `1:3,7,9:10` (input need not be sorted).
pub fn sequence_set(values: &[u32]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
        i += 1;
    }
    out
}

/// `"17-Jul-1996 02:44:25 +0000"` (INTERNALDATE, always UTC).
pub fn internal_date(unix: i64) -> String {
    let t = UtcFields::of(unix);
    format!(
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        t.day, t.month, t.year, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            s(|o| status(
                o,
                "a1",
                Status::No,
                Some("AUTHENTICATIONFAILED"),
                "Authentication failed."
            )),
            "a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        );
        assert_eq!(
            s(|o| status(o, "*", Status::Ok, None, "x\r\ny")),
            "* OK x  y\r\n"
        );
        assert_eq!(
            s(|o| status(o, "t", Status::Bad, None, "[x]")),
            "t BAD - [x]\r\n"
        );
        assert_eq!(s(|o| continuation(o, "")), "+ \r\n");
    }

    #[test]
    fn strings_are_quoted_or_literal() {
        assert_eq!(s(|o| string(o, b"hello")), "\"hello\"");
        assert_eq!(s(|o| string(o, b"a\"b\\c")), "\"a\\\"b\\\\c\"");
        assert_eq!(s(|o| string(o, b"a\r\nb")), "{4}\r\na\r\nb");
        assert_eq!(s(|o| string(o, "é".as_bytes())), "{2}\r\né");
        assert_eq!(s(|o| nstring(o, None)), "NIL");
        assert_eq!(s(|o| string(o, b"")), "\"\"");
    }

    #[test]
    fn sets_and_flags() {
        assert_eq!(sequence_set(&[5, 1, 2, 3, 9, 10, 3]), "1:3,5,9:10");
        assert_eq!(sequence_set(&[]), "");
        let flags: BTreeSet<String> = ["\\Seen".to_string(), "\\Answered".to_string()].into();
        assert_eq!(flag_list(&flags, true), "(\\Answered \\Seen \\Recent)");
        assert_eq!(flag_list(&BTreeSet::new(), false), "()");
    }

    #[test]
    fn internal_dates() {
        assert_eq!(internal_date(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(internal_date(837_571_465), "\"17-Jul-1996 02:44:25 +0000\"");
        assert_eq!(internal_date(951_782_400), "\"29-Feb-2000 00:00:00 +0000\"");
        assert_eq!(internal_date(-1), "\"31-Dec-1969 23:59:59 +0000\"");
    }
}
