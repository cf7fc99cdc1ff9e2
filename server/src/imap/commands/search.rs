//! SEARCH and UID SEARCH.

use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::datetime::NaiveDate;
use imap_codec::imap_types::search::SearchKey;
use mail_parser::{HeaderValue, MessageParser};

use crate::imap::mime;
use crate::imap::selected::contains;
use crate::imap::session::{Event, HeavyFinish, Next, Session};
use crate::store::StoredMessage;
use imap_codec::imap_types::ToStatic as _;

/// Deepest NOT/OR/AND nesting evaluated; imap-codec already bounds recursion while parsing.
const MAX_DEPTH: usize = 64;

/// One message being tested, with what is parsed lazily.
struct Candidate<'a> {
    seq: u32,
    msg: &'a StoredMessage,
    recent: bool,
    /// Number of messages (for `*` in sequence sets) and largest UID.
    largest_seq: u32,
    largest_uid: u32,
    header: Option<Vec<u8>>,
    decoded_text: Option<String>,
}

impl<'a> Candidate<'a> {
    fn header(&mut self) -> &[u8] {
        let data = self.msg.data.as_slice();
        self.header.get_or_insert_with(|| {
            let (header, _) = mime::split_header(data, 0..data.len());
            data[header].to_vec()
        })
    }

    fn body(&self) -> &'a [u8] {
        let data = self.msg.data.as_slice();
        let (_, body) = mime::split_header(data, 0..data.len());
        &data[body]
    }

    /// Text bodies decoded from their transfer encodings (QP, base64), for BODY/TEXT.
    fn decoded_text(&mut self) -> &str {
        let data = self.msg.data.as_slice();
        self.decoded_text.get_or_insert_with(|| {
            MessageParser::default()
                .parse(data)
                .map(|m| {
                    m.text_bodies()
                        .chain(m.html_bodies())
                        .filter_map(|p| p.text_contents())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        })
    }

    /// Values of a header field: raw (unfolded) and decoded (encoded words, addresses).
    fn header_values(&mut self, name: &str) -> Vec<String> {
        let header = self.header().to_vec();
        let mut values: Vec<String> = mime::fields(&header)
            .into_iter()
            .filter(|f| f.name.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| f.value())
            .collect();
        if let Some(parsed) = MessageParser::default().parse_headers(&header) {
            for h in parsed.headers() {
                if h.name().eq_ignore_ascii_case(name) {
                    values.push(header_text(h.value()));
                }
            }
        }
        values
    }

    fn flag(&self, flag: &str) -> bool {
        self.msg.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }

    /// Whether the Date: header's date (in its own time zone) compares as asked.
    fn sent_day(&mut self) -> Option<i64> {
        let date = self.header_values("Date").into_iter().next()?;
        let parsed = mail_parser::DateTime::parse_rfc822(&date)?;
        Some(parsed.to_timestamp_local().div_euclid(86_400))
    }
}

fn header_text(value: &HeaderValue<'_>) -> String {
    match value {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(list) => list.join(" "),
        HeaderValue::Address(addr) => addr
            .iter()
            .flat_map(|a| [a.name.as_deref(), a.address.as_deref()])
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Case-insensitive substring test (ASCII fast path on bytes, Unicode lower-casing on text).
fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.is_ascii() {
        return haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle));
    }
    let h = String::from_utf8_lossy(haystack).to_lowercase();
    let n = String::from_utf8_lossy(needle).to_lowercase();
    h.contains(&n)
}

fn day_of(date: &NaiveDate) -> Option<i64> {
    let start = date.as_ref().and_hms_opt(0, 0, 0)?;
    Some(start.and_utc().timestamp().div_euclid(86_400))
}

fn matches(key: &SearchKey<'_>, c: &mut Candidate<'_>, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let internal_day = c.msg.internal_date.div_euclid(86_400);
    let size = c.msg.data.len() as u64;
    let field = |c: &mut Candidate<'_>, name: &str, value: &[u8]| {
        c.header_values(name)
            .iter()
            .any(|v| contains_ci(v.as_bytes(), value))
    };
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, c, depth + 1)),
        SearchKey::Or(a, b) => matches(a, c, depth + 1) || matches(b, c, depth + 1),
        SearchKey::Not(k) => !matches(k, c, depth + 1),
        SearchKey::All => true,
        SearchKey::SequenceSet(set) => set
            .0
            .as_ref()
            .iter()
            .any(|s| contains(s, c.seq, c.largest_seq)),
        SearchKey::Uid(set) => set
            .0
            .as_ref()
            .iter()
            .any(|s| contains(s, c.msg.uid, c.largest_uid)),
        SearchKey::Answered => c.flag("\\Answered"),
        SearchKey::Unanswered => !c.flag("\\Answered"),
        SearchKey::Deleted => c.flag("\\Deleted"),
        SearchKey::Undeleted => !c.flag("\\Deleted"),
        SearchKey::Draft => c.flag("\\Draft"),
        SearchKey::Undraft => !c.flag("\\Draft"),
        SearchKey::Flagged => c.flag("\\Flagged"),
        SearchKey::Unflagged => !c.flag("\\Flagged"),
        SearchKey::Seen => c.flag("\\Seen"),
        SearchKey::Unseen => !c.flag("\\Seen"),
        SearchKey::Keyword(k) => c.flag(k.inner()),
        SearchKey::Unkeyword(k) => !c.flag(k.inner()),
        SearchKey::Recent => c.recent,
        SearchKey::Old => !c.recent,
        SearchKey::New => c.recent && !c.flag("\\Seen"),
        SearchKey::Larger(n) => size > u64::from(*n),
        SearchKey::Smaller(n) => size < u64::from(*n),
        SearchKey::Before(d) => day_of(d).is_some_and(|d| internal_day < d),
        SearchKey::On(d) => day_of(d).is_some_and(|d| internal_day == d),
        SearchKey::Since(d) => day_of(d).is_some_and(|d| internal_day >= d),
        SearchKey::SentBefore(d) => matches_sent(c, d, |sent, d| sent < d),
        SearchKey::SentOn(d) => matches_sent(c, d, |sent, d| sent == d),
        SearchKey::SentSince(d) => matches_sent(c, d, |sent, d| sent >= d),
        SearchKey::From(v) => field(c, "From", v.as_ref()),
        SearchKey::To(v) => field(c, "To", v.as_ref()),
        SearchKey::Cc(v) => field(c, "Cc", v.as_ref()),
        SearchKey::Bcc(v) => field(c, "Bcc", v.as_ref()),
        SearchKey::Subject(v) => field(c, "Subject", v.as_ref()),
        SearchKey::Header(name, value) => {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            let values = c.header_values(&name);
            // An empty value matches every message that has the field.
            !values.is_empty()
                && values
                    .iter()
                    .any(|v| contains_ci(v.as_bytes(), value.as_ref()))
        }
        SearchKey::Body(v) => body_contains(c, v.as_ref()),
        SearchKey::Text(v) => contains_ci(c.header(), v.as_ref()) || body_contains(c, v.as_ref()),
        // RFC 7162 3.1.5: per-flag entries are not kept apart, the message's modseq counts.
        SearchKey::ModSequence { modseq, .. } => c.msg.modseq >= *modseq,
        // Extensions not offered (WITHIN) never match; they exist only when another crate of
        // the build turns those imap-types features on.
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

fn body_contains(c: &mut Candidate<'_>, needle: &[u8]) -> bool {
    contains_ci(c.body(), needle) || contains_ci(c.decoded_text().as_bytes(), needle)
}

fn matches_sent(c: &mut Candidate<'_>, date: &NaiveDate, cmp: fn(i64, i64) -> bool) -> bool {
    match (c.sent_day(), day_of(date)) {
        (Some(sent), Some(day)) => cmp(sent, day),
        _ => false,
    }
}

/// What a SEARCH job needs of the session's view of the mailbox, owned so it can run elsewhere.
struct View {
    /// UIDs by sequence number (index + 1).
    uids: Vec<u32>,
    recent: std::collections::BTreeSet<u32>,
}

/// Evaluates `criteria` over `messages` as the client sees them; the untagged SEARCH response.
fn search_response(
    messages: &[StoredMessage],
    view: &View,
    criteria: &[SearchKey<'_>],
    uid: bool,
) -> Vec<u8> {
    let largest_seq = u32::try_from(view.uids.len()).unwrap_or(u32::MAX);
    let largest_uid = view.uids.last().copied().unwrap_or(0);
    let mut found = Vec::new();
    let mut highest = 0;
    for msg in messages {
        // Only messages the client knows have sequence numbers.
        let Ok(index) = view.uids.binary_search(&msg.uid) else {
            continue;
        };
        let mut c = Candidate {
            seq: u32::try_from(index + 1).unwrap_or(u32::MAX),
            msg,
            recent: view.recent.contains(&msg.uid),
            largest_seq,
            largest_uid,
            header: None,
            decoded_text: None,
        };
        if criteria.iter().all(|k| matches(k, &mut c, 0)) {
            found.push(if uid { msg.uid } else { c.seq });
            highest = highest.max(msg.modseq);
        }
    }
    let list: Vec<String> = found.iter().map(u32::to_string).collect();
    let line = if list.is_empty() {
        "SEARCH".to_string()
    } else if criteria.iter().any(uses_modseq) {
        // RFC 7162 3.1.5: the highest modseq of the messages found.
        format!("SEARCH {} (MODSEQ {highest})", list.join(" "))
    } else {
        format!("SEARCH {}", list.join(" "))
    };
    let mut out = Vec::new();
    crate::imap::response::untagged(&mut out, &line);
    out
}

/// Whether a search key holds a MODSEQ criterion anywhere.
fn uses_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(k) => uses_modseq(k),
        _ => false,
    }
}

impl Session {
    /// SEARCH. Parsing and decoding every message is the heavy part: it runs as an
    /// [`Event::Heavy`] off the async workers.
    pub(in crate::imap) fn search(
        &mut self,
        tag: &str,
        charset: Option<&Charset<'_>>,
        criteria: &[SearchKey<'_>],
        uid: bool,
    ) -> Next {
        if let Some(cs) = charset {
            let name: &str = cs.as_ref();
            if !name.eq_ignore_ascii_case("US-ASCII") && !name.eq_ignore_ascii_case("UTF-8") {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, charset = name, "IMAP SEARCH charset refused");
                }
                self.no_code(tag, "BADCHARSET (US-ASCII UTF-8)", "Unsupported charset.");
                return Next::Continue;
            }
        }
        let (Some(user), Some(sel)) = (self.user.clone(), self.selected.as_ref()) else {
            self.bad(tag, "No mailbox selected.");
            return Next::Continue;
        };
        let view = View {
            uids: sel.uids.clone(),
            recent: sel.recent.clone(),
        };
        let mailbox = sel.name.clone();
        if criteria.iter().any(uses_modseq) {
            self.enable_condstore();
        }
        let criteria: Vec<SearchKey<'static>> = criteria.iter().map(|k| k.to_static()).collect();
        let store = self.ctx.store.clone();
        self.heavy = Some(HeavyFinish::Search {
            tag: tag.to_string(),
            uid,
        });
        Next::Event(Event::Heavy(Box::new(move || {
            match store.messages(&user, &mailbox) {
                Ok(messages) => search_response(&messages, &view, &criteria, uid),
                // Vanished meanwhile: nothing matches; the sync that follows reports the rest.
                Err(_) => search_response(&[], &view, &criteria, uid),
            }
        })))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;

    fn msg(data: &[u8], flags: &[&str], date: i64) -> StoredMessage {
        StoredMessage {
            uid: 7,
            flags: flags.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
            internal_date: date,
            data: Arc::new(data.to_vec()),
            modseq: 1,
        }
    }

    fn check(key: &str, m: &StoredMessage) -> bool {
        // Parse the key through a whole SEARCH command, as clients send it.
        let line = format!("a SEARCH {key}\r\n");
        let (_, cmd) = imap_codec::decode::Decoder::decode(
            &imap_codec::CommandCodec::default(),
            line.as_bytes(),
        )
        .unwrap();
        let imap_codec::imap_types::command::CommandBody::Search { criteria, .. } = cmd.body else {
            panic!("not a search")
        };
        let mut c = Candidate {
            seq: 1,
            msg: m,
            recent: false,
            largest_seq: 1,
            largest_uid: 7,
            header: None,
            decoded_text: None,
        };
        criteria.as_ref().iter().all(|k| matches(k, &mut c, 0))
    }

    #[test]
    fn keys() {
        let data = b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= hello\r\nDate: Tue, 02 Jan 2024 10:00:00 +0100\r\nX-Tag: blue\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSome b=C3=B6dy text\r\n";
        // 2024-01-03 12:00 UTC
        let m = msg(data, &["\\Seen", "$Work"], 1_704_283_200);
        assert!(check("ALL", &m));
        assert!(check("SEEN", &m));
        assert!(!check("UNSEEN", &m));
        assert!(check("KEYWORD $work", &m));
        assert!(check("FROM alice", &m));
        assert!(check("FROM ALICE@EXAMPLE", &m));
        assert!(!check("FROM carol", &m));
        assert!(check("SUBJECT hello", &m));
        assert!(check("SUBJECT {7}\r\ngrüße", &m), "decoded encoded word");
        assert!(check("HEADER X-Tag blu", &m));
        assert!(check("HEADER X-Tag \"\"", &m));
        assert!(!check("HEADER X-Other \"\"", &m));
        assert!(check("BODY \"some\"", &m));
        assert!(check("BODY {5}\r\nbödy", &m), "decoded quoted-printable");
        assert!(check("TEXT alice", &m));
        assert!(check("SINCE 3-Jan-2024", &m));
        assert!(check("ON 3-Jan-2024", &m));
        assert!(!check("BEFORE 3-Jan-2024", &m));
        assert!(check("SENTON 2-Jan-2024", &m));
        assert!(check("SENTBEFORE 3-Jan-2024", &m));
        assert!(check("LARGER 10", &m));
        assert!(!check("SMALLER 10", &m));
        assert!(check("OR FROM carol TO bob", &m));
        assert!(check("NOT DELETED", &m));
        assert!(check("UID 1:*", &m));
        assert!(check("UID 7", &m));
        assert!(!check("UID 8", &m));
        assert!(check("1", &m));
        assert!(check("(SEEN FROM alice)", &m));
        assert!(!check("NEW", &m));
        assert!(check("OLD", &m));
    }
}
