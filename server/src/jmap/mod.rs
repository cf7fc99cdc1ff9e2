//! JMAP (RFC 8620 core, RFC 8621 mail, RFC 8887 WebSocket) over the [`MailStore`].
//!
//! Layout: `routes` holds the axum handlers (mounted by `crate::web` behind its auth layer),
//! `api` the request envelope (back-references, request errors, limits), `budget` the size of a
//! request measured before it is parsed, `methods/*` one module
//! per data type, `state` the per-user tracker that turns the IMAP-shaped store into JMAP ids
//! and state strings, `view` the snapshot it keeps, `push` the StateChange stream shared by
//! the WebSocket and EventSource endpoints, `blob` uploads and downloads, `mime` the message
//! builder for Email/set.

pub(crate) mod api;
mod blob;
mod budget;
mod error;
mod eventsource;
mod ids;
mod methods;
mod mime;
mod push;
mod routes;
mod session;
mod state;
mod view;
mod ws;

#[cfg(test)]
mod tests;

pub use api::{CAPABILITIES, CORE, LIMITS, MAIL, SUBMISSION, WEBSOCKET};
pub use error::RequestError;
pub use ids::account_id;
pub use routes::router;

use crate::sieve::SieveFilter;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::auth::directory::Directory;
use crate::auth::revocation::{LiveSession, SessionHandle, SessionRegistry};
use crate::auth::sasl::TokenSession;
use crate::store::MailStore;

use state::Tracker;

/// Server limits, advertised in the session's core capability and enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_size_upload: usize,
    pub max_concurrent_upload: usize,
    pub max_size_request: usize,
    pub max_concurrent_requests: usize,
    pub max_calls_in_request: usize,
    pub max_objects_in_get: usize,
    pub max_objects_in_set: usize,
    /// Uploaded blobs kept per account (bytes); the oldest go first.
    pub max_blob_bytes_per_account: usize,
    /// FilterConditions plus FilterOperators in one `/query` filter.
    pub max_filter_conditions: usize,
    /// FilterOperators nested in one filter.
    pub max_filter_depth: usize,
    /// JSON values in one request: bounds the parsed tree, which is far larger than its text.
    pub max_values_in_request: usize,
    /// Nesting of arrays and objects in one request.
    pub max_depth_in_request: usize,
}

impl Limits {
    pub fn new(max_upload_size: usize) -> Self {
        let defaults = crate::config::JmapSection::default();
        Self {
            max_size_upload: max_upload_size,
            max_concurrent_upload: 4,
            max_size_request: max_upload_size.min(10 * 1024 * 1024),
            max_concurrent_requests: 4,
            max_calls_in_request: 32,
            max_objects_in_get: 500,
            max_objects_in_set: 500,
            max_blob_bytes_per_account: max_upload_size.saturating_mul(4),
            max_filter_conditions: defaults.max_filter_conditions,
            max_filter_depth: defaults.max_filter_depth,
            max_values_in_request: defaults.max_request_values,
            max_depth_in_request: defaults.max_request_depth,
        }
    }

    /// `http.max_upload_size` and the `[jmap]` section.
    pub fn from_config(config: &crate::config::Config) -> Self {
        let j = &config.jmap;
        Self {
            max_filter_conditions: j.max_filter_conditions,
            max_filter_depth: j.max_filter_depth,
            max_values_in_request: j.max_request_values,
            max_depth_in_request: j.max_request_depth,
            ..Self::new(config.http.max_upload_size)
        }
    }
}

/// Everything the JMAP routes share.
pub struct JmapContext {
    store: Arc<dyn MailStore>,
    directory: Arc<dyn Directory>,
    hostname: String,
    limits: Limits,
    /// Changes at every start, so state strings of a previous run are recognised as stale.
    epoch: Arc<str>,
    trackers: Mutex<HashMap<String, Arc<Tracker>>>,
    blobs: blob::BlobStore,
    /// Where WebSocket and EventSource connections register, so a revocation ends them.
    sessions: Option<Arc<SessionRegistry>>,
    /// Recipients' Sieve scripts for EmailSubmission to local users.
    filter: Arc<SieveFilter>,
    /// WebSocket ping and idle limits, and the shutdown that ends every stream.
    streams: crate::limits::StreamLimits,
    /// Where heavy queries run: the pool IMAP SEARCH uses, off the async workers.
    offload: crate::offload::Offload,
    /// The server-wide budget of bytes in flight: request bodies and their parsed trees.
    inflight: crate::inflight::InFlight,
}

impl JmapContext {
    pub fn new(
        store: Arc<dyn MailStore>,
        directory: Arc<dyn Directory>,
        hostname: String,
        max_upload_size: usize,
    ) -> Self {
        Self::with_limits(store, directory, hostname, Limits::new(max_upload_size))
    }

    pub fn with_limits(
        store: Arc<dyn MailStore>,
        directory: Arc<dyn Directory>,
        hostname: String,
        limits: Limits,
    ) -> Self {
        let epoch = format!("{:08x}", rand::random::<u32>());
        Self {
            store,
            directory,
            hostname,
            blobs: blob::BlobStore::new(limits.max_blob_bytes_per_account),
            limits,
            epoch: Arc::from(epoch),
            trackers: Mutex::new(HashMap::new()),
            sessions: None,
            filter: Arc::new(SieveFilter::keep_all()),
            streams: crate::limits::StreamLimits::default(),
            offload: crate::offload::Offload::default(),
            inflight: crate::inflight::InFlight::new(
                crate::config::ServerSection::default().max_in_flight_bytes,
            ),
        }
    }

    /// Heavy queries run on `offload` (share the server's pool, so the bound is server-wide).
    pub fn with_offload(mut self, offload: crate::offload::Offload) -> Self {
        self.offload = offload;
        self
    }

    /// Request bodies and parsed requests count against `inflight` (`server.max_in_flight_bytes`).
    pub fn with_inflight(mut self, inflight: crate::inflight::InFlight) -> Self {
        self.inflight = inflight;
        self
    }

    /// WebSocket ping and idle limits and the shutdown signal of long-lived streams.
    pub fn with_stream_limits(mut self, streams: crate::limits::StreamLimits) -> Self {
        self.streams = streams;
        self
    }

    pub fn stream_limits(&self) -> &crate::limits::StreamLimits {
        &self.streams
    }

    /// Runs recipients' Sieve scripts on local delivery (default: keep everything).
    pub fn with_filter(mut self, filter: Arc<SieveFilter>) -> Self {
        self.filter = filter;
        self
    }

    pub fn filter(&self) -> &Arc<SieveFilter> {
        &self.filter
    }

    /// Long-lived connections register here (and end when revoked).
    pub fn with_sessions(mut self, sessions: Arc<SessionRegistry>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Registers a WebSocket or EventSource connection; `None` without a registry.
    fn register(
        &self,
        protocol: &'static str,
        user: &str,
        token: Option<TokenSession>,
    ) -> Option<SessionHandle> {
        self.sessions
            .as_ref()
            .map(|r| r.register(LiveSession::new(protocol, user, token)))
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The user's tracker, created (INBOX, Drafts, Sent, first scan) on first use.
    fn tracker(&self, user: &str) -> Arc<Tracker> {
        let key = user.to_ascii_lowercase();
        if let Some(t) = self.lock_trackers().get(&key) {
            return t.clone();
        }
        // Built outside the lock: a scan may take a while, other users must not wait.
        let fresh = Arc::new(Tracker::new(
            self.store.as_ref(),
            user,
            self.epoch.clone(),
            self.limits.max_concurrent_requests,
            self.limits.max_concurrent_upload,
        ));
        self.lock_trackers().entry(key).or_insert(fresh).clone()
    }

    fn lock_trackers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Tracker>>> {
        self.trackers.lock().unwrap_or_else(|e| e.into_inner())
    }
}
