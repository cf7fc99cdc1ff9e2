//! StateChange push (RFC 8620 §7.1), shared by the WebSocket (RFC 8887) and EventSource
//! endpoints: wait for a store event of the user, refresh the tracker, report the types whose
//! state moved. Submissions and IMAP mailbox creation send no store event, so they are pushed
//! with the next mail change only.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast::{self, error::RecvError};

use super::JmapContext;
use super::api::Caller;
use super::state::{States, Tracker};
use crate::store::{MailStore, StoreEvent};

pub struct PushStream {
    rx: broadcast::Receiver<StoreEvent>,
    tracker: Arc<Tracker>,
    store: Arc<dyn MailStore>,
    account_id: String,
    /// None = every type.
    types: Option<BTreeSet<String>>,
    last: States,
}

/// `*` or absent = all types; otherwise the listed ones.
pub fn parse_types(list: Option<Vec<String>>) -> Option<BTreeSet<String>> {
    let list = list?;
    if list.iter().any(|t| t == "*") {
        None
    } else {
        Some(list.into_iter().collect())
    }
}

impl PushStream {
    pub fn new(ctx: &JmapContext, caller: &Caller, types: Option<BTreeSet<String>>) -> Self {
        let tracker = ctx.tracker(&caller.user);
        // Subscribe before reading the states, so no change falls in between.
        let rx = ctx.store.subscribe(&caller.user);
        let (_, last) = tracker.refresh(ctx.store.as_ref());
        Self {
            rx,
            tracker,
            store: ctx.store.clone(),
            account_id: caller.account_id.clone(),
            types,
            last,
        }
    }

    fn entries(&self, s: &States) -> Vec<(&'static str, u64)> {
        vec![
            ("Mailbox", s.mailbox),
            ("Email", s.email),
            ("Thread", s.thread),
            ("EmailDelivery", s.email_delivery),
            ("EmailSubmission", s.submission),
        ]
    }

    fn wanted(&self, name: &str) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains(name))
    }

    fn push_state(&self, s: &States) -> String {
        let max = self
            .entries(s)
            .into_iter()
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0);
        self.tracker.state_string(max)
    }

    fn state_change(&self, changed: Map<String, Value>, s: &States) -> Value {
        json!({
            "@type": "StateChange",
            "changed": {self.account_id.as_str(): changed},
            "pushState": self.push_state(s),
        })
    }

    /// The current state of every wanted type (after a reconnect with an old pushState).
    pub fn current(&self) -> Value {
        let mut changed = Map::new();
        for (name, n) in self.entries(&self.last) {
            if self.wanted(name) {
                changed.insert(name.into(), json!(self.tracker.state_string(n)));
            }
        }
        self.state_change(changed, &self.last)
    }

    pub fn push_state_now(&self) -> String {
        self.push_state(&self.last)
    }

    /// The next StateChange; None when the store closes the channel.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            match self.rx.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    // Coalesce a burst into one notification.
                    while self.rx.try_recv().is_ok() {}
                }
                Err(RecvError::Closed) => return None,
            }
            let (_, now) = self.tracker.refresh(self.store.as_ref());
            let mut changed = Map::new();
            for ((name, old), (_, new)) in
                self.entries(&self.last).into_iter().zip(self.entries(&now))
            {
                if old != new && self.wanted(name) {
                    changed.insert(name.into(), json!(self.tracker.state_string(new)));
                }
            }
            self.last = now;
            if !changed.is_empty() {
                return Some(self.state_change(changed, &now));
            }
        }
    }
}
