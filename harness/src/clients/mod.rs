//! Small protocol clients for tests: raw IMAP, SMTP, POP3 and ManageSieve (every byte visible,
//! SASL driven step by step), a lettre-based submission helper, and JMAP over HTTP and WebSocket.
//! Every I/O call has a deadline, so a broken server fails the test instead of hanging it.

mod conn;
pub mod imap;
pub mod jmap;
pub mod pop3;
pub mod sasl;
pub mod scram;
#[cfg(test)]
mod script;
pub mod sieve;
pub mod sieve_connect;
pub mod smtp;
pub mod tls;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite};

/// Default deadline of each read, write or connect.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest response line accepted (literals excluded): a broken server must not eat all memory.
const MAX_LINE: usize = 1024 * 1024;
/// Largest IMAP literal accepted.
const MAX_LITERAL: usize = 64 * 1024 * 1024;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("timed out after {0:?} while {1}")]
    Timeout(Duration, &'static str),
    #[error("connection closed by the server")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("tls: {0}")]
    Tls(String),
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
}

pub type ClientResult<T> = Result<T, ClientError>;

/// One step of a SASL exchange whose challenges are continuation lines (IMAP, POP3,
/// ManageSieve): a challenge, decoded, or the reply `R` that ends the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep<R> {
    Challenge(Vec<u8>),
    Done(R),
}

/// The raw SASL commands of such a protocol, for the exchanges every client runs the same way.
#[async_trait::async_trait]
pub(crate) trait ContinuationSasl: Send {
    type Reply: Send;
    async fn start(&mut self, mech: &str, ir: Option<&[u8]>)
    -> ClientResult<SaslStep<Self::Reply>>;
    async fn respond(&mut self, data: &[u8]) -> ClientResult<SaslStep<Self::Reply>>;
    async fn abort(&mut self) -> ClientResult<SaslStep<Self::Reply>>;
}

/// Sends the client's first message, as initial response or after the server's empty challenge.
pub(crate) async fn send_first<C: ContinuationSasl>(
    client: &mut C,
    mech: &str,
    payload: &[u8],
    ir: bool,
) -> ClientResult<SaslStep<C::Reply>> {
    if ir {
        return client.start(mech, Some(payload)).await;
    }
    match client.start(mech, None).await? {
        SaslStep::Challenge(_) => client.respond(payload).await,
        done => Ok(done),
    }
}

/// An OAUTHBEARER/XOAUTH2 exchange: an RFC 7628 error challenge is answered with the dummy
/// `AQ==` and returned decoded; a second challenge is a protocol error (the exchange is aborted).
pub(crate) async fn oauth_exchange<C: ContinuationSasl>(
    client: &mut C,
    mech: &str,
    payload: &[u8],
    ir: bool,
) -> ClientResult<OAuthOutcome<C::Reply>> {
    let mut step = send_first(client, mech, payload, ir).await?;
    let mut challenge = None;
    loop {
        match step {
            SaslStep::Done(reply) => return Ok(OAuthOutcome { challenge, reply }),
            SaslStep::Challenge(bytes) => {
                if challenge.is_some() {
                    let _ = client.abort().await;
                    return Err(ClientError::Protocol(format!(
                        "{mech}: second challenge {:?}",
                        String::from_utf8_lossy(&bytes)
                    )));
                }
                challenge = Some(parse_error_challenge(&bytes).unwrap_or_else(|| {
                    serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }));
                step = client.respond(b"\x01").await?;
            }
        }
    }
}

/// What an OAUTHBEARER/XOAUTH2 convenience exchange saw: the RFC 7628 error challenge (decoded
/// JSON, if the server sent one; the client then answered with the dummy `AQ==`) and the final
/// reply.
#[derive(Debug, Clone)]
pub struct OAuthOutcome<R> {
    pub challenge: Option<serde_json::Value>,
    pub reply: R,
}

/// Any byte stream a client can run over (TCP, TLS, an in-memory duplex in unit tests).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type BoxedIo = Box<dyn Io>;

/// Runs `fut` with a deadline; `what` names the step in the error.
pub(crate) async fn deadline<T, F>(limit: Duration, what: &'static str, fut: F) -> ClientResult<T>
where
    F: std::future::Future<Output = ClientResult<T>>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout(limit, what)),
    }
}

/// Reads one CRLF- (or LF-) terminated line, terminator included. EOF before any byte is
/// `Closed`; EOF in the middle of a line is a protocol error.
pub(crate) async fn read_raw_line<R: AsyncBufRead + Unpin>(r: &mut R) -> ClientResult<Vec<u8>> {
    let mut line = Vec::new();
    let mut limited = (&mut *r).take(MAX_LINE as u64 + 1);
    let n = limited.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(ClientError::Closed);
    }
    if !line.ends_with(b"\n") {
        if line.len() > MAX_LINE {
            return Err(ClientError::Protocol(format!(
                "response line longer than {MAX_LINE} bytes"
            )));
        }
        return Err(ClientError::Protocol(format!(
            "connection closed in the middle of a line: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    Ok(line)
}

/// Reads exactly `n` bytes (an IMAP literal).
pub(crate) async fn read_exact_bytes<R: AsyncRead + Unpin>(
    r: &mut R,
    n: usize,
) -> ClientResult<Vec<u8>> {
    if n > MAX_LITERAL {
        return Err(ClientError::Protocol(format!(
            "literal of {n} bytes exceeds {MAX_LITERAL}"
        )));
    }
    let mut buf = vec![0u8; n];
    match r.read_exact(&mut buf).await {
        Ok(_) => Ok(buf),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ClientError::Closed),
        Err(e) => Err(e.into()),
    }
}

/// Strips one trailing CRLF or LF.
pub(crate) fn trim_eol(mut line: Vec<u8>) -> Vec<u8> {
    if line.ends_with(b"\n") {
        line.pop();
        if line.ends_with(b"\r") {
            line.pop();
        }
    }
    line
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes a base64 SASL challenge; an empty text is an empty challenge.
pub(crate) fn unb64(text: &str) -> ClientResult<Vec<u8>> {
    STANDARD
        .decode(text.trim())
        .map_err(|e| ClientError::Protocol(format!("challenge {text:?} is not base64: {e}")))
}

/// Parses an RFC 7628 error challenge; `None` if it is not a JSON object (e.g. empty).
pub(crate) fn parse_error_challenge(bytes: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .filter(|v| v.is_object())
}

/// RFC 7628 `gs2-header` saslname: `,` and `=` must be escaped.
fn saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// OAUTHBEARER client response (RFC 7628 §3.1):
/// `n,a=<authzid>,^Ahost=<host>^Aport=<port>^Aauth=Bearer <token>^A^A`; `authzid: None` gives `n,,`.
pub fn oauthbearer_payload(authzid: Option<&str>, host: &str, port: u16, token: &str) -> Vec<u8> {
    let gs2 = match authzid {
        Some(a) => format!("n,a={},", saslname(a)),
        None => "n,,".to_string(),
    };
    format!("{gs2}\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// XOAUTH2 client response (Google): `user=<user>^Aauth=Bearer <token>^A^A`.
pub fn xoauth2_payload(user: &str, token: &str) -> Vec<u8> {
    format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// PLAIN client response (RFC 4616) with an empty authzid.
pub fn plain_payload(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauthbearer_payload_matches_rfc7628_example() {
        // RFC 7628 §4.1, with our token.
        let p = oauthbearer_payload(
            Some("user@example.com"),
            "server.example.com",
            143,
            "vF9dft4qmT",
        );
        assert_eq!(
            p,
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmT\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_payload_empty_authzid_and_escaping() {
        assert!(oauthbearer_payload(None, "h", 1, "t").starts_with(b"n,,\x01host=h\x01"));
        assert!(oauthbearer_payload(Some("a,b=c"), "h", 1, "t").starts_with(b"n,a=a=2Cb=3Dc,\x01"));
    }

    #[test]
    fn xoauth2_and_plain_payloads() {
        assert_eq!(
            xoauth2_payload("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
        assert_eq!(plain_payload("u", "p"), b"\0u\0p");
    }

    #[test]
    fn error_challenge_parsing() {
        let v = parse_error_challenge(br#"{"status":"invalid_token","scope":"openid"}"#);
        assert_eq!(
            v.and_then(|v| v["status"].as_str().map(String::from))
                .as_deref(),
            Some("invalid_token")
        );
        assert!(parse_error_challenge(b"").is_none());
        assert!(parse_error_challenge(b"\"str\"").is_none());
    }

    #[tokio::test]
    async fn raw_lines_and_eof() {
        let data: &[u8] = b"one\r\ntwo\npartial";
        let mut r = tokio::io::BufReader::new(data);
        assert_eq!(read_raw_line(&mut r).await.ok(), Some(b"one\r\n".to_vec()));
        assert_eq!(read_raw_line(&mut r).await.ok(), Some(b"two\n".to_vec()));
        assert!(matches!(
            read_raw_line(&mut r).await,
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            read_raw_line(&mut r).await,
            Err(ClientError::Closed)
        ));
    }
}
