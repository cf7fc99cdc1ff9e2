//! JMAP tests: the API layer through `api::execute` against a MemoryStore, the router through
//! `oneshot` with the identity extensions set by hand, and a WebSocket over a real listener.

mod api;
mod limits;
mod mail;
mod quota;
mod revocation;
mod router;
mod submission;
mod websocket;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::JmapContext;
use super::api::{Caller, execute, request_from_value};
use crate::store::{MailStore, MemoryStore};
pub use crate::testkit::TestDirectory;

pub const ALICE: &str = "alice@example.com";
pub const BOB: &str = "bob@example.com";

pub struct Harness {
    pub ctx: Arc<JmapContext>,
    pub store: Arc<MemoryStore>,
}

pub fn harness() -> Harness {
    harness_with(false)
}

pub fn harness_with(directory_down: bool) -> Harness {
    harness_over(Arc::new(MemoryStore::new()), directory_down)
}

/// A harness whose context `build` finishes (its offload pool, in-flight budget, limits).
pub fn harness_built(build: impl FnOnce(JmapContext) -> JmapContext) -> Harness {
    let h = harness();
    let ctx = Arc::try_unwrap(h.ctx).unwrap_or_else(|_| unreachable!("no clone yet"));
    Harness {
        ctx: Arc::new(build(ctx)),
        store: h.store,
    }
}

pub fn harness_over(store: Arc<MemoryStore>, directory_down: bool) -> Harness {
    let ctx = Arc::new(JmapContext::new(
        store.clone(),
        {
            let directory = TestDirectory::new();
            directory.set_down(directory_down);
            directory
        },
        "mx.example.com".into(),
        1024 * 1024,
    ));
    Harness { ctx, store }
}

pub const USING: [&str; 3] = [super::CORE, super::MAIL, super::SUBMISSION];

impl Harness {
    pub fn account(&self, user: &str) -> String {
        super::account_id(user)
    }

    /// Runs one request for `user`; the whole Response object.
    pub async fn request(&self, user: &str, calls: Value) -> Value {
        let req = request_from_value(json!({"using": USING, "methodCalls": calls})).unwrap();
        let caller = Caller::new(user, Some("192.0.2.7:4242".parse().unwrap()), true);
        Value::Object(execute(&self.ctx, &caller, req).await.unwrap())
    }

    /// Runs calls and returns the method responses.
    pub async fn calls(&self, user: &str, calls: Value) -> Vec<Value> {
        let r = self.request(user, calls).await;
        r["methodResponses"].as_array().cloned().unwrap_or_default()
    }

    /// One call; its (name, arguments).
    pub async fn call(&self, user: &str, method: &str, args: Value) -> (String, Value) {
        let r = self.calls(user, json!([[method, args, "c0"]])).await;
        assert_eq!(r.len(), 1, "{r:?}");
        (r[0][0].as_str().unwrap().to_string(), r[0][1].clone())
    }

    /// One call that must succeed.
    pub async fn ok(&self, user: &str, method: &str, args: Value) -> Value {
        let (name, v) = self.call(user, method, args).await;
        assert_eq!(name, method, "{v}");
        v
    }

    pub fn deliver(&self, user: &str, mailbox: &str, msg: &str, date: i64) -> u32 {
        self.store.ensure_user(user);
        self.store
            .append(
                user,
                mailbox,
                msg.replace('\n', "\r\n").into_bytes(),
                BTreeSet::new(),
                Some(date),
            )
            .unwrap()
    }

    pub async fn mailbox_id(&self, user: &str, role: &str) -> String {
        let v = self
            .ok(
                user,
                "Mailbox/get",
                json!({"accountId": self.account(user)}),
            )
            .await;
        v["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == json!(role))
            .map(|m| m["id"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {role} mailbox in {v}"))
    }

    pub async fn email_ids(&self, user: &str, filter: Value) -> Vec<String> {
        let v = self
            .ok(
                user,
                "Email/query",
                json!({"accountId": self.account(user), "filter": filter}),
            )
            .await;
        serde_json::from_value(v["ids"].clone()).unwrap()
    }
}
