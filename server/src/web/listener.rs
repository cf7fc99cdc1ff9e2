//! The HTTP accept loop: hyper's HTTP/1 connection with a header-read timeout (which also
//! bounds a keep-alive connection's wait for its next request), a write deadline on the
//! socket, connection caps, a whole-request deadline, and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt as _;
use tracing::Instrument as _;

use super::HttpContext;
use crate::auth::request_auth::Problem;
use crate::config::HttpLimitsSection;
use crate::limits::{ConnectionLimiter, ListenerLimits, ShutdownSignal, WriteDeadline};

/// What the HTTP listener is held to (`[limits.http]`).
#[derive(Clone)]
pub struct HttpLimits {
    pub caps: Arc<ConnectionLimiter>,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub write_timeout: Duration,
    pub shutdown: ShutdownSignal,
}

impl HttpLimits {
    pub fn new(section: &HttpLimitsSection, shutdown: ShutdownSignal) -> Self {
        Self {
            caps: ConnectionLimiter::new(
                "http.listen",
                section.max_connections,
                section.max_connections_per_address,
            ),
            header_timeout: Duration::from_secs(section.header_timeout_seconds),
            request_timeout: Duration::from_secs(section.request_timeout_seconds),
            write_timeout: Duration::from_secs(section.write_timeout_seconds),
            shutdown,
        }
    }
}

/// The refusal of a connection over a cap, written before the request is read.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 37\r\nRetry-After: 5\r\nConnection: close\r\n\r\nToo many connections, try again later";

/// Serves until shutdown. The peer address reaches the auth layer as
/// `ConnectInfo<SocketAddr>` (for `x_user_trusted_sources`).
pub async fn serve_limited(listener: TcpListener, ctx: Arc<HttpContext>, limits: HttpLimits) {
    let deadline = limits.request_timeout;
    let app: Router = super::router(ctx).layer(from_fn(move |req: Request, next: Next| {
        request_deadline(deadline, req, next)
    }));
    // Only for the log line and `admit`; the session part is unused here.
    let admission = ListenerLimits {
        caps: limits.caps.clone(),
        session: crate::limits::SessionLimits::defaults(),
    };
    let mut connections = JoinSet::new();
    let mut shutdown = limits.shutdown.clone();
    loop {
        while connections.try_join_next().is_some() {}
        let Some((tcp, peer)) =
            crate::limits::next_connection(&listener, &mut shutdown, "HTTP").await
        else {
            break;
        };
        let Some(permit) = admission.admit(peer) else {
            crate::limits::refuse(&tcp, TOO_MANY);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let service = app.clone().map_request(move |mut req: Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let io = TokioIo::new(WriteDeadline::new(tcp, limits.write_timeout));
        let header_timeout = limits.header_timeout;
        let mut shutdown = limits.shutdown.clone();
        connections.spawn(
            async move {
                let _permit = permit;
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout);
                let conn = builder
                    .serve_connection(io, TowerToHyperService::new(service))
                    .with_upgrades();
                tokio::pin!(conn);
                let result = tokio::select! {
                    result = conn.as_mut() => result,
                    () = shutdown.requested() => {
                        // Finishes the response under way, then closes.
                        conn.as_mut().graceful_shutdown();
                        conn.as_mut().await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
            }
            .instrument(tracing::debug_span!("http", %peer)),
        );
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// A request must be answered within the deadline; a WebSocket upgrade or an EventSource
/// response counts as answered once its headers are ready, so the streams are not bound.
async fn request_deadline(limit: Duration, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::info!(%method, path, limit_seconds = limit.as_secs(), "HTTP request not answered in time");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the request was not completed within {} seconds",
                    limit.as_secs()
                ),
            )
            .into_response()
        }
    }
}
