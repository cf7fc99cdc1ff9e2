//! Email/query (RFC 8621 §4.4): filters, sorts, collapseThreads, paging.

use std::cell::OnceCell;
use std::cmp::Ordering;
use std::collections::HashSet;

use mail_parser::{DateTime, Message, PartType};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::jmap::error::MethodError;
use crate::jmap::methods::{Call, Comparator, Filter, Paging, page, parse_args};
use crate::jmap::view::{EmailView, Snapshot, parse_message, valid_keyword};

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
    #[serde(default)]
    collapse_threads: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    InMailbox(String),
    InMailboxOtherThan(Vec<String>),
    Before(i64),
    After(i64),
    MinSize(u64),
    MaxSize(u64),
    AllInThreadHaveKeyword(String),
    SomeInThreadHaveKeyword(String),
    NoneInThreadHaveKeyword(String),
    HasKeyword(String),
    NotKeyword(String),
    HasAttachment(bool),
    Text(String),
    From(String),
    To(String),
    Cc(String),
    Bcc(String),
    Subject(String),
    Body(String),
    Header(String, Option<String>),
}

/// RFC 3339 date -> Unix seconds.
pub fn parse_date(s: &str) -> Option<i64> {
    DateTime::parse_rfc3339(s)
        .filter(|d| d.is_valid())
        .map(|d| d.to_timestamp())
}

fn parse_cond(m: &Map<String, Value>) -> Result<Vec<Cond>, MethodError> {
    let mut out = Vec::new();
    for (k, v) in m {
        let bad = || MethodError::invalid_arguments(format!("bad value for filter {k:?}"));
        let text = || v.as_str().map(str::to_lowercase).ok_or_else(bad);
        let keyword = || {
            v.as_str()
                .filter(|s| valid_keyword(s))
                .map(str::to_ascii_lowercase)
                .ok_or_else(bad)
        };
        let date = || v.as_str().and_then(parse_date).ok_or_else(bad);
        let c = match k.as_str() {
            "inMailbox" => Cond::InMailbox(v.as_str().ok_or_else(bad)?.to_string()),
            "inMailboxOtherThan" => {
                Cond::InMailboxOtherThan(serde_json::from_value(v.clone()).map_err(|_| bad())?)
            }
            "before" => Cond::Before(date()?),
            "after" => Cond::After(date()?),
            "minSize" => Cond::MinSize(v.as_u64().ok_or_else(bad)?),
            "maxSize" => Cond::MaxSize(v.as_u64().ok_or_else(bad)?),
            "allInThreadHaveKeyword" => Cond::AllInThreadHaveKeyword(keyword()?),
            "someInThreadHaveKeyword" => Cond::SomeInThreadHaveKeyword(keyword()?),
            "noneInThreadHaveKeyword" => Cond::NoneInThreadHaveKeyword(keyword()?),
            "hasKeyword" => Cond::HasKeyword(keyword()?),
            "notKeyword" => Cond::NotKeyword(keyword()?),
            "hasAttachment" => Cond::HasAttachment(v.as_bool().ok_or_else(bad)?),
            "text" => Cond::Text(text()?),
            "from" => Cond::From(text()?),
            "to" => Cond::To(text()?),
            "cc" => Cond::Cc(text()?),
            "bcc" => Cond::Bcc(text()?),
            "subject" => Cond::Subject(text()?),
            "body" => Cond::Body(text()?),
            "header" => {
                let list: Vec<String> = serde_json::from_value(v.clone()).map_err(|_| bad())?;
                match list.as_slice() {
                    [name] => Cond::Header(name.clone(), None),
                    [name, value] => Cond::Header(name.clone(), Some(value.to_lowercase())),
                    _ => return Err(bad()),
                }
            }
            other => {
                return Err(MethodError::unsupported_filter(format!(
                    "unknown Email filter {other:?}"
                )));
            }
        };
        out.push(c);
    }
    Ok(out)
}

/// One email being matched, with what its conditions need parsed once: a filter may test the
/// body many times, and parsing the message is the expensive part.
struct Candidate<'a> {
    e: &'a EmailView,
    parsed: OnceCell<Option<Message<'a>>>,
    body: OnceCell<String>,
}

impl<'a> Candidate<'a> {
    fn new(e: &'a EmailView) -> Self {
        Self {
            e,
            parsed: OnceCell::new(),
            body: OnceCell::new(),
        }
    }

    fn message(&self) -> Option<&Message<'a>> {
        self.parsed
            .get_or_init(|| parse_message(self.e.meta.data.as_slice()))
            .as_ref()
    }

    /// Lower-case decoded text of the text parts (for `body` and `text`).
    fn body_text(&self) -> &str {
        self.body.get_or_init(|| {
            let mut out = String::new();
            for part in self
                .message()
                .map(|m| m.parts.as_slice())
                .unwrap_or_default()
            {
                if let PartType::Text(t) | PartType::Html(t) = &part.body {
                    out.push_str(&t.to_lowercase());
                    out.push('\n');
                }
            }
            out
        })
    }

    fn header_matches(&self, name: &str, value: Option<&str>) -> bool {
        let Some(msg) = self.message() else {
            return false;
        };
        msg.headers_raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, v)| value.is_none_or(|want| v.to_lowercase().contains(want)))
    }
}

fn thread_keyword(snap: &Snapshot, e: &EmailView, kw: &str) -> (bool, bool) {
    let ids = snap.threads.get(&e.meta.thread_id);
    let members = ids
        .into_iter()
        .flatten()
        .filter_map(|id| snap.emails.get(id));
    let mut all = true;
    let mut some = false;
    for m in members {
        let has = m.keywords.contains(kw);
        all &= has;
        some |= has;
    }
    (all, some)
}

fn cond_matches(snap: &Snapshot, c: &Candidate<'_>, conds: &[Cond]) -> bool {
    let e = c.e;
    let m = &e.meta;
    conds.iter().all(|cond| match cond {
        Cond::InMailbox(id) => e.copies.iter().any(|c| c.mailbox_id == *id),
        Cond::InMailboxOtherThan(ids) => e.copies.iter().any(|c| !ids.contains(&c.mailbox_id)),
        Cond::Before(t) => m.received_at < *t,
        Cond::After(t) => m.received_at >= *t,
        Cond::MinSize(s) => m.size as u64 >= *s,
        Cond::MaxSize(s) => (m.size as u64) < *s,
        Cond::AllInThreadHaveKeyword(k) => thread_keyword(snap, e, k).0,
        Cond::SomeInThreadHaveKeyword(k) => thread_keyword(snap, e, k).1,
        Cond::NoneInThreadHaveKeyword(k) => !thread_keyword(snap, e, k).1,
        Cond::HasKeyword(k) => e.keywords.contains(k),
        Cond::NotKeyword(k) => !e.keywords.contains(k),
        Cond::HasAttachment(b) => m.has_attachment == *b,
        Cond::From(t) => m.from.contains(t.as_str()),
        Cond::To(t) => m.to.contains(t.as_str()),
        Cond::Cc(t) => m.cc.contains(t.as_str()),
        Cond::Bcc(t) => m.bcc.contains(t.as_str()),
        Cond::Subject(t) => m.subject.to_lowercase().contains(t.as_str()),
        Cond::Body(t) => c.body_text().contains(t.as_str()),
        Cond::Text(t) => {
            let t = t.as_str();
            m.subject.to_lowercase().contains(t)
                || m.from.contains(t)
                || m.to.contains(t)
                || m.cc.contains(t)
                || m.bcc.contains(t)
                || c.body_text().contains(t)
        }
        Cond::Header(name, value) => c.header_matches(name, value.as_deref()),
    })
}

/// RFC 5256 base subject, roughly: leading `Re:`/`Fwd:`/`Fw:` dropped, lower case.
fn base_subject(s: &str) -> String {
    let mut s = s.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        let cut = ["re:", "fwd:", "fw:"]
            .iter()
            .find(|p| lower.starts_with(*p))
            .map(|p| p.len());
        match cut {
            Some(n) => s = s[n..].trim_start(),
            None => return s.to_lowercase(),
        }
    }
}

const SORTS: [&str; 9] = [
    "receivedAt",
    "size",
    "from",
    "to",
    "subject",
    "sentAt",
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
];

fn compare(snap: &Snapshot, a: &EmailView, b: &EmailView, c: &Comparator) -> Ordering {
    let kw = c.keyword.as_deref().unwrap_or_default();
    match c.property.as_str() {
        "size" => a.meta.size.cmp(&b.meta.size),
        "from" => a.meta.from_sort.cmp(&b.meta.from_sort),
        "to" => a.meta.to_sort.cmp(&b.meta.to_sort),
        "subject" => base_subject(&a.meta.subject).cmp(&base_subject(&b.meta.subject)),
        "sentAt" => a.meta.sent_at.cmp(&b.meta.sent_at),
        "hasKeyword" => a.keywords.contains(kw).cmp(&b.keywords.contains(kw)),
        "allInThreadHaveKeyword" => thread_keyword(snap, a, kw)
            .0
            .cmp(&thread_keyword(snap, b, kw).0),
        "someInThreadHaveKeyword" => thread_keyword(snap, a, kw)
            .1
            .cmp(&thread_keyword(snap, b, kw).1),
        _ => a.meta.received_at.cmp(&b.meta.received_at),
    }
}

pub async fn query(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: QueryArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    let filter = args
        .filter
        .as_ref()
        .map(|f| Filter::parse(f, &parse_cond, call.filter_caps()))
        .transpose()?;
    let sort = args.sort.unwrap_or_else(|| {
        vec![Comparator {
            property: "receivedAt".into(),
            is_ascending: false,
            collation: None,
            keyword: None,
        }]
    });
    for c in &sort {
        if !SORTS.contains(&c.property.as_str()) {
            return Err(MethodError::unsupported_sort(format!(
                "cannot sort emails by {:?}",
                c.property
            )));
        }
        if c.property.contains("eyword") && !c.keyword.as_deref().is_some_and(valid_keyword) {
            return Err(MethodError::invalid_arguments(format!(
                "sort by {} needs a valid keyword",
                c.property
            )));
        }
        if let Some(col) = &c.collation
            && !matches!(
                col.as_str(),
                "i;ascii-casemap" | "i;unicode-casemap" | "i;ascii-numeric"
            )
        {
            return Err(MethodError::unsupported_sort(format!(
                "unsupported collation {col:?}"
            )));
        }
    }
    let (snap, states) = call.refresh();
    // Filtering and sorting touch every message (body conditions parse each one): a heavy job,
    // run on the offload pool as IMAP SEARCH is, never on the async workers.
    let collapse = args.collapse_threads;
    let ids = call
        .ctx
        .offload
        .run(move || matching_ids(&snap, filter.as_ref(), &sort, collapse))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "Email/query job failed");
            MethodError::server_unavailable("the query could not be run")
        })?;
    let paging = Paging {
        position: args.position,
        anchor: args.anchor,
        anchor_offset: args.anchor_offset,
        limit: args.limit,
        calculate_total: args.calculate_total,
    };
    let mut out = page(call, ids, &paging, call.state(states.email))?;
    out["collapseThreads"] = Value::Bool(collapse);
    Ok(out)
}

/// The ids of the emails that match `filter`, in `sort` order, one per thread if `collapse`.
fn matching_ids(
    snap: &Snapshot,
    filter: Option<&Filter<Vec<Cond>>>,
    sort: &[Comparator],
    collapse: bool,
) -> Vec<String> {
    let mut list: Vec<&EmailView> = snap
        .emails
        .values()
        .filter(|e| {
            let candidate = Candidate::new(e);
            filter.is_none_or(|f| f.matches(&|c| cond_matches(snap, &candidate, c)))
        })
        .collect();
    list.sort_by(|a, b| {
        for c in sort {
            let ord = compare(snap, a, b, c);
            let ord = if c.is_ascending { ord } else { ord.reverse() };
            if ord.is_ne() {
                return ord;
            }
        }
        a.id().cmp(b.id())
    });
    if collapse {
        let mut seen = HashSet::new();
        list.retain(|e| seen.insert(e.meta.thread_id.clone()));
    }
    list.into_iter().map(|e| e.id().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        assert_eq!(base_subject("Re: Fwd: RE:  Hello"), "hello");
        assert_eq!(base_subject("hello"), "hello");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01T00:00:10Z"), Some(10));
        assert_eq!(parse_date("2023-11-14T23:13:20+01:00"), Some(1_700_000_000));
        assert_eq!(parse_date("yesterday"), None);
    }
}
