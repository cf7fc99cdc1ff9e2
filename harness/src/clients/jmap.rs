//! A small JMAP client for tests (RFC 8620/8621 over HTTP, RFC 8887 over WebSocket). It follows
//! the session's URLs (so a session fetched through the gateway keeps the gateway's `/oidc`
//! prefix), and exposes raw requests so tests can look at status codes and headers of errors.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::DEFAULT_TIMEOUT;

pub const CORE: &str = "urn:ietf:params:jmap:core";
pub const MAIL: &str = "urn:ietf:params:jmap:mail";
pub const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
pub const WEBSOCKET: &str = "urn:ietf:params:jmap:websocket";
/// Capabilities every [`JmapClient::call`] declares.
pub const USING: [&str; 3] = [CORE, MAIL, SUBMISSION];

/// An HTTP answer that refused what the client needed.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub method: &'static str,
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// Why a JMAP call failed.
#[derive(Debug, thiserror::Error)]
pub enum JmapError {
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// A non-2xx answer where the call needed success.
    #[error("{} {} answered {}: {}", .0.method, .0.url, .0.status, .0.body)]
    Status(Box<Refusal>),
    /// The WebSocket upgrade was refused (e.g. 401 at the gateway).
    #[error("WebSocket upgrade to {} refused with {}: {}", .0.url, .0.status, .0.body)]
    Upgrade(Box<Refusal>),
    #[error("websocket: {0}")]
    Ws(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("timed out after {0:?} while {1}")]
    Timeout(Duration, &'static str),
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("invalid header {0:?}")]
    Header(String),
    /// The WebSocket was closed by the server (`code` from its Close frame, if it sent one).
    #[error("WebSocket closed by the server (code {code:?}): {reason}")]
    Closed { code: Option<u16>, reason: String },
}

impl From<tokio_tungstenite::tungstenite::Error> for JmapError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::Ws(Box::new(e))
    }
}

impl JmapError {
    /// The refused request or upgrade, if that is what failed.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Status(r) | Self::Upgrade(r) => Some(r),
            _ => None,
        }
    }

    /// The HTTP status of a refused request or upgrade.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http(e) => e.status().map(|s| s.as_u16()),
            other => other.refusal().map(|r| r.status),
        }
    }

    /// The `WWW-Authenticate` header of a refused request or upgrade.
    pub fn www_authenticate(&self) -> Option<String> {
        self.refusal()?
            .headers
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

pub type JmapResult<T> = Result<T, JmapError>;

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Bearer(String),
    /// User and password.
    Basic(String, String),
    None,
}

impl Auth {
    /// The `Authorization` header value, if any.
    pub fn header_value(&self) -> Option<String> {
        match self {
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
            Auth::Basic(user, password) => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{user}:{password}"))
            )),
            Auth::None => None,
        }
    }
}

/// The parts of the JMAP session resource tests use, plus the whole document.
#[derive(Debug, Clone)]
pub struct Session {
    pub api_url: String,
    /// URI template with `{accountId}`.
    pub upload_url: String,
    /// URI template with `{accountId}`, `{blobId}`, `{name}`, `{type}`.
    pub download_url: String,
    /// RFC 8887 WebSocket URL, when the server advertises it.
    pub ws_url: Option<String>,
    /// The primary mail account (else the first account).
    pub account_id: String,
    pub username: String,
    pub state: String,
    pub raw: Value,
}

impl Session {
    pub fn from_json(raw: Value) -> JmapResult<Self> {
        let s = |k: &str| {
            raw.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| JmapError::Protocol(format!("session without {k}: {raw}")))
        };
        let account_id = raw
            .pointer(&format!("/primaryAccounts/{}", json_pointer_escape(MAIL)))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                raw.get("accounts")
                    .and_then(Value::as_object)
                    .and_then(|a| a.keys().next().cloned())
            })
            .ok_or_else(|| JmapError::Protocol(format!("session without an account: {raw}")))?;
        let ws_url = raw
            .pointer(&format!(
                "/capabilities/{}/url",
                json_pointer_escape(WEBSOCKET)
            ))
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Self {
            api_url: s("apiUrl")?,
            upload_url: s("uploadUrl")?,
            download_url: s("downloadUrl")?,
            username: s("username").unwrap_or_default(),
            state: s("state").unwrap_or_default(),
            ws_url,
            account_id,
            raw,
        })
    }
}

fn json_pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Percent-encodes everything but RFC 3986 unreserved characters (URI template values).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An HTTP answer, whatever its status.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> JmapResult<Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| JmapError::Protocol(format!("body is not JSON ({e}): {}", self.text())))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// JMAP over HTTP with one authentication and optional extra headers on every request.
#[derive(Debug, Clone)]
pub struct JmapClient {
    http: reqwest::Client,
    session_url: String,
    auth: Auth,
    extra: HeaderMap,
    /// Trusted CA for `https://` and `wss://` (the stack's gateway); system roots otherwise.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

fn to_header_map(headers: &[(String, String)]) -> JmapResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let n =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| JmapError::Header(name.clone()))?;
        let v = HeaderValue::from_str(value).map_err(|_| JmapError::Header(value.clone()))?;
        map.append(n, v);
    }
    Ok(map)
}

impl JmapClient {
    /// `session_url`: e.g. `http://127.0.0.1:P/.well-known/jmap` or
    /// `<gateway>/oidc/.well-known/jmap`. `extra_headers` go on every request (after the auth).
    pub fn new(
        session_url: impl Into<String>,
        auth: Auth,
        extra_headers: &[(String, String)],
    ) -> JmapResult<Self> {
        mail_oidc_server::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(DEFAULT_TIMEOUT)
            .timeout(DEFAULT_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            session_url: session_url.into(),
            auth,
            extra: to_header_map(extra_headers)?,
            tls: None,
        })
    }

    /// Trusts the CA(s) in `ca_pem` (and only them) for HTTPS and WSS, e.g. the stack's gateway.
    pub fn with_ca(mut self, ca_pem: &str) -> JmapResult<Self> {
        let config = super::tls::client_config(ca_pem)
            .map_err(|e| JmapError::Protocol(format!("CA: {e}")))?;
        let builder = reqwest::Client::builder().no_proxy();
        let builder = if ca_pem == super::tls::INSECURE_SKIP_TLS_VERIFY {
            builder.danger_accept_invalid_certs(true)
        } else {
            builder.tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
        };
        self.http = builder
            .connect_timeout(DEFAULT_TIMEOUT)
            .timeout(DEFAULT_TIMEOUT)
            .build()?;
        self.tls = Some(config);
        Ok(self)
    }

    pub fn session_url(&self) -> &str {
        &self.session_url
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Authorization plus the extra headers, as sent on every request and WebSocket upgrade.
    pub fn request_headers(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(v) = self.auth.header_value() {
            out.push(("Authorization".to_string(), v));
        }
        for (name, value) in &self.extra {
            if let Ok(v) = value.to_str() {
                out.push((name.as_str().to_string(), v.to_string()));
            }
        }
        out
    }

    fn build(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Some(v) = self.auth.header_value() {
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        req.headers(self.extra.clone())
    }

    /// Resolves `target` (absolute URL, or a path on the session URL's origin).
    pub fn resolve(&self, target: &str) -> JmapResult<String> {
        if target.starts_with("http://") || target.starts_with("https://") {
            return Ok(target.to_string());
        }
        let base = url::Url::parse(&self.session_url)
            .map_err(|e| JmapError::Protocol(format!("session URL {}: {e}", self.session_url)))?;
        base.join(target)
            .map(String::from)
            .map_err(|e| JmapError::Protocol(format!("{target}: {e}")))
    }

    async fn send_raw(&self, req: reqwest::RequestBuilder) -> JmapResult<RawResponse> {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// GET `target` with the client's auth, then `headers` (which may override it).
    pub async fn raw_get(
        &self,
        target: &str,
        headers: &[(String, String)],
    ) -> JmapResult<RawResponse> {
        let url = self.resolve(target)?;
        let req = self
            .build(reqwest::Method::GET, &url)
            .headers(to_header_map(headers)?);
        self.send_raw(req).await
    }

    /// POST `body` to `target` with the client's auth, then `headers` (which may override it).
    pub async fn raw_post(
        &self,
        target: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(String, String)],
    ) -> JmapResult<RawResponse> {
        let url = self.resolve(target)?;
        let req = self
            .build(reqwest::Method::POST, &url)
            .headers(to_header_map(headers)?)
            .body(body.into());
        self.send_raw(req).await
    }

    fn require_success(
        method: &'static str,
        url: &str,
        resp: RawResponse,
    ) -> JmapResult<RawResponse> {
        if (200..300).contains(&resp.status) {
            Ok(resp)
        } else {
            Err(JmapError::Status(Box::new(Refusal {
                method,
                url: url.to_string(),
                status: resp.status,
                body: resp.text(),
                headers: resp.headers,
            })))
        }
    }

    /// Fetches the session resource (following redirects).
    pub async fn session(&self) -> JmapResult<Session> {
        let resp = self.raw_get(&self.session_url, &[]).await?;
        let resp = Self::require_success("GET", &self.session_url, resp)?;
        Session::from_json(resp.json()?)
    }

    /// POSTs `{"using": [core, mail, submission], "methodCalls": method_calls}` to the session's
    /// API URL and returns the whole response object.
    pub async fn call(&self, method_calls: Value) -> JmapResult<Value> {
        let session = self.session().await?;
        self.call_at(&session.api_url, method_calls).await
    }

    /// [`call`](Self::call) at a known API URL (no session fetch).
    pub async fn call_at(&self, api_url: &str, method_calls: Value) -> JmapResult<Value> {
        let body = json!({ "using": USING, "methodCalls": method_calls });
        let resp = self
            .raw_post(
                api_url,
                body.to_string(),
                &[("Content-Type".into(), "application/json".into())],
            )
            .await?;
        Self::require_success("POST", api_url, resp)?.json()
    }

    /// Uploads `bytes` to the session's upload URL; returns the blob id.
    pub async fn upload(&self, bytes: Vec<u8>, content_type: &str) -> JmapResult<String> {
        let session = self.session().await?;
        let url = session
            .upload_url
            .replace("{accountId}", &percent_encode(&session.account_id));
        let resp = self
            .raw_post(&url, bytes, &[("Content-Type".into(), content_type.into())])
            .await?;
        let body = Self::require_success("POST", &url, resp)?.json()?;
        body.get("blobId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| JmapError::Protocol(format!("upload answer without blobId: {body}")))
    }

    /// Downloads a blob through the session's download URL template.
    pub async fn download(&self, blob_id: &str) -> JmapResult<Vec<u8>> {
        let session = self.session().await?;
        let url = session
            .download_url
            .replace("{accountId}", &percent_encode(&session.account_id))
            .replace("{blobId}", &percent_encode(blob_id))
            .replace("{name}", "blob")
            .replace("{type}", &percent_encode("application/octet-stream"));
        let resp = self.raw_get(&url, &[]).await?;
        Ok(Self::require_success("GET", &url, resp)?.body)
    }

    /// Opens the session's EventSource (RFC 8620 §7.3) for every type, no ping, no close-after.
    pub async fn open_event_source(&self) -> JmapResult<EventStream> {
        let session = self.session().await?;
        let template = session
            .raw
            .get("eventSourceUrl")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                JmapError::Protocol("the session advertises no eventSourceUrl".into())
            })?;
        let url = template
            .replace("{types}", "*")
            .replace("{closeafter}", "no")
            .replace("{ping}", "0");
        // A stream outlives any total request timeout: only connecting is bounded.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(DEFAULT_TIMEOUT);
        if let Some(tls) = &self.tls {
            builder = builder.tls_backend_preconfigured((**tls).clone());
        }
        let http = builder.build()?;
        let mut req = http
            .get(&url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(v) = self.auth.header_value() {
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        let response =
            tokio::time::timeout(DEFAULT_TIMEOUT, req.headers(self.extra.clone()).send())
                .await
                .map_err(|_| JmapError::Timeout(DEFAULT_TIMEOUT, "opening the EventSource"))??;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.text().await.unwrap_or_default();
            return Err(JmapError::Status(Box::new(Refusal {
                method: "GET",
                url,
                status,
                headers,
                body,
            })));
        }
        Ok(EventStream {
            response,
            buffer: Vec::new(),
        })
    }

    /// Opens the session's WebSocket with this client's auth and extra headers.
    pub async fn connect_ws(&self) -> JmapResult<JmapWs> {
        let session = self.session().await?;
        let url = session
            .ws_url
            .ok_or_else(|| JmapError::Protocol("the session advertises no WebSocket".into()))?;
        JmapWs::connect_with(&url, &self.request_headers(), self.tls.clone()).await
    }
}

/// An open EventSource response, read event by event.
pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl EventStream {
    /// The next event as (`event`, `data`), or `None` once the server ended the stream.
    pub async fn next_event(&mut self, timeout: Duration) -> JmapResult<Option<(String, String)>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let mut event = String::from("message");
                let mut data = Vec::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.trim_start().to_string());
                    }
                }
                if data.is_empty() && event == "message" {
                    continue;
                }
                return Ok(Some((event, data.join("\n"))));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Err(_) => return Err(JmapError::Timeout(timeout, "waiting for an event")),
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(bytes))) => self.buffer.extend_from_slice(&bytes),
            }
        }
    }

    /// Reads events until the server ends the stream.
    pub async fn wait_end(&mut self, timeout: Duration) -> JmapResult<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.next_event(left).await?.is_none() {
                return Ok(());
            }
        }
    }
}

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A JMAP WebSocket (RFC 8887, subprotocol `jmap`). Pushes arriving while a request waits are
/// kept for [`JmapWs::next_push`].
pub struct JmapWs {
    stream: WsStream,
    next_id: u64,
    pushes: VecDeque<Value>,
    timeout: Duration,
}

impl std::fmt::Debug for JmapWs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JmapWs")
            .field("next_id", &self.next_id)
            .field("queued_pushes", &self.pushes.len())
            .finish()
    }
}

impl JmapWs {
    /// Upgrades `ws_url` (`ws://` or `http://`) with `headers` (e.g. `Authorization`).
    pub async fn connect(ws_url: &str, headers: &[(String, String)]) -> JmapResult<Self> {
        Self::connect_with(ws_url, headers, None).await
    }

    /// Like [`JmapWs::connect`], for `wss://` trusting `tls`'s roots.
    pub async fn connect_with(
        ws_url: &str,
        headers: &[(String, String)],
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> JmapResult<Self> {
        let url = if let Some(rest) = ws_url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else if let Some(rest) = ws_url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            ws_url.to_string()
        };
        let mut request = url.as_str().into_client_request()?;
        let h = request.headers_mut();
        h.insert("Sec-WebSocket-Protocol", HeaderValue::from_static("jmap"));
        for (name, value) in to_header_map(headers)? {
            match name {
                // tungstenite writes only the first Connection header: more tokens (a test's
                // hostile hop-by-hop list) join its `Upgrade`.
                Some(name) if name == reqwest::header::CONNECTION => {
                    let merged = match h.get(&name).and_then(|v| v.to_str().ok()) {
                        Some(upgrade) => format!("{upgrade}, {}", value.to_str().unwrap_or("")),
                        None => value.to_str().unwrap_or("").to_string(),
                    };
                    let merged = HeaderValue::from_str(&merged)
                        .map_err(|_| JmapError::Header(merged.clone()))?;
                    h.insert(name, merged);
                }
                Some(name) => {
                    h.append(name, value);
                }
                None => {}
            }
        }
        let connector = tls.map(tokio_tungstenite::Connector::Rustls);
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector);
        let (stream, _response) = match tokio::time::timeout(DEFAULT_TIMEOUT, connect).await {
            Err(_) => return Err(JmapError::Timeout(DEFAULT_TIMEOUT, "WebSocket upgrade")),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                return Err(JmapError::Upgrade(Box::new(Refusal {
                    method: "GET",
                    url,
                    status: resp.status().as_u16(),
                    headers: resp.headers().clone(),
                    body,
                })));
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(ok)) => ok,
        };
        Ok(Self {
            stream,
            next_id: 0,
            pushes: VecDeque::new(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, message: &Value) -> JmapResult<()> {
        let send = self.stream.send(Message::text(message.to_string()));
        tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| JmapError::Timeout(self.timeout, "sending a WebSocket message"))??;
        Ok(())
    }

    /// The next JSON message (pings answered by tungstenite, other frames skipped).
    pub async fn recv(&mut self, timeout: Duration) -> JmapResult<Value> {
        let read = async {
            loop {
                match self.stream.next().await {
                    None => {
                        return Err(JmapError::Closed {
                            code: None,
                            reason: "connection ended without a Close frame".into(),
                        });
                    }
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(text))) => {
                        return serde_json::from_str(text.as_str()).map_err(|e| {
                            JmapError::Protocol(format!("non-JSON text frame ({e}): {text}"))
                        });
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Err(JmapError::Closed {
                            code: frame.as_ref().map(|f| u16::from(f.code)),
                            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                        });
                    }
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| JmapError::Timeout(timeout, "waiting for a WebSocket message"))?
    }

    /// Reads (and drops pushes) until the server closes the socket; its Close code and reason.
    pub async fn wait_closed(&mut self, timeout: Duration) -> JmapResult<(Option<u16>, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Ok(message) => self.pushes.push_back(message),
                Err(JmapError::Closed { code, reason }) => return Ok((code, reason)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a JMAP Request (`using` core/mail/submission unless `request` has one) and returns
    /// the Response or RequestError whose `requestId` matches.
    pub async fn request(&mut self, mut request: Value) -> JmapResult<Value> {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        let Some(obj) = request.as_object_mut() else {
            return Err(JmapError::Protocol(
                "a JMAP request must be an object".into(),
            ));
        };
        obj.insert("@type".into(), json!("Request"));
        obj.insert("id".into(), json!(id));
        obj.entry("using").or_insert_with(|| json!(USING));
        self.send(&request).await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.recv(left).await?;
            if msg.get("requestId").and_then(Value::as_str) == Some(id.as_str()) {
                return Ok(msg);
            }
            if msg.get("@type").and_then(Value::as_str) == Some("StateChange") {
                self.pushes.push_back(msg);
            } else {
                tracing::debug!(%msg, "unmatched WebSocket message skipped");
            }
        }
    }

    /// `WebSocketPushEnable` for every data type.
    pub async fn enable_push(&mut self) -> JmapResult<()> {
        self.send(&json!({"@type": "WebSocketPushEnable", "dataTypes": null}))
            .await
    }

    /// The next `StateChange` push (queued ones first).
    pub async fn next_push(&mut self, timeout: Duration) -> JmapResult<Value> {
        if let Some(push) = self.pushes.pop_front() {
            return Ok(push);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.recv(left).await?;
            if msg.get("@type").and_then(Value::as_str) == Some("StateChange") {
                return Ok(msg);
            }
            tracing::debug!(%msg, "non-push WebSocket message skipped");
        }
    }

    /// Sends a Close frame and waits briefly for the server's.
    pub async fn close(mut self) -> JmapResult<()> {
        let close = async {
            self.stream.close(None).await?;
            while let Some(msg) = self.stream.next().await {
                if msg.is_err() {
                    break;
                }
            }
            JmapResult::Ok(())
        };
        tokio::time::timeout(self.timeout, close)
            .await
            .map_err(|_| JmapError::Timeout(self.timeout, "closing the WebSocket"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_fields_come_from_the_document() {
        let raw = json!({
            "capabilities": {
                CORE: {},
                WEBSOCKET: {"url": "ws://gw/oidc/jmap/ws", "supportsPush": true}
            },
            "accounts": {"a1": {"name": "x"}},
            "primaryAccounts": {MAIL: "a1"},
            "username": "u@example.com",
            "apiUrl": "http://gw/oidc/jmap",
            "uploadUrl": "http://gw/oidc/upload/{accountId}/",
            "downloadUrl": "http://gw/oidc/download/{accountId}/{blobId}/{name}?accept={type}",
            "eventSourceUrl": "http://gw/oidc/eventsource",
            "state": "s0"
        });
        let s = Session::from_json(raw).expect("session");
        assert_eq!(s.api_url, "http://gw/oidc/jmap");
        assert_eq!(s.account_id, "a1");
        assert_eq!(s.ws_url.as_deref(), Some("ws://gw/oidc/jmap/ws"));
        assert_eq!(s.username, "u@example.com");
    }

    #[test]
    fn session_without_api_url_is_a_protocol_error() {
        let err = Session::from_json(json!({"accounts": {"a": {}}})).expect_err("refused");
        assert!(matches!(err, JmapError::Protocol(_)), "{err}");
    }

    #[test]
    fn auth_headers() {
        assert_eq!(
            Auth::Basic("u".into(), "p".into())
                .header_value()
                .as_deref(),
            Some("Basic dTpw")
        );
        assert_eq!(
            Auth::Bearer("t".into()).header_value().as_deref(),
            Some("Bearer t")
        );
        assert_eq!(Auth::None.header_value(), None);
    }

    #[test]
    fn template_values_are_percent_encoded() {
        assert_eq!(percent_encode("a b/c~d"), "a%20b%2Fc~d");
        assert_eq!(
            percent_encode("application/octet-stream"),
            "application%2Foctet-stream"
        );
    }

    #[test]
    fn relative_targets_resolve_against_the_session_origin() {
        let c = JmapClient::new("http://127.0.0.1:9/oidc/.well-known/jmap", Auth::None, &[])
            .expect("client");
        assert_eq!(
            c.resolve("/oidc/jmap").expect("url"),
            "http://127.0.0.1:9/oidc/jmap"
        );
        assert_eq!(c.resolve("http://x/y").expect("url"), "http://x/y");
    }
}
