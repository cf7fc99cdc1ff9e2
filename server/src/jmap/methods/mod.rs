//! Method dispatch and the argument shapes shared by the standard methods (RFC 8620 §5).

mod common;
mod core;
mod email;
mod identity;
mod mailbox;
pub mod submission;
mod thread;

pub use common::*;
pub use email::email_part_blob;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::JmapContext;
use super::api::{CORE, Caller, MAIL, SUBMISSION};
use super::error::MethodError;
use super::state::{States, Tracker};
use super::view::Snapshot;
use crate::store::MailStore;

/// One method call's environment.
pub struct Call<'a> {
    pub ctx: &'a JmapContext,
    pub caller: &'a Caller,
    pub tracker: &'a Arc<Tracker>,
    /// Creation id -> server id, for `#creationId` references (RFC 8620 §5.3).
    pub created_ids: &'a mut HashMap<String, String>,
}

impl Call<'_> {
    pub fn store(&self) -> &dyn MailStore {
        self.ctx.store.as_ref()
    }

    pub fn user(&self) -> &str {
        &self.caller.user
    }

    pub fn account_id(&self) -> &str {
        &self.caller.account_id
    }

    pub fn refresh(&self) -> (Arc<Snapshot>, States) {
        self.tracker.refresh(self.store())
    }

    pub fn state(&self, n: u64) -> String {
        self.tracker.state_string(n)
    }

    /// `#creationId` -> the id created earlier in this request; other ids unchanged.
    pub fn resolve_id(&self, id: &str) -> Option<String> {
        match id.strip_prefix('#') {
            Some(cid) => self.created_ids.get(cid).cloned(),
            None => Some(id.to_string()),
        }
    }

    /// The size caps of a `/query` filter.
    pub fn filter_caps(&self) -> FilterCaps {
        FilterCaps {
            max_conditions: self.ctx.limits.max_filter_conditions,
            max_depth: self.ctx.limits.max_filter_depth,
        }
    }

    pub fn check_account(&self, account_id: &str) -> Result<(), MethodError> {
        if account_id == self.caller.account_id {
            Ok(())
        } else {
            tracing::info!(user = %self.caller.user, account_id, "JMAP call for another account");
            Err(MethodError::account_not_found())
        }
    }
}

/// The capability a method needs in `using`; None for an unknown method.
pub fn capability_of(name: &str) -> Option<&'static str> {
    let (object, _) = name.split_once('/')?;
    match object {
        "Core" => Some(CORE),
        "Mailbox" | "Email" | "Thread" => Some(MAIL),
        "Identity" | "EmailSubmission" => Some(SUBMISSION),
        _ => None,
    }
}

/// Runs one method; a list because EmailSubmission/set may add an implicit Email/set.
pub async fn dispatch(
    call: &mut Call<'_>,
    name: &str,
    args: Map<String, Value>,
) -> Vec<(String, Value)> {
    let result = match name {
        "Core/echo" => Ok(core::echo(args)),
        "Mailbox/get" => mailbox::get(call, args),
        "Mailbox/changes" => mailbox::changes(call, args),
        "Mailbox/query" => mailbox::query(call, args),
        "Mailbox/queryChanges" => query_changes(call, args),
        "Mailbox/set" => mailbox::set(call, args),
        "Email/get" => email::get(call, args),
        "Email/changes" => email::changes(call, args),
        "Email/query" => email::query(call, args).await,
        "Email/queryChanges" => query_changes(call, args),
        "Email/set" => email::set(call, args),
        "Email/import" => email::import(call, args),
        "Thread/get" => thread::get(call, args),
        "Thread/changes" => thread::changes(call, args),
        "Identity/get" => identity::get(call, args),
        "Identity/changes" => identity::changes(call, args),
        "Identity/set" => identity::set(call, args),
        "EmailSubmission/get" => submission::get(call, args),
        "EmailSubmission/changes" => submission::changes(call, args),
        "EmailSubmission/query" => submission::query(call, args),
        "EmailSubmission/queryChanges" => query_changes(call, args),
        "EmailSubmission/set" => return submission::set(call, args).await,
        _ => Err(MethodError::unknown_method(name)),
    };
    match result {
        Ok(v) => vec![(name.to_string(), v)],
        Err(e) => {
            tracing::debug!(method = name, error = e.kind, "JMAP method error");
            vec![("error".to_string(), e.to_json())]
        }
    }
}
