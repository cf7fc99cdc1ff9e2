//! Push over EventSource (RFC 8620 §7.3): `state` events with StateChange data, optional
//! `ping` events, `closeafter=state` for long polling.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::JmapContext;
use super::push::PushStream;
use super::routes::Authed;
use crate::auth::revocation::{SessionHandle, ended};

/// Shortest ping interval honoured, in seconds.
const MIN_PING: u64 = 5;

struct Params {
    types: Option<BTreeSet<String>>,
    close_after_state: bool,
    ping: u64,
}

fn params(query: Option<&str>) -> Params {
    let mut p = Params {
        types: None,
        close_after_state: false,
        ping: 0,
    };
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "types" if v != "*" => {
                p.types = Some(
                    v.split(',')
                        .map(str::to_string)
                        .filter(|t| !t.is_empty())
                        .collect(),
                );
            }
            "closeafter" => p.close_after_state = v == "state",
            "ping" => p.ping = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    p
}

struct Stream {
    push: PushStream,
    ping: Option<tokio::time::Interval>,
    interval: u64,
    close_after_state: bool,
    done: bool,
    /// Registered in the live sessions: a revocation ends the stream.
    live: Option<SessionHandle>,
    /// Shutdown ends the stream (writes are bound by the listener's write deadline).
    shutdown: crate::limits::ShutdownSignal,
}

pub async fn handler(
    State(ctx): State<Arc<JmapContext>>,
    authed: Authed,
    RawQuery(query): RawQuery,
) -> Response {
    let p = params(query.as_deref());
    let interval = if p.ping == 0 { 0 } else { p.ping.max(MIN_PING) };
    let ping = (interval > 0).then(|| {
        let period = Duration::from_secs(interval);
        tokio::time::interval_at(tokio::time::Instant::now() + period, period)
    });
    let state = Stream {
        push: PushStream::new(&ctx, &authed.caller, p.types),
        ping,
        interval,
        close_after_state: p.close_after_state,
        done: false,
        live: ctx.register("eventsource", &authed.caller.user, authed.token),
        shutdown: ctx.stream_limits().shutdown.clone(),
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let interval = st.interval;
        let ping = async {
            match st.ping.as_mut() {
                Some(ping) => {
                    ping.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let (event, is_state) = tokio::select! {
            change = st.push.next() => (state_event(change?), true),
            () = ping => (ping_event(interval), false),
            reason = ended(&mut st.live) => {
                tracing::info!(code = reason.code(), "EventSource stream ended");
                return None;
            }
            () = st.shutdown.requested() => {
                tracing::info!("EventSource stream ended: shutdown");
                return None;
            }
        };
        // Ping events do not end a long poll; only a state event does.
        st.done = st.close_after_state && is_state;
        Some((Ok::<_, Infallible>(event), st))
    });
    Sse::new(stream).into_response()
}

fn state_event(change: serde_json::Value) -> Event {
    Event::default().event("state").data(change.to_string())
}

fn ping_event(interval: u64) -> Event {
    Event::default()
        .event("ping")
        .data(json!({"interval": interval}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let p = params(Some("types=Email,Mailbox&closeafter=state&ping=30"));
        assert_eq!(
            p.types,
            Some(["Email".to_string(), "Mailbox".to_string()].into())
        );
        assert!(p.close_after_state);
        assert_eq!(p.ping, 30);
        let p = params(Some("types=*&closeafter=no&ping=x"));
        assert_eq!((p.types, p.close_after_state, p.ping), (None, false, 0));
        assert_eq!(params(None).ping, 0);
    }
}
