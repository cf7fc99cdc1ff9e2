//! JMAP ids (RFC 8620 §1.2: 1-255 chars of `[A-Za-z0-9_-]`), derived from what the store keeps.
//!
//! The store is IMAP-shaped (mailbox name + UID), so ids are content hashes: an email's id is
//! the hash of its bytes and internal date, which survives a move (append copy + expunge) and
//! makes IMAP copies of one message a single JMAP Email in several mailboxes. Every id starts
//! with a letter naming its type, as RFC 8620 recommends.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Length of the hash part of an email id (base64url chars).
pub const EMAIL_HASH_LEN: usize = 22;

fn hash(parts: &[&[u8]], len: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed so ("ab","c") and ("a","bc") differ.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let mut out = URL_SAFE_NO_PAD.encode(h.finalize());
    out.truncate(len);
    out
}

/// The account of a user: stable, and not the address itself (ids end up in URLs and logs).
pub fn account_id(user: &str) -> String {
    format!("a{}", hash(&[user.to_ascii_lowercase().as_bytes()], 16))
}

/// The one identity of a user.
pub fn identity_id(user: &str) -> String {
    format!(
        "i{}",
        hash(&[b"identity", user.to_ascii_lowercase().as_bytes()], 16)
    )
}

/// A mailbox incarnation: name plus UIDVALIDITY (a recreated mailbox gets a new id).
pub fn mailbox_id(name: &str, uid_validity: u32) -> String {
    format!(
        "m{}",
        hash(&[name.as_bytes(), &uid_validity.to_be_bytes()], 16)
    )
}

/// An email: its bytes and internal date.
pub fn email_id(internal_date: i64, data: &[u8]) -> String {
    format!(
        "e{}",
        hash(&[&internal_date.to_be_bytes(), data], EMAIL_HASH_LEN)
    )
}

/// Content-addressed blob id (uploads and whole messages alike).
pub fn blob_id(data: &[u8]) -> String {
    format!("b{}", hash(&[data], 43))
}

/// A MIME part of an email: `p` + the email's hash + the part index.
pub fn part_blob_id(email_id: &str, part: u32) -> String {
    format!("p{}{part}", email_id.get(1..).unwrap_or_default())
}

/// Splits a part blob id into (email id, part index).
pub fn parse_part_blob_id(blob_id: &str) -> Option<(String, u32)> {
    let rest = blob_id.strip_prefix('p')?;
    let hash = rest.get(..EMAIL_HASH_LEN)?;
    let part = rest.get(EMAIL_HASH_LEN..)?.parse().ok()?;
    Some((format!("e{hash}"), part))
}

/// A thread, keyed by its root Message-ID (or the email id when there is none).
pub fn thread_id(root: &str) -> String {
    format!("t{}", hash(&[root.as_bytes()], 16))
}

/// RFC 8620 §1.2 Id syntax.
pub fn is_valid(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_stable_and_typed() {
        let a = account_id("Alice@Example.com");
        assert_eq!(a, account_id("alice@example.com"));
        assert_ne!(a, account_id("bob@example.com"));
        let e = email_id(10, b"x");
        assert_ne!(e, email_id(11, b"x"));
        for id in [
            a,
            identity_id("a"),
            mailbox_id("INBOX", 1),
            e.clone(),
            blob_id(b"x"),
            thread_id("<a@b>"),
            part_blob_id(&e, 12),
        ] {
            assert!(is_valid(&id), "{id}");
            assert!(id.as_bytes()[0].is_ascii_lowercase(), "{id}");
        }
        assert_eq!(
            parse_part_blob_id(&part_blob_id(&e, 12)),
            Some((e.clone(), 12))
        );
        assert_eq!(parse_part_blob_id("pshort"), None);
        assert!(!is_valid(""));
        assert!(!is_valid("a b"));
        assert!(!is_valid(&"a".repeat(256)));
    }
}
