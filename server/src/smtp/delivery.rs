//! Local delivery: trace headers, then each recipient's Sieve script (if active) says which
//! mailboxes get a copy, INBOX otherwise. Every copy shares one `Arc` of the bytes. All or
//! nothing: if one append fails, the copies already stored are expunged so a retry cannot
//! duplicate them. That includes a recipient's quota: when the message does not fit one of
//! several recipients, nobody gets it and the client sees `552 5.2.2`, so mail is never
//! acknowledged for some and silently dropped for others.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::sieve::SieveFilter;
use crate::store::{MailStore, StoreError};
use crate::time::now_unix;
// Re-exported: the JMAP submission code formats its `Date:` through this path.
pub use crate::time::rfc2822_date;

use super::command::ReversePath;

/// A message accepted by DATA, ready for delivery.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: ReversePath,
    /// Canonical user names from the directory, without duplicates.
    pub recipients: Vec<String>,
    /// The exact submitted bytes (unstuffed, CRLF line ends).
    pub message: Vec<u8>,
    pub trace: Trace,
}

/// What the `Received:` header says about the session.
#[derive(Debug, Clone)]
pub struct Trace {
    /// EHLO/HELO argument.
    pub helo: String,
    pub peer: Option<SocketAddr>,
    /// RFC 3848 `with` keyword: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA.
    pub protocol: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("storing for {user} failed: {source}")]
    Store { user: String, source: StoreError },
    #[error("delivery task failed: {0}")]
    Task(String),
}

/// RFC 3848 `with` keyword.
pub fn protocol_keyword(esmtp: bool, tls: bool, authenticated: bool) -> &'static str {
    match (esmtp, tls, authenticated) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    }
}

/// A fresh queue id (reply text and `Received:` header): 16 upper-case hex digits.
pub fn new_queue_id() -> String {
    format!("{:016X}", rand::random::<u64>())
}

/// `Return-Path:` and `Received:` headers, each on one line (tests strip exactly two lines).
pub fn trace_headers(envelope: &Envelope, hostname: &str, id: &str, now_unix: i64) -> Vec<u8> {
    let peer = match envelope.trace.peer.map(|p| p.ip()) {
        Some(IpAddr::V4(ip)) => format!("[{ip}]"),
        Some(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
        None => "[unknown]".to_string(),
    };
    let helo = sanitize(&envelope.trace.helo);
    format!(
        "Return-Path: {}\r\nReceived: from {helo} ({peer}) by {hostname} with {} id {id}; {}\r\n",
        envelope.from,
        envelope.trace.protocol,
        rfc2822_date(now_unix)
    )
    .into_bytes()
}

/// HELO names are client-chosen; keep the header parseable whatever they contain.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && !"()<>;\\\"".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Delivers to every recipient; returns the queue id once every copy is stored.
pub async fn deliver(
    store: Arc<dyn MailStore>,
    filter: Arc<SieveFilter>,
    hostname: &str,
    envelope: Envelope,
) -> Result<String, DeliveryError> {
    let id = new_queue_id();
    let now = now_unix();
    let mut data = trace_headers(&envelope, hostname, &id, now);
    data.extend_from_slice(&envelope.message);
    let recipients = envelope.recipients;
    let from = match &envelope.from {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(m) => m.clone(),
    };
    // The store trait is synchronous, a persistent store may block on disk, and scripts are
    // CPU work.
    tokio::task::spawn_blocking(move || {
        store_all(store.as_ref(), &filter, &from, &recipients, data)
    })
    .await
    .map_err(|e| DeliveryError::Task(e.to_string()))??;
    Ok(id)
}

/// Stores `data` for each recipient where their script files it (INBOX without one), rolling
/// back on the first failure. A mailbox a script names that does not exist yet is created.
pub fn store_all(
    store: &dyn MailStore,
    filter: &SieveFilter,
    from: &str,
    recipients: &[String],
    data: Vec<u8>,
) -> Result<(), DeliveryError> {
    // One copy of the bytes for every recipient and mailbox.
    let data = Arc::new(data);
    let mut stored: Vec<(&str, String, u32)> = Vec::with_capacity(recipients.len());
    for user in recipients {
        store.ensure_user(user);
        for placement in filter.placements(user, from, &data) {
            let flags: BTreeSet<String> = placement.flags.into_iter().collect();
            let result = ensure_mailbox(store, user, &placement.mailbox).and_then(|mailbox| {
                store
                    .append_shared(user, &mailbox, data.clone(), flags, None)
                    .map(|uid| (mailbox, uid))
            });
            match result {
                Ok((mailbox, uid)) => stored.push((user, mailbox, uid)),
                Err(source) => {
                    for (done, mailbox, uid) in stored {
                        if let Err(e) = store.expunge(done, &mailbox, &[uid]) {
                            tracing::error!(user = done, mailbox, uid, error = %e, "rollback of partial delivery failed");
                        }
                    }
                    return Err(DeliveryError::Store {
                        user: user.clone(),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The mailbox a copy goes to: `mailbox`, created if it does not exist; INBOX when the name is
/// one the store refuses (a script's typo must not make mail undeliverable).
fn ensure_mailbox(store: &dyn MailStore, user: &str, mailbox: &str) -> Result<String, StoreError> {
    if mailbox.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    if store.list_mailboxes(user).iter().any(|m| m == mailbox) {
        return Ok(mailbox.to_string());
    }
    match store.create_mailbox(user, mailbox) {
        Ok(()) => {
            tracing::info!(
                user,
                mailbox,
                "created the mailbox a sieve script files into"
            );
            Ok(mailbox.to_string())
        }
        Err(StoreError::MailboxExists(_)) => Ok(mailbox.to_string()),
        Err(StoreError::InvalidName(_)) => {
            tracing::warn!(
                user,
                mailbox,
                "sieve script files into an invalid mailbox name; kept in INBOX"
            );
            Ok("INBOX".into())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc2822_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc2822_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
        assert_eq!(rfc2822_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc2822_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
    }

    #[test]
    fn trace_header_lines() {
        let envelope = Envelope {
            from: ReversePath::Mailbox("a@example.com".into()),
            recipients: vec!["b@example.com".into()],
            message: b"x".to_vec(),
            trace: Trace {
                helo: "client (evil)\r\nX: y".into(),
                peer: Some("127.0.0.1:2525".parse().unwrap()),
                protocol: protocol_keyword(true, true, true),
            },
        };
        let headers = trace_headers(&envelope, "mx.example.com", "ABC", 0);
        assert_eq!(
            String::from_utf8(headers).unwrap(),
            "Return-Path: <a@example.com>\r\nReceived: from client__evil___X:_y ([127.0.0.1]) \
             by mx.example.com with ESMTPSA id ABC; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
        let v6 = Envelope {
            from: ReversePath::Null,
            trace: Trace {
                peer: Some("[::1]:25".parse().unwrap()),
                helo: "h".into(),
                protocol: "SMTP",
            },
            ..envelope
        };
        let text = String::from_utf8(trace_headers(&v6, "h", "I", 0)).unwrap();
        assert!(
            text.starts_with("Return-Path: <>\r\nReceived: from h ([IPv6:::1]) by h with SMTP")
        );
    }

    #[test]
    fn queue_ids_are_hex() {
        let id = new_queue_id();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
