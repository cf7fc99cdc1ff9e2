//! Raw POP3 client for tests (RFC 1939, RFC 2449 CAPA, RFC 5034 AUTH, RFC 2595 STLS): every
//! reply line visible, multi-line replies read whole and dot-unstuffed, SASL driven step by step
//! so tests can send malformed, aborted or hostile exchanges.

use std::net::SocketAddr;
use std::time::Duration;

use super::conn::Conn;
use super::{ClientError, ClientResult, Io, b64, deadline, read_raw_line, trim_eol, unb64};
pub use super::{OAuthOutcome, oauthbearer_payload, plain_payload, xoauth2_payload};

/// One status line: `+OK ...` or `-ERR ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Reply {
    /// The line as sent, without CRLF.
    pub line: String,
}

impl Pop3Reply {
    pub fn is_ok(&self) -> bool {
        self.line == "+OK" || self.line.starts_with("+OK ")
    }
    pub fn is_err(&self) -> bool {
        self.line == "-ERR" || self.line.starts_with("-ERR ")
    }
    /// The RFC 2449 response code without brackets, e.g. `AUTH`, `SYS/TEMP` or `IN-USE`.
    pub fn code(&self) -> Option<&str> {
        let rest = self.line.split_once(' ')?.1;
        let inner = rest.strip_prefix('[')?;
        inner.split_once(']').map(|(code, _)| code)
    }
    /// The text after the status and the response code.
    pub fn text(&self) -> &str {
        let rest = self.line.split_once(' ').map_or("", |(_, r)| r);
        match rest.strip_prefix('[').and_then(|r| r.split_once("] ")) {
            Some((_, text)) => text,
            None => rest,
        }
    }
}

impl std::fmt::Display for Pop3Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

/// One step of an AUTH exchange.
pub type SaslReply = super::SaslStep<Pop3Reply>;

/// A continuation line (`+` alone or `+ ...`), as opposed to `+OK`.
fn continuation(line: &str) -> Option<&str> {
    if line == "+" {
        return Some("");
    }
    line.strip_prefix("+ ")
}

/// RFC 1939 3: a line of a multi-line reply starting with `.` had one prepended.
fn unstuff(line: &[u8]) -> &[u8] {
    line.strip_prefix(b".").unwrap_or(line)
}

pub struct Pop3Client {
    conn: Conn,
    greeting: Pop3Reply,
    /// An AUTH exchange waits for a client response.
    in_auth: bool,
}

impl std::fmt::Debug for Pop3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Client")
            .field("greeting", &self.greeting)
            .field("peer", &self.conn.peer)
            .finish()
    }
}

impl Pop3Client {
    /// Plain TCP (STLS available); reads the greeting.
    pub async fn connect(addr: SocketAddr) -> ClientResult<Self> {
        Self::with_conn(Conn::tcp(addr).await?).await
    }

    /// Implicit TLS (POP3S, port 995 style) trusting only `ca_pem`; reads the greeting.
    pub async fn connect_tls(addr: SocketAddr, ca_pem: &str) -> ClientResult<Self> {
        Self::with_conn(Conn::tls(addr, ca_pem).await?).await
    }

    /// Any stream (unit tests use an in-memory duplex); reads the greeting.
    pub async fn from_stream(stream: impl Io + 'static) -> ClientResult<Self> {
        Self::with_conn(Conn::new(Box::new(stream), None)).await
    }

    async fn with_conn(conn: Conn) -> ClientResult<Self> {
        let mut client = Self {
            conn,
            greeting: Pop3Reply {
                line: String::new(),
            },
            in_auth: false,
        };
        client.greeting = client.read_reply().await?;
        if !client.greeting.is_ok() {
            return Err(ClientError::Protocol(format!(
                "POP3 greeting {}",
                client.greeting
            )));
        }
        Ok(client)
    }

    /// The greeting, e.g. `+OK localhost mail-oidc ready.`
    pub fn greeting(&self) -> &Pop3Reply {
        &self.greeting
    }

    /// Deadline of each later read and write (default 10 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.conn.timeout = timeout;
    }

    /// This end's address: the server logs the connection under it (`peer=...`).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.conn.local
    }

    /// The TLS session's RFC 9266 `tls-exporter` (TLS 1.3), for SCRAM-SHA-256-PLUS.
    pub fn tls_exporter(&self) -> Option<&[u8]> {
        self.conn.exporter.as_deref()
    }

    /// Reads until the server closes the connection: `true` once it has, `false` if it is still
    /// open after the timeout.
    pub async fn is_closed(&mut self) -> bool {
        self.conn.closes().await
    }

    /// `STLS`, then the TLS handshake trusting only `ca_pem`. Fails if the server refuses, or if
    /// it sent anything after its `+OK` in plaintext (that would be a command-injection hole).
    pub async fn stls(&mut self, ca_pem: &str) -> ClientResult<Pop3Reply> {
        let reply = self.command("STLS").await?;
        if !reply.is_ok() {
            return Err(ClientError::Protocol(format!("STLS refused: {reply}")));
        }
        self.conn.start_tls(ca_pem, "+OK").await?;
        Ok(reply)
    }

    /// Sends one line; CRLF is appended.
    pub async fn send_line(&mut self, line: &str) -> ClientResult<()> {
        self.send_bytes(format!("{line}\r\n").as_bytes()).await
    }

    /// Sends raw bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> ClientResult<()> {
        self.conn.send_bytes(bytes).await
    }

    /// One line without its CRLF. `Err(Closed)` once the server has closed the connection.
    pub async fn read_line(&mut self) -> ClientResult<String> {
        let stream = &mut self.conn.stream;
        deadline(self.conn.timeout, "reading a line", async {
            let raw = trim_eol(read_raw_line(stream).await?);
            Ok(String::from_utf8_lossy(&raw).into_owned())
        })
        .await
    }

    /// Like [`read_line`](Self::read_line) with another deadline (e.g. waiting for the `-ERR`
    /// of a session ended from outside).
    pub async fn read_line_within(&mut self, limit: Duration) -> ClientResult<String> {
        let saved = std::mem::replace(&mut self.conn.timeout, limit);
        let r = self.read_line().await;
        self.conn.timeout = saved;
        r
    }

    /// One status line; anything else is a protocol error.
    pub async fn read_reply(&mut self) -> ClientResult<Pop3Reply> {
        let line = self.read_line().await?;
        let reply = Pop3Reply { line };
        if !reply.is_ok() && !reply.is_err() {
            return Err(ClientError::Protocol(format!(
                "not a POP3 status line: {:?}",
                reply.line
            )));
        }
        Ok(reply)
    }

    /// The body of a multi-line reply after its `+OK` line: every line up to the `.` line, with
    /// CRLF, dot-unstuffed.
    pub async fn read_multiline(&mut self) -> ClientResult<Vec<u8>> {
        let stream = &mut self.conn.stream;
        deadline(self.conn.timeout, "reading a multi-line reply", async {
            let mut body = Vec::new();
            loop {
                let raw = read_raw_line(stream).await?;
                if raw == b".\r\n" || raw == b".\n" {
                    return Ok(body);
                }
                body.extend_from_slice(unstuff(&raw));
            }
        })
        .await
    }

    /// Sends one command and reads its status line.
    pub async fn command(&mut self, line: &str) -> ClientResult<Pop3Reply> {
        self.send_line(line).await?;
        self.read_reply().await
    }

    /// A command with a multi-line answer: the status line, and the body when it is `+OK`.
    pub async fn multiline(&mut self, line: &str) -> ClientResult<(Pop3Reply, Option<Vec<u8>>)> {
        let reply = self.command(line).await?;
        if !reply.is_ok() {
            return Ok((reply, None));
        }
        let body = self.read_multiline().await?;
        Ok((reply, Some(body)))
    }

    /// A listing's lines (CAPA, LIST, UIDL, AUTH); `-ERR` is a protocol error.
    async fn listing(&mut self, line: &str) -> ClientResult<Vec<String>> {
        match self.multiline(line).await? {
            (_, Some(body)) => Ok(String::from_utf8_lossy(&body)
                .lines()
                .map(str::to_string)
                .collect()),
            (reply, None) => Err(ClientError::Protocol(format!("{line}: {reply}"))),
        }
    }

    /// `CAPA` (RFC 2449): one capability per line, e.g. `SASL OAUTHBEARER XOAUTH2`.
    pub async fn capabilities(&mut self) -> ClientResult<Vec<String>> {
        self.listing("CAPA").await
    }

    /// The mechanisms the `SASL` capability lists now.
    pub async fn sasl_mechanisms(&mut self) -> ClientResult<Vec<String>> {
        Ok(self
            .capabilities()
            .await?
            .iter()
            .filter_map(|c| c.strip_prefix("SASL "))
            .flat_map(|m| m.split(' ').map(str::to_string))
            .collect())
    }

    /// `USER` then, if accepted, `PASS`; the refusal of either, or the final reply.
    pub async fn user_pass(&mut self, user: &str, password: &str) -> ClientResult<Pop3Reply> {
        let reply = self.command(&format!("USER {user}")).await?;
        if !reply.is_ok() {
            return Ok(reply);
        }
        self.command(&format!("PASS {password}")).await
    }

    /// `STAT`: (messages, octets).
    pub async fn stat(&mut self) -> ClientResult<(usize, u64)> {
        let reply = self.command("STAT").await?;
        let parsed = reply
            .line
            .strip_prefix("+OK ")
            .and_then(|r| r.split_once(' '))
            .and_then(|(n, s)| Some((n.parse().ok()?, s.parse().ok()?)));
        parsed.ok_or_else(|| ClientError::Protocol(format!("STAT: {reply}")))
    }

    /// `LIST`: (message number, octets) of every message not marked deleted.
    pub async fn list(&mut self) -> ClientResult<Vec<(u32, u64)>> {
        self.listing("LIST")
            .await?
            .iter()
            .map(|l| {
                l.split_once(' ')
                    .and_then(|(n, s)| Some((n.parse().ok()?, s.parse().ok()?)))
                    .ok_or_else(|| ClientError::Protocol(format!("LIST line {l:?}")))
            })
            .collect()
    }

    /// `UIDL`: (message number, unique id) of every message not marked deleted.
    pub async fn uidl(&mut self) -> ClientResult<Vec<(u32, String)>> {
        self.listing("UIDL")
            .await?
            .iter()
            .map(|l| {
                l.split_once(' ')
                    .and_then(|(n, id)| Some((n.parse().ok()?, id.to_string())))
                    .ok_or_else(|| ClientError::Protocol(format!("UIDL line {l:?}")))
            })
            .collect()
    }

    /// `RETR n`: the message as the server sent it, unstuffed (CRLF line ends).
    pub async fn retr(&mut self, n: u32) -> ClientResult<Vec<u8>> {
        match self.multiline(&format!("RETR {n}")).await? {
            (_, Some(body)) => Ok(body),
            (reply, None) => Err(ClientError::Protocol(format!("RETR {n}: {reply}"))),
        }
    }

    /// `TOP n k`: the header, the blank line and `k` body lines, unstuffed.
    pub async fn top(&mut self, n: u32, lines: u32) -> ClientResult<Vec<u8>> {
        match self.multiline(&format!("TOP {n} {lines}")).await? {
            (_, Some(body)) => Ok(body),
            (reply, None) => Err(ClientError::Protocol(format!("TOP {n}: {reply}"))),
        }
    }

    pub async fn dele(&mut self, n: u32) -> ClientResult<Pop3Reply> {
        self.command(&format!("DELE {n}")).await
    }

    pub async fn quit(&mut self) -> ClientResult<Pop3Reply> {
        self.command("QUIT").await
    }

    /// `AUTH <mech> [<initial response>]` (`=` for an empty initial response).
    pub async fn auth_start(&mut self, mech: &str, ir: Option<&[u8]>) -> ClientResult<SaslReply> {
        let line = match ir {
            None => format!("AUTH {mech}"),
            Some([]) => format!("AUTH {mech} ="),
            Some(ir) => format!("AUTH {mech} {}", b64(ir)),
        };
        self.in_auth = true;
        self.send_line(&line).await?;
        self.auth_read().await
    }

    /// Answers a challenge with `data`, base64-encoded (empty data sends an empty line).
    pub async fn auth_continue(&mut self, data: &[u8]) -> ClientResult<SaslReply> {
        self.auth_continue_raw(&b64(data)).await
    }

    /// Answers a challenge with a raw line (e.g. invalid base64).
    pub async fn auth_continue_raw(&mut self, line: &str) -> ClientResult<SaslReply> {
        if !self.in_auth {
            return Err(ClientError::Protocol("no AUTH exchange in progress".into()));
        }
        self.send_line(line).await?;
        self.auth_read().await
    }

    /// Cancels the exchange with `*` (RFC 5034 4).
    pub async fn auth_abort(&mut self) -> ClientResult<SaslReply> {
        self.auth_continue_raw("*").await
    }

    async fn auth_read(&mut self) -> ClientResult<SaslReply> {
        let line = match self.read_line().await {
            Ok(line) => line,
            Err(e) => {
                self.in_auth = false;
                return Err(e);
            }
        };
        if let Some(data) = continuation(&line) {
            return Ok(SaslReply::Challenge(unb64(data)?));
        }
        self.in_auth = false;
        let reply = Pop3Reply { line };
        if !reply.is_ok() && !reply.is_err() {
            return Err(ClientError::Protocol(format!(
                "not a POP3 AUTH reply: {:?}",
                reply.line
            )));
        }
        Ok(SaslReply::Done(reply))
    }

    /// OAUTHBEARER with authzid = `user`. An RFC 7628 error challenge is answered with the dummy
    /// `AQ==` and returned decoded.
    pub async fn oauthbearer(
        &mut self,
        user: &str,
        token: &str,
        ir: bool,
    ) -> ClientResult<OAuthOutcome<Pop3Reply>> {
        let port = self.conn.peer.map(|a| a.port()).unwrap_or(110);
        let payload = oauthbearer_payload(Some(user), "localhost", port, token);
        super::oauth_exchange(self, "OAUTHBEARER", &payload, ir).await
    }

    /// XOAUTH2; an error challenge is answered with `AQ==` like OAUTHBEARER.
    pub async fn xoauth2(
        &mut self,
        user: &str,
        token: &str,
        ir: bool,
    ) -> ClientResult<OAuthOutcome<Pop3Reply>> {
        super::oauth_exchange(self, "XOAUTH2", &xoauth2_payload(user, token), ir).await
    }

    /// PLAIN with an empty authzid.
    pub async fn plain(&mut self, user: &str, password: &str, ir: bool) -> ClientResult<Pop3Reply> {
        match super::send_first(self, "PLAIN", &plain_payload(user, password), ir).await? {
            SaslReply::Done(reply) => Ok(reply),
            SaslReply::Challenge(c) => {
                let _ = self.auth_abort().await;
                Err(ClientError::Protocol(format!(
                    "PLAIN: unexpected challenge {:?}",
                    String::from_utf8_lossy(&c)
                )))
            }
        }
    }
}

#[async_trait::async_trait]
impl super::ContinuationSasl for Pop3Client {
    type Reply = Pop3Reply;
    async fn start(&mut self, mech: &str, ir: Option<&[u8]>) -> ClientResult<SaslReply> {
        Pop3Client::auth_start(self, mech, ir).await
    }
    async fn respond(&mut self, data: &[u8]) -> ClientResult<SaslReply> {
        Pop3Client::auth_continue(self, data).await
    }
    async fn abort(&mut self) -> ClientResult<SaslReply> {
        Pop3Client::auth_abort(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::script::{Server, pipe};

    async fn pair() -> (Pop3Client, Server) {
        let (a, server) = pipe(b"+OK pop.example ready.\r\n").await;
        let client = Pop3Client::from_stream(a).await.expect("greeting");
        (client, server)
    }

    #[test]
    fn status_lines() {
        let r = |l: &str| Pop3Reply { line: l.into() };
        assert!(r("+OK").is_ok());
        assert!(r("+OK 2 320").is_ok());
        assert!(!r("+OKAY").is_ok());
        assert!(r("-ERR [AUTH] Authentication failed.").is_err());
        assert_eq!(r("-ERR [AUTH] Authentication failed.").code(), Some("AUTH"));
        assert_eq!(
            r("-ERR [SYS/TEMP] Temporary authentication failure.").text(),
            "Temporary authentication failure."
        );
        assert_eq!(r("-ERR No such message.").code(), None);
        assert_eq!(r("-ERR No such message.").text(), "No such message.");
        assert_eq!(continuation("+ e30="), Some("e30="));
        assert_eq!(continuation("+ "), Some(""));
        assert_eq!(continuation("+"), Some(""));
        assert_eq!(continuation("+OK"), None);
    }

    #[tokio::test]
    async fn multiline_replies_are_unstuffed() {
        let (mut c, mut s) = pair().await;
        assert_eq!(c.greeting().line, "+OK pop.example ready.");
        let server = tokio::spawn(async move {
            s.expect("RETR 1").await;
            s.send(b"+OK 20 octets\r\nS: x\r\n\r\n..dot\r\n...\r\n.\r\n")
                .await;
            s.expect("LIST").await;
            s.send(b"+OK 2 messages\r\n1 20\r\n2 7\r\n.\r\n").await;
            s.expect("RETR 9").await;
            s.send(b"-ERR No such message.\r\n").await;
            s.expect("STAT").await;
            s.send(b"+OK 2 27\r\n").await;
        });
        assert_eq!(
            c.retr(1).await.expect("retr"),
            b"S: x\r\n\r\n.dot\r\n..\r\n"
        );
        assert_eq!(c.list().await.expect("list"), [(1, 20), (2, 7)]);
        assert!(matches!(c.retr(9).await, Err(ClientError::Protocol(_))));
        assert_eq!(c.stat().await.expect("stat"), (2, 27));
        assert!(server.await.is_ok());
    }

    #[tokio::test]
    async fn oauthbearer_error_challenge_then_err() {
        let (mut c, mut s) = pair().await;
        let server = tokio::spawn(async move {
            s.expect("AUTH OAUTHBEARER").await;
            s.send(b"+ \r\n").await;
            s.expect(&b64(&oauthbearer_payload(Some("u"), "localhost", 110, "t")))
                .await;
            let json = br#"{"status":"invalid_token","scope":"openid","openid-configuration":"x"}"#;
            s.send(format!("+ {}\r\n", b64(json)).as_bytes()).await;
            s.expect("AQ==").await;
            s.send(b"-ERR [AUTH] Authentication failed.\r\n").await;
            s.expect(&format!("AUTH PLAIN {}", b64(b"\0u\0p"))).await;
            s.send(b"+OK Logged in.\r\n").await;
        });
        let out = c.oauthbearer("u", "t", false).await.expect("exchange");
        assert_eq!(out.reply.code(), Some("AUTH"));
        assert_eq!(
            out.challenge
                .and_then(|v| v["status"].as_str().map(String::from))
                .as_deref(),
            Some("invalid_token")
        );
        assert!(c.plain("u", "p", true).await.expect("plain").is_ok());
        assert!(server.await.is_ok());
    }
}
