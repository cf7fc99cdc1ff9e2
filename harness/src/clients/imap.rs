//! Raw IMAP4rev1 client for tests: tagged commands, literals read whole, SASL driven step by step
//! so tests can send malformed, aborted or hostile exchanges.

use std::net::SocketAddr;
use std::time::Duration;

use super::conn::Conn;
use super::{
    ClientError, ClientResult, Io, b64, deadline, read_exact_bytes, read_raw_line, trim_eol, unb64,
};
pub use super::{OAuthOutcome, oauthbearer_payload, plain_payload, xoauth2_payload};

/// The outcome of a tagged command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapReply {
    /// The tag this client sent (`A1`, `A2`, ...).
    pub tag: String,
    /// Untagged (`* ...`) lines received before the tagged one, literals included.
    pub untagged: Vec<String>,
    /// The tagged line without the tag, e.g. `OK [CAPABILITY ...] Logged in`. Empty if the
    /// server said `* BYE` and closed the connection without a tagged reply.
    pub tagged: String,
}

impl ImapReply {
    pub fn is_ok(&self) -> bool {
        self.status() == "OK"
    }
    pub fn is_no(&self) -> bool {
        self.status() == "NO"
    }
    pub fn is_bad(&self) -> bool {
        self.status() == "BAD"
    }
    /// `OK`, `NO` or `BAD` (empty if there was no tagged reply).
    pub fn status(&self) -> &str {
        self.tagged.split(' ').next().unwrap_or("")
    }
    /// The response code without brackets, e.g. `AUTHENTICATIONFAILED` or `READ-WRITE`.
    pub fn code(&self) -> Option<&str> {
        let rest = self.tagged.split_once(' ')?.1;
        let inner = rest.strip_prefix('[')?;
        inner.split_once(']').map(|(code, _)| code)
    }
    /// Whether an untagged `* BYE` was received.
    pub fn has_bye(&self) -> bool {
        self.untagged.iter().any(|l| l.starts_with("* BYE"))
    }
}

/// One step of an AUTHENTICATE exchange.
pub type SaslReply = super::SaslStep<ImapReply>;

/// One server response: a line, with any literals it announced read whole and inlined.
#[derive(Debug, Clone, Default)]
struct Response {
    /// The whole response without the final CRLF; literal bytes are inlined after their `{n}\r\n`.
    text: Vec<u8>,
    /// (offset in `text`, bytes) of every literal.
    literals: Vec<(usize, Vec<u8>)>,
}

impl Response {
    fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.text).into_owned()
    }
}

/// `{123}` or `{123+}` at the end of a line (CRLF already stripped): the literal length.
fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// IMAP quoted string (RFC 3501 `quoted`): escapes `\` and `"`.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

struct PendingAuth {
    tag: String,
    untagged: Vec<String>,
}

pub struct ImapClient {
    conn: Conn,
    greeting: String,
    next_tag: u32,
    auth: Option<PendingAuth>,
}

impl std::fmt::Debug for ImapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapClient")
            .field("greeting", &self.greeting)
            .field("peer", &self.conn.peer)
            .field("next_tag", &self.next_tag)
            .finish()
    }
}

impl ImapClient {
    /// Plain TCP; reads the greeting.
    pub async fn connect(addr: SocketAddr) -> ClientResult<Self> {
        Self::with_conn(Conn::tcp(addr).await?).await
    }

    /// Implicit TLS (IMAPS) trusting only `ca_pem`; reads the greeting.
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
            greeting: String::new(),
            next_tag: 1,
            auth: None,
        };
        client.greeting = client.read_line().await?;
        Ok(client)
    }

    /// The greeting line, e.g. `* OK [CAPABILITY ...] ready`.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// Deadline of each later read and write (default 10 s).
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

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.conn.timeout = timeout;
    }

    /// `STARTTLS`, then the TLS handshake trusting only `ca_pem`. Fails if the server refuses, or
    /// if it sent anything after its `OK` in plaintext (that would be a command-injection hole).
    pub async fn starttls(&mut self, ca_pem: &str) -> ClientResult<ImapReply> {
        let reply = self.command("STARTTLS").await?;
        if !reply.is_ok() {
            return Err(ClientError::Protocol(format!(
                "STARTTLS refused: {}",
                reply.tagged
            )));
        }
        self.conn.start_tls(ca_pem, "OK").await?;
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

    /// One response line without its CRLF; literals are read whole and included.
    /// `Err(Closed)` once the server has closed the connection.
    pub async fn read_line(&mut self) -> ClientResult<String> {
        Ok(self.read_response().await?.lossy())
    }

    /// Like [`read_line`](Self::read_line) with another deadline (e.g. waiting for a `* BYE`).
    pub async fn read_line_within(&mut self, limit: Duration) -> ClientResult<String> {
        let saved = std::mem::replace(&mut self.conn.timeout, limit);
        let r = self.read_line().await;
        self.conn.timeout = saved;
        r
    }

    async fn read_response(&mut self) -> ClientResult<Response> {
        let stream = &mut self.conn.stream;
        deadline(self.conn.timeout, "reading a response", async {
            let mut resp = Response::default();
            loop {
                let raw = read_raw_line(stream).await?;
                let line = trim_eol(raw.clone());
                match literal_len(&line) {
                    Some(n) => {
                        resp.text.extend_from_slice(&raw);
                        let bytes = read_exact_bytes(stream, n).await?;
                        resp.literals.push((resp.text.len(), bytes.clone()));
                        resp.text.extend_from_slice(&bytes);
                    }
                    None => {
                        resp.text.extend_from_slice(&line);
                        return Ok(resp);
                    }
                }
            }
        })
        .await
    }

    fn tag(&mut self) -> String {
        let tag = format!("A{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// Sends `<tag> <cmd>` and collects everything up to the tagged reply.
    pub async fn command(&mut self, cmd: &str) -> ClientResult<ImapReply> {
        let (reply, _) = self.command_raw(cmd).await?;
        Ok(reply)
    }

    async fn command_raw(&mut self, cmd: &str) -> ClientResult<(ImapReply, Vec<Response>)> {
        let tag = self.tag();
        self.send_line(&format!("{tag} {cmd}")).await?;
        self.until_tagged(tag).await
    }

    /// Reads until the tagged reply for `tag`. A `+` continuation here is a protocol error (the
    /// command did not ask for one). A close right after `* BYE` ends the command with an empty
    /// `tagged`.
    async fn until_tagged(&mut self, tag: String) -> ClientResult<(ImapReply, Vec<Response>)> {
        let prefix = format!("{tag} ");
        let mut untagged: Vec<String> = Vec::new();
        let mut raw = Vec::new();
        loop {
            let resp = match self.read_response().await {
                Ok(r) => r,
                Err(ClientError::Closed) if untagged.iter().any(|l| is_bye(l)) => {
                    let reply = ImapReply {
                        tag,
                        untagged,
                        tagged: String::new(),
                    };
                    return Ok((reply, raw));
                }
                Err(e) => return Err(e),
            };
            let text = resp.lossy();
            if let Some(rest) = text.strip_prefix(&prefix) {
                let reply = ImapReply {
                    tag,
                    untagged,
                    tagged: rest.to_string(),
                };
                return Ok((reply, raw));
            }
            if text.starts_with('+') {
                return Err(ClientError::Protocol(format!(
                    "unexpected continuation request: {text:?}"
                )));
            }
            untagged.push(text);
            raw.push(resp);
        }
    }

    /// `CAPABILITY`: the capability atoms (e.g. `IMAP4rev1`, `AUTH=PLAIN`, `STARTTLS`).
    pub async fn capabilities(&mut self) -> ClientResult<Vec<String>> {
        let reply = self.command("CAPABILITY").await?;
        if !reply.is_ok() {
            return Err(ClientError::Protocol(format!(
                "CAPABILITY failed: {}",
                reply.tagged
            )));
        }
        reply
            .untagged
            .iter()
            .find_map(|l| parse_capability_line(l))
            .ok_or_else(|| ClientError::Protocol(format!("no * CAPABILITY line: {reply:?}")))
    }

    /// Starts `AUTHENTICATE <mech>`; `initial_response` is sent as SASL-IR (`=` when empty).
    pub async fn auth_start(
        &mut self,
        mech: &str,
        initial_response: Option<&[u8]>,
    ) -> ClientResult<SaslReply> {
        let tag = self.tag();
        let line = match initial_response {
            None => format!("{tag} AUTHENTICATE {mech}"),
            Some([]) => format!("{tag} AUTHENTICATE {mech} ="),
            Some(ir) => format!("{tag} AUTHENTICATE {mech} {}", b64(ir)),
        };
        self.auth = Some(PendingAuth {
            tag,
            untagged: Vec::new(),
        });
        self.send_line(&line).await?;
        self.auth_read().await
    }

    /// Answers a challenge with `data` (base64-encoded; empty data sends an empty line).
    pub async fn auth_continue(&mut self, data: &[u8]) -> ClientResult<SaslReply> {
        self.auth_continue_raw(&b64(data)).await
    }

    /// Answers a challenge with a raw line (e.g. invalid base64).
    pub async fn auth_continue_raw(&mut self, line: &str) -> ClientResult<SaslReply> {
        if self.auth.is_none() {
            return Err(ClientError::Protocol(
                "no AUTHENTICATE exchange in progress".into(),
            ));
        }
        self.send_line(line).await?;
        self.auth_read().await
    }

    /// Cancels the exchange with `*` (RFC 3501 §6.2.2).
    pub async fn auth_abort(&mut self) -> ClientResult<SaslReply> {
        self.auth_continue_raw("*").await
    }

    async fn auth_read(&mut self) -> ClientResult<SaslReply> {
        loop {
            let read = self.read_line().await;
            let Some(pending) = self.auth.as_mut() else {
                return Err(ClientError::Protocol(
                    "no AUTHENTICATE exchange in progress".into(),
                ));
            };
            let text = match read {
                Ok(text) => text,
                // The server may end the session (e.g. too many failures) without a tagged reply.
                Err(ClientError::Closed) if pending.untagged.iter().any(|l| is_bye(l)) => {
                    let reply = ImapReply {
                        tag: pending.tag.clone(),
                        untagged: std::mem::take(&mut pending.untagged),
                        tagged: String::new(),
                    };
                    self.auth = None;
                    return Ok(SaslReply::Done(reply));
                }
                Err(e) => return Err(e),
            };
            if let Some(rest) = text.strip_prefix(&format!("{} ", pending.tag)) {
                let reply = ImapReply {
                    tag: pending.tag.clone(),
                    untagged: std::mem::take(&mut pending.untagged),
                    tagged: rest.to_string(),
                };
                self.auth = None;
                return Ok(SaslReply::Done(reply));
            }
            if let Some(rest) = text.strip_prefix('+') {
                return Ok(SaslReply::Challenge(unb64(rest)?));
            }
            pending.untagged.push(text);
        }
    }

    fn oauth_target(&self) -> (String, u16) {
        let port = self.conn.peer.map(|a| a.port()).unwrap_or(143);
        ("localhost".to_string(), port)
    }

    /// OAUTHBEARER with authzid = `user`. An RFC 7628 error challenge is answered with the dummy
    /// `AQ==` and returned decoded.
    pub async fn oauthbearer(
        &mut self,
        user: &str,
        token: &str,
        ir: bool,
    ) -> ClientResult<OAuthOutcome<ImapReply>> {
        let (host, port) = self.oauth_target();
        let payload = oauthbearer_payload(Some(user), &host, port, token);
        super::oauth_exchange(self, "OAUTHBEARER", &payload, ir).await
    }

    /// XOAUTH2; an error challenge is answered with `AQ==` like OAUTHBEARER.
    pub async fn xoauth2(
        &mut self,
        user: &str,
        token: &str,
        ir: bool,
    ) -> ClientResult<OAuthOutcome<ImapReply>> {
        super::oauth_exchange(self, "XOAUTH2", &xoauth2_payload(user, token), ir).await
    }

    /// PLAIN with an empty authzid.
    pub async fn plain(&mut self, user: &str, password: &str, ir: bool) -> ClientResult<ImapReply> {
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

    /// `LOGIN "user" "password"`.
    pub async fn login(&mut self, user: &str, password: &str) -> ClientResult<ImapReply> {
        self.command(&format!("LOGIN {} {}", quote(user), quote(password)))
            .await
    }

    /// `SELECT "mailbox"`.
    pub async fn select(&mut self, mailbox: &str) -> ClientResult<ImapReply> {
        self.command(&format!("SELECT {}", quote(mailbox))).await
    }

    /// `UID FETCH <uid> BODY.PEEK[]`: the message bytes exactly as the server sent them.
    pub async fn fetch_message(&mut self, uid: u32) -> ClientResult<Vec<u8>> {
        let (reply, raw) = self
            .command_raw(&format!("UID FETCH {uid} BODY.PEEK[]"))
            .await?;
        if !reply.is_ok() {
            return Err(ClientError::Protocol(format!(
                "UID FETCH {uid} failed: {}",
                reply.tagged
            )));
        }
        raw.into_iter()
            .find_map(body_literal)
            .ok_or_else(|| ClientError::Protocol(format!("no BODY[] literal in {reply:?}")))
    }

    /// `APPEND "mailbox" {n}` with a synchronizing literal.
    pub async fn append(&mut self, mailbox: &str, message: &[u8]) -> ClientResult<ImapReply> {
        let tag = self.tag();
        self.send_line(&format!(
            "{tag} APPEND {} {{{}}}",
            quote(mailbox),
            message.len()
        ))
        .await?;
        let mut untagged = Vec::new();
        loop {
            let text = self.read_line().await?;
            if let Some(rest) = text.strip_prefix(&format!("{tag} ")) {
                // Refused before the literal was sent.
                return Ok(ImapReply {
                    tag,
                    untagged,
                    tagged: rest.to_string(),
                });
            }
            if text.starts_with('+') {
                break;
            }
            untagged.push(text);
        }
        self.send_bytes(message).await?;
        self.send_bytes(b"\r\n").await?;
        let (mut reply, _) = self.until_tagged(tag).await?;
        untagged.append(&mut reply.untagged);
        reply.untagged = untagged;
        Ok(reply)
    }

    /// `LOGOUT`; tolerates the server closing right after `* BYE`.
    pub async fn logout(&mut self) -> ClientResult<ImapReply> {
        self.command("LOGOUT").await
    }
}

fn is_bye(line: &str) -> bool {
    line.starts_with("* BYE")
}

/// `* CAPABILITY a b c` -> `[a, b, c]`.
fn parse_capability_line(line: &str) -> Option<Vec<String>> {
    let mut words = line.split_ascii_whitespace();
    if words.next() != Some("*") || !words.next()?.eq_ignore_ascii_case("CAPABILITY") {
        return None;
    }
    Some(words.map(str::to_string).collect())
}

/// The literal following `BODY[] ` in a FETCH response.
fn body_literal(resp: Response) -> Option<Vec<u8>> {
    resp.literals.into_iter().find_map(|(offset, bytes)| {
        let before = resp.text.get(..offset)?;
        let open = before.iter().rposition(|&b| b == b'{')?;
        before[..open]
            .to_ascii_uppercase()
            .ends_with(b"BODY[] ")
            .then_some(bytes)
    })
}

#[async_trait::async_trait]
impl super::ContinuationSasl for ImapClient {
    type Reply = ImapReply;
    async fn start(&mut self, mech: &str, ir: Option<&[u8]>) -> ClientResult<SaslReply> {
        ImapClient::auth_start(self, mech, ir).await
    }
    async fn respond(&mut self, data: &[u8]) -> ClientResult<SaslReply> {
        ImapClient::auth_continue(self, data).await
    }
    async fn abort(&mut self) -> ClientResult<SaslReply> {
        ImapClient::auth_abort(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::script::{Server, pipe};
    use tokio::io::AsyncReadExt;

    async fn pair(greeting: &[u8]) -> (ImapClient, Server) {
        let (a, server) = pipe(greeting).await;
        let client = ImapClient::from_stream(a).await;
        assert!(client.is_ok(), "{client:?}");
        let Ok(client) = client else { unreachable!() };
        (client, server)
    }

    #[test]
    fn literal_lengths() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12}"), Some(12));
        assert_eq!(literal_len(b"A1 APPEND x {3+}"), Some(3));
        assert_eq!(literal_len(b"* OK {x}"), None);
        assert_eq!(literal_len(b"* OK {}"), None);
        assert_eq!(literal_len(b"* OK done"), None);
    }

    #[test]
    fn reply_accessors() {
        let r = ImapReply {
            tag: "A1".into(),
            untagged: vec!["* BYE bye".into()],
            tagged: "NO [AUTHENTICATIONFAILED] Authentication failed.".into(),
        };
        assert!(r.is_no() && !r.is_ok() && r.has_bye());
        assert_eq!(r.code(), Some("AUTHENTICATIONFAILED"));
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            parse_capability_line("* CAPABILITY IMAP4rev1 AUTH=PLAIN"),
            Some(vec!["IMAP4rev1".to_string(), "AUTH=PLAIN".to_string()])
        );
        assert_eq!(parse_capability_line("* OK hi"), None);
    }

    #[tokio::test]
    async fn command_collects_untagged_and_capabilities() {
        let (mut c, mut s) = pair(b"* OK [CAPABILITY IMAP4rev1] ready\r\n").await;
        assert_eq!(c.greeting(), "* OK [CAPABILITY IMAP4rev1] ready");
        let server = tokio::spawn(async move {
            s.expect("A1 CAPABILITY").await;
            s.send(
                b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=OAUTHBEARER\r\nA1 OK done\r\n",
            )
            .await;
            s.expect("A2 NOOP").await;
            s.send(b"* 3 EXISTS\r\nA2 OK NOOP completed\r\n").await;
            s
        });
        let caps = c.capabilities().await.unwrap_or_default();
        assert_eq!(
            caps,
            ["IMAP4rev1", "STARTTLS", "LOGINDISABLED", "AUTH=OAUTHBEARER"]
        );
        let r = c.command("NOOP").await.ok();
        assert_eq!(
            r,
            Some(ImapReply {
                tag: "A2".into(),
                untagged: vec!["* 3 EXISTS".into()],
                tagged: "OK NOOP completed".into()
            })
        );
        assert!(server.await.is_ok());
    }

    #[tokio::test]
    async fn fetch_returns_literal_bytes_exactly() {
        let (mut c, mut s) = pair(b"* OK hi\r\n").await;
        let body: &[u8] = b"Subject: x\r\n\r\nline\r\n.\r\n\xff{5}\r\n";
        let server = tokio::spawn(async move {
            s.expect("A1 UID FETCH 7 BODY.PEEK[]").await;
            let mut out = format!("* 1 FETCH (UID 7 BODY[] {{{}}}\r\n", body.len()).into_bytes();
            out.extend_from_slice(body);
            out.extend_from_slice(b")\r\nA1 OK Fetch completed.\r\n");
            s.send(&out).await;
        });
        let got = c.fetch_message(7).await;
        assert_eq!(got.ok().as_deref(), Some(body));
        assert!(server.await.is_ok());
    }

    #[tokio::test]
    async fn read_line_includes_literals() {
        let (mut c, mut s) = pair(b"* OK hi\r\n").await;
        s.send(b"* 1 FETCH (BODY[HEADER] {4}\r\nab\r\n BODY[TEXT] {1}\r\nz)\r\n")
            .await;
        let line = c.read_line().await.unwrap_or_default();
        assert_eq!(
            line,
            "* 1 FETCH (BODY[HEADER] {4}\r\nab\r\n BODY[TEXT] {1}\r\nz)"
        );
    }

    #[tokio::test]
    async fn oauthbearer_answers_error_challenge_with_dummy() {
        let (mut c, mut s) = pair(b"* OK hi\r\n").await;
        let json = br#"{"status":"invalid_token","scope":"openid email","openid-configuration":"http://x/.well-known/openid-configuration"}"#;
        let server = tokio::spawn(async move {
            s.expect("A1 AUTHENTICATE OAUTHBEARER").await;
            s.send(b"+ \r\n").await;
            let payload = oauthbearer_payload(Some("u@x"), "localhost", 143, "tok");
            s.expect(&b64(&payload)).await;
            s.send(format!("+ {}\r\n", b64(json)).as_bytes()).await;
            s.expect("AQ==").await;
            s.send(b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
                .await;
        });
        let out = c.oauthbearer("u@x", "tok", false).await;
        assert!(out.is_ok(), "{out:?}");
        let Ok(out) = out else { unreachable!() };
        assert_eq!(
            out.challenge
                .as_ref()
                .and_then(|v| v["status"].as_str().map(String::from))
                .as_deref(),
            Some("invalid_token")
        );
        assert_eq!(out.reply.code(), Some("AUTHENTICATIONFAILED"));
        assert!(server.await.is_ok());
    }

    #[tokio::test]
    async fn sasl_ir_abort_and_bye_then_close() {
        let (mut c, mut s) = pair(b"* OK hi\r\n").await;
        let server = tokio::spawn(async move {
            s.expect(&format!(
                "A1 AUTHENTICATE XOAUTH2 {}",
                b64(&xoauth2_payload("u", "t"))
            ))
            .await;
            s.send(b"+ e30=\r\n").await; // "{}"
            s.expect("*").await;
            s.send(b"A1 BAD Authentication aborted by client.\r\n")
                .await;
            s.expect("A2 AUTHENTICATE PLAIN =").await;
            s.send(b"* BYE Too many failures\r\n").await;
            drop(s);
        });
        let step = c
            .auth_start("XOAUTH2", Some(&xoauth2_payload("u", "t")))
            .await;
        assert_eq!(step.ok(), Some(SaslReply::Challenge(b"{}".to_vec())));
        match c.auth_abort().await {
            Ok(SaslReply::Done(r)) => assert_eq!(r.tagged, "BAD Authentication aborted by client."),
            other => panic!("{other:?}"),
        }
        // The empty initial response is sent as `=`; a BYE then EOF ends the exchange.
        match c.auth_start("PLAIN", Some(b"")).await {
            Ok(SaslReply::Done(r)) => assert!(r.has_bye() && r.tagged.is_empty(), "{r:?}"),
            other => panic!("{other:?}"),
        }
        assert!(server.await.is_ok());
        assert!(matches!(c.read_line().await, Err(ClientError::Closed)));
    }

    #[tokio::test]
    async fn logout_tolerates_close_after_bye_and_append_sends_literal() {
        let (mut c, mut s) = pair(b"* OK hi\r\n").await;
        let server = tokio::spawn(async move {
            s.expect("A1 APPEND \"INBOX\" {5}").await;
            s.send(b"+ Ready\r\n").await;
            let mut buf = [0u8; 7];
            let _ = s.io.read_exact(&mut buf).await;
            assert_eq!(&buf, b"hello\r\n");
            s.send(b"A1 OK [APPENDUID 1 1] Append completed.\r\n").await;
            s.expect("A2 LOGOUT").await;
            s.send(b"* BYE Logging out\r\n").await;
        });
        let r = c.append("INBOX", b"hello").await.ok();
        assert_eq!(r.as_ref().and_then(|r| r.code()), Some("APPENDUID 1 1"));
        let r = c.logout().await;
        assert!(
            matches!(&r, Ok(r) if r.has_bye() && r.tagged.is_empty()),
            "{r:?}"
        );
        assert!(server.await.is_ok());
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let (mut c, _s) = pair(b"* OK hi\r\n").await;
        let r = c.read_line_within(Duration::from_millis(50)).await;
        assert!(matches!(r, Err(ClientError::Timeout(..))), "{r:?}");
    }
}
