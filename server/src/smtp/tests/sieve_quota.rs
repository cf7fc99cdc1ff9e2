//! A Sieve `fileinto` counts against the quota like any copy: when the copies a script asks for
//! do not fit, the delivery fails for every recipient and nothing stays stored.

use std::sync::Arc;

use super::{REPORT, Scripts};
use crate::sieve::SieveFilter;
use crate::smtp::delivery::{DeliveryError, store_all};
use crate::store::{MailStore, MemoryStore, StoreError};

#[test]
fn fileinto_past_the_quota_fails_the_whole_delivery() {
    // Room for one copy of the report per user, not two.
    let store = MemoryStore::with_quota(Some(REPORT.len() as u64 + 10));
    let filter = SieveFilter::new(Arc::new(Scripts(vec![(
        "alice@example.com",
        "require [\"fileinto\", \"copy\"]; fileinto :copy \"Reports\";",
    )])));
    let recipients = vec![
        "bob@example.com".to_string(),
        "alice@example.com".to_string(),
    ];
    let result = store_all(
        &store,
        &filter,
        "boss@example.org",
        &recipients,
        REPORT.to_vec(),
    );
    assert!(
        matches!(
            &result,
            Err(DeliveryError::Store {
                user,
                source: StoreError::OverQuota { .. }
            }) if user == "alice@example.com"
        ),
        "{result:?}"
    );
    for user in ["alice@example.com", "bob@example.com"] {
        assert_eq!(store.usage(user), 0, "{user}: rolled back");
        assert!(store.messages(user, "INBOX").unwrap().is_empty());
    }
    // Without the second copy it fits.
    let keep_only = SieveFilter::new(Arc::new(Scripts(vec![])));
    store_all(
        &store,
        &keep_only,
        "boss@example.org",
        &recipients,
        REPORT.to_vec(),
    )
    .unwrap();
    assert_eq!(store.usage("alice@example.com"), REPORT.len() as u64);
}
