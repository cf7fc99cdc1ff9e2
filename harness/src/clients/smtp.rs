//! Raw SMTP/submission client for tests (multi-line replies, SASL step by step, dot-stuffed DATA),
//! plus a lettre-based submission helper for "a real client library" checks.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::conn::Conn;
use super::{
    ClientError, ClientResult, DEFAULT_TIMEOUT, Io, b64, deadline, parse_error_challenge,
    read_raw_line, trim_eol, unb64,
};
pub use super::{OAuthOutcome, oauthbearer_payload, plain_payload, xoauth2_payload};

/// One (possibly multi-line) SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    /// The text of each line after `NNN-` / `NNN `.
    pub lines: Vec<String>,
}

impl SmtpReply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// The enhanced status code of the first line, e.g. `5.7.8`.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?.split(' ').next()?;
        let parts: Vec<&str> = first.split('.').collect();
        let ok = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(first)
    }
    /// The first line as sent, e.g. `535 5.7.8 Authentication failed`.
    pub fn first_line(&self) -> String {
        match self.lines.first() {
            Some(l) if !l.is_empty() => format!("{} {l}", self.code),
            _ => self.code.to_string(),
        }
    }
    /// A `334` challenge, decoded.
    pub fn challenge(&self) -> Option<Vec<u8>> {
        if self.code != 334 {
            return None;
        }
        unb64(self.lines.first().map(String::as_str).unwrap_or("")).ok()
    }
}

impl std::fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            if i > 0 {
                f.write_str("\r\n")?;
            }
            write!(f, "{}{sep}{line}", self.code)?;
        }
        Ok(())
    }
}

/// Parses one reply line into (code, is_last, text).
fn parse_reply_line(line: &str) -> ClientResult<(u16, bool, &str)> {
    let bad = || ClientError::Protocol(format!("malformed SMTP reply line {line:?}"));
    let code_text = line.get(..3).ok_or_else(bad)?;
    if !code_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let code: u16 = code_text.parse().map_err(|_| bad())?;
    match line.as_bytes().get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(bad()),
    }
}

/// RFC 5321 §4.5.2 transparency: a line starting with `.` gets another `.`; the data is ended
/// with CRLF if it does not already end a line, then the `.` terminator follows.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    let mut at_line_start = true;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !data.is_empty() && !data.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

pub struct SmtpClient {
    conn: Conn,
    greeting: SmtpReply,
}

impl std::fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClient")
            .field("greeting", &self.greeting)
            .finish()
    }
}

impl SmtpClient {
    /// Plain TCP; reads the greeting.
    pub async fn connect(addr: SocketAddr) -> ClientResult<Self> {
        Self::with_conn(Conn::tcp(addr).await?).await
    }

    /// Implicit TLS (port 465 style) trusting only `ca_pem`; reads the greeting.
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
            greeting: SmtpReply {
                code: 0,
                lines: Vec::new(),
            },
        };
        client.greeting = client.read_reply().await?;
        Ok(client)
    }

    pub fn greeting(&self) -> &SmtpReply {
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

    /// `STARTTLS`, then the handshake trusting only `ca_pem`. Send EHLO again afterwards. Fails
    /// if the server refuses or sent anything after its `220` in plaintext.
    pub async fn starttls(&mut self, ca_pem: &str) -> ClientResult<SmtpReply> {
        let reply = self.command("STARTTLS").await?;
        if reply.code != 220 {
            return Err(ClientError::Protocol(format!("STARTTLS refused: {reply}")));
        }
        self.conn.start_tls(ca_pem, "220").await?;
        Ok(reply)
    }

    /// `EHLO name`: the extension lines (everything after the first line), e.g. `AUTH PLAIN`.
    pub async fn ehlo(&mut self, name: &str) -> ClientResult<Vec<String>> {
        let reply = self.command(&format!("EHLO {name}")).await?;
        if reply.code != 250 {
            return Err(ClientError::Protocol(format!("EHLO refused: {reply}")));
        }
        Ok(reply.lines.into_iter().skip(1).collect())
    }

    /// Sends one line (CRLF appended) and reads the reply.
    pub async fn command(&mut self, line: &str) -> ClientResult<SmtpReply> {
        self.send_line(line).await?;
        self.read_reply().await
    }

    /// Sends one line; CRLF is appended.
    pub async fn send_line(&mut self, line: &str) -> ClientResult<()> {
        self.send_bytes(format!("{line}\r\n").as_bytes()).await
    }

    /// Sends raw bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> ClientResult<()> {
        self.conn.send_bytes(bytes).await
    }

    /// Reads one (multi-line) reply. `Err(Closed)` once the server has closed the connection.
    pub async fn read_reply(&mut self) -> ClientResult<SmtpReply> {
        let stream = &mut self.conn.stream;
        deadline(self.conn.timeout, "reading a reply", async {
            let mut lines = Vec::new();
            loop {
                let raw = trim_eol(read_raw_line(stream).await?);
                let text = String::from_utf8_lossy(&raw);
                let (code, last, rest) = parse_reply_line(&text)?;
                lines.push(rest.to_string());
                if last {
                    return Ok(SmtpReply { code, lines });
                }
            }
        })
        .await
    }

    /// Like [`read_reply`](Self::read_reply) with another deadline (e.g. waiting for a `421`).
    pub async fn read_reply_within(&mut self, limit: Duration) -> ClientResult<SmtpReply> {
        let saved = std::mem::replace(&mut self.conn.timeout, limit);
        let r = self.read_reply().await;
        self.conn.timeout = saved;
        r
    }

    /// `AUTH <mech> [<initial response>]` (`=` for an empty initial response).
    pub async fn auth_start(&mut self, mech: &str, ir: Option<&[u8]>) -> ClientResult<SmtpReply> {
        let line = match ir {
            None => format!("AUTH {mech}"),
            Some([]) => format!("AUTH {mech} ="),
            Some(ir) => format!("AUTH {mech} {}", b64(ir)),
        };
        self.command(&line).await
    }

    /// Answers a `334` challenge with `data`, base64-encoded.
    pub async fn auth_continue(&mut self, data: &[u8]) -> ClientResult<SmtpReply> {
        self.command(&b64(data)).await
    }

    /// Cancels the exchange with `*` (RFC 4954 §4).
    pub async fn auth_abort(&mut self) -> ClientResult<SmtpReply> {
        self.command("*").await
    }

    /// Sends the first client message as initial response or after the server's empty `334`.
    async fn send_first(
        &mut self,
        mech: &str,
        payload: &[u8],
        ir: bool,
    ) -> ClientResult<SmtpReply> {
        if ir {
            return self.auth_start(mech, Some(payload)).await;
        }
        let reply = self.auth_start(mech, None).await?;
        if reply.code == 334 {
            self.auth_continue(payload).await
        } else {
            Ok(reply)
        }
    }

    async fn oauth_exchange(
        &mut self,
        mech: &str,
        payload: &[u8],
        ir: bool,
    ) -> ClientResult<OAuthOutcome<SmtpReply>> {
        let reply = self.send_first(mech, payload, ir).await?;
        if reply.code != 334 {
            return Ok(OAuthOutcome {
                challenge: None,
                reply,
            });
        }
        let bytes = reply.challenge().ok_or_else(|| {
            ClientError::Protocol(format!("{mech}: challenge is not base64: {reply}"))
        })?;
        let challenge = parse_error_challenge(&bytes).unwrap_or_else(|| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        let reply = self.auth_continue(b"\x01").await?;
        if reply.code == 334 {
            let _ = self.auth_abort().await;
            return Err(ClientError::Protocol(format!(
                "{mech}: second challenge {reply}"
            )));
        }
        Ok(OAuthOutcome {
            challenge: Some(challenge),
            reply,
        })
    }

    /// OAUTHBEARER with authzid = `user`; an error challenge is answered with `AQ==`.
    pub async fn oauthbearer(
        &mut self,
        user: &str,
        token: &str,
        ir: bool,
    ) -> ClientResult<OAuthOutcome<SmtpReply>> {
        let port = self.conn.peer.map(|a| a.port()).unwrap_or(587);
        let payload = oauthbearer_payload(Some(user), "localhost", port, token);
        self.oauth_exchange("OAUTHBEARER", &payload, ir).await
    }

    /// XOAUTH2; an error challenge is answered with `AQ==`.
    pub async fn xoauth2(
        &mut self,
        user: &str,
        token: &str,
        ir: bool,
    ) -> ClientResult<OAuthOutcome<SmtpReply>> {
        self.oauth_exchange("XOAUTH2", &xoauth2_payload(user, token), ir)
            .await
    }

    /// PLAIN with an empty authzid.
    pub async fn plain(&mut self, user: &str, password: &str, ir: bool) -> ClientResult<SmtpReply> {
        self.send_first("PLAIN", &plain_payload(user, password), ir)
            .await
    }

    /// LOGIN: user name as initial response (`ir`) or after `334 VXNlcm5hbWU6`, then password.
    pub async fn login(&mut self, user: &str, password: &str, ir: bool) -> ClientResult<SmtpReply> {
        let reply = self.send_first("LOGIN", user.as_bytes(), ir).await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        self.auth_continue(password.as_bytes()).await
    }

    /// MAIL FROM, RCPT TO for each recipient, DATA with dot-stuffing. Returns the first refusal
    /// or the reply to the final `.`.
    pub async fn send_mail(
        &mut self,
        from: &str,
        to: &[&str],
        data: &[u8],
    ) -> ClientResult<SmtpReply> {
        let reply = self.command(&format!("MAIL FROM:<{from}>")).await?;
        if !reply.is_positive() {
            return Ok(reply);
        }
        for rcpt in to {
            let reply = self.command(&format!("RCPT TO:<{rcpt}>")).await?;
            if !reply.is_positive() {
                return Ok(reply);
            }
        }
        let reply = self.command("DATA").await?;
        if reply.code != 354 {
            return Ok(reply);
        }
        self.send_bytes(&dot_stuff(data)).await?;
        self.read_reply().await
    }

    pub async fn quit(&mut self) -> ClientResult<SmtpReply> {
        self.command("QUIT").await
    }
}

/// Submits `raw_message` with lettre over STARTTLS (trusting only `ca_pem`, certificate name
/// `localhost`), authenticating with `mechanism` (`Xoauth2` takes the access token as secret).
/// The server receives `raw_message` byte for byte (a missing final CRLF is added).
#[allow(clippy::too_many_arguments)] // mirrors what a test states; a struct would only add noise
pub async fn submit_with_lettre(
    addr: SocketAddr,
    ca_pem: &str,
    user: &str,
    token_or_password: &str,
    mechanism: Mechanism,
    from: &str,
    to: &[&str],
    raw_message: &[u8],
) -> anyhow::Result<()> {
    mail_oidc_server::tls::install_crypto_provider();
    let cert = Certificate::from_pem(ca_pem.as_bytes()).context("CA PEM for lettre")?;
    let tls = TlsParameters::builder(super::tls::SERVER_NAME.to_string())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(cert)
        .build_rustls()
        .context("lettre TLS parameters")?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .tls(Tls::Required(tls))
        .credentials(Credentials::new(
            user.to_string(),
            token_or_password.to_string(),
        ))
        .authentication(vec![mechanism])
        .timeout(Some(DEFAULT_TIMEOUT))
        .build();
    let from = from
        .parse()
        .with_context(|| format!("sender address {from:?}"))?;
    let to = to
        .iter()
        .map(|t| {
            t.parse()
                .with_context(|| format!("recipient address {t:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let envelope = Envelope::new(Some(from), to).context("envelope")?;
    // lettre always writes CRLF "." CRLF after the data: drop the message's own final CRLF so
    // the server receives (and stores) exactly `raw_message`.
    let data = raw_message.strip_suffix(b"\r\n").unwrap_or(raw_message);
    let response = transport
        .send_raw(&envelope, data)
        .await
        .context("lettre submission")?;
    anyhow::ensure!(
        response.is_positive(),
        "submission not accepted: {response:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::BoxedIo;
    use crate::clients::script::{Server, pipe};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    async fn pair() -> (SmtpClient, Server) {
        let (a, server) = pipe(b"220-mx.example ESMTP\r\n220 ready\r\n").await;
        let client = SmtpClient::from_stream(a).await.expect("greeting");
        (client, server)
    }

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line("250-PIPELINING").ok(),
            Some((250, false, "PIPELINING"))
        );
        assert_eq!(parse_reply_line("250 OK").ok(), Some((250, true, "OK")));
        assert_eq!(parse_reply_line("354").ok(), Some((354, true, "")));
        assert!(parse_reply_line("25").is_err());
        assert!(parse_reply_line("abc def").is_err());
        assert!(parse_reply_line("250xOK").is_err());
        let r = SmtpReply {
            code: 535,
            lines: vec!["5.7.8 Authentication failed".into()],
        };
        assert_eq!(r.enhanced(), Some("5.7.8"));
        assert_eq!(r.first_line(), "535 5.7.8 Authentication failed");
        let c = SmtpReply {
            code: 334,
            lines: vec!["e30=".into()],
        };
        assert_eq!(c.challenge(), Some(b"{}".to_vec()));
        assert_eq!(
            SmtpReply {
                code: 250,
                lines: vec!["a".into(), "b".into()]
            }
            .to_string(),
            "250-a\r\n250 b"
        );
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(
            dot_stuff(b".a\r\n..b\r\nc.d"),
            b"..a\r\n...b\r\nc.d\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"x\r\n.\r\n"), b"x\r\n..\r\n.\r\n");
    }

    #[tokio::test]
    async fn ehlo_and_greeting_are_multiline() {
        let (mut c, mut s) = pair().await;
        assert_eq!(c.greeting().lines, ["mx.example ESMTP", "ready"]);
        let server = tokio::spawn(async move {
            s.expect("EHLO test").await;
            s.send(b"250-mx.example\r\n250-STARTTLS\r\n250 AUTH OAUTHBEARER XOAUTH2\r\n")
                .await;
        });
        let ext = c.ehlo("test").await.unwrap_or_default();
        assert_eq!(ext, ["STARTTLS", "AUTH OAUTHBEARER XOAUTH2"]);
        assert!(server.await.is_ok());
    }

    #[tokio::test]
    async fn xoauth2_error_challenge_then_535() {
        let (mut c, mut s) = pair().await;
        let server = tokio::spawn(async move {
            s.expect("AUTH XOAUTH2").await;
            s.send(b"334 \r\n").await;
            s.expect(&b64(&xoauth2_payload("u", "t"))).await;
            let json = br#"{"status":"invalid_token","scope":"openid","openid-configuration":"x"}"#;
            s.send(format!("334 {}\r\n", b64(json)).as_bytes()).await;
            s.expect("AQ==").await;
            s.send(b"535 5.7.8 Authentication failed\r\n").await;
        });
        let out = c.xoauth2("u", "t", false).await.expect("exchange");
        assert_eq!(out.reply.code, 535);
        assert_eq!(
            out.challenge
                .and_then(|v| v["status"].as_str().map(String::from))
                .as_deref(),
            Some("invalid_token")
        );
        assert!(server.await.is_ok());
    }

    #[tokio::test]
    async fn login_and_send_mail() {
        let (mut c, mut s) = pair().await;
        let server = tokio::spawn(async move {
            s.expect(&format!("AUTH LOGIN {}", b64(b"u"))).await;
            s.send(b"334 UGFzc3dvcmQ6\r\n").await;
            s.expect(&b64(b"p")).await;
            s.send(b"235 2.7.0 Authentication successful\r\n").await;
            s.expect("MAIL FROM:<a@x>").await;
            s.send(b"250 2.1.0 Ok\r\n").await;
            s.expect("RCPT TO:<b@x>").await;
            s.send(b"250 2.1.5 Ok\r\n").await;
            s.expect("RCPT TO:<c@x>").await;
            s.send(b"250 2.1.5 Ok\r\n").await;
            s.expect("DATA").await;
            s.send(b"354 go ahead\r\n").await;
            let mut body = Vec::new();
            while !body.ends_with(b"\r\n.\r\n") {
                let mut b = [0u8; 1];
                if s.io.read_exact(&mut b).await.is_err() {
                    break;
                }
                body.push(b[0]);
            }
            assert_eq!(body, b"S: x\r\n\r\n..hidden\r\n.\r\n");
            s.send(b"250 2.0.0 queued\r\n").await;
        });
        let r = c.login("u", "p", true).await.expect("login");
        assert_eq!(r.code, 235);
        let r = c
            .send_mail("a@x", &["b@x", "c@x"], b"S: x\r\n\r\n.hidden")
            .await;
        assert_eq!(r.ok().map(|r| r.code), Some(250));
        assert!(server.await.is_ok());
    }

    #[tokio::test]
    async fn refused_recipient_stops_the_transaction() {
        let (mut c, mut s) = pair().await;
        let server = tokio::spawn(async move {
            s.expect("MAIL FROM:<a@x>").await;
            s.send(b"250 Ok\r\n").await;
            s.expect("RCPT TO:<nobody@x>").await;
            s.send(b"550 5.1.1 no such user\r\n").await;
        });
        let r = c
            .send_mail("a@x", &["nobody@x"], b"x")
            .await
            .expect("reply");
        assert_eq!(r.first_line(), "550 5.1.1 no such user");
        assert!(server.await.is_ok());
    }

    /// lettre over STARTTLS with XOAUTH2 against a scripted server that trusts the test CA.
    #[tokio::test]
    async fn lettre_submission_uses_starttls_and_xoauth2() {
        use crate::clients::tls::tests::test_pki;
        let (ca, acceptor) = test_pki();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut io: BufReader<BoxedIo> = BufReader::new(Box::new(tcp));
            async fn line(io: &mut BufReader<BoxedIo>) -> String {
                let mut l = String::new();
                let _ = io.read_line(&mut l).await;
                l.trim_end().to_string()
            }
            let _ = io.get_mut().write_all(b"220 test ESMTP\r\n").await;
            assert!(line(&mut io).await.starts_with("EHLO "));
            let _ = io
                .get_mut()
                .write_all(b"250-test\r\n250 STARTTLS\r\n")
                .await;
            assert_eq!(line(&mut io).await, "STARTTLS");
            let _ = io.get_mut().write_all(b"220 2.0.0 go\r\n").await;
            let tls = acceptor.accept(io.into_inner()).await.expect("tls");
            let mut io: BufReader<BoxedIo> = BufReader::new(Box::new(tls));
            assert!(line(&mut io).await.starts_with("EHLO "));
            let _ = io
                .get_mut()
                .write_all(b"250-test\r\n250 AUTH XOAUTH2 OAUTHBEARER\r\n")
                .await;
            assert_eq!(
                line(&mut io).await,
                format!("AUTH XOAUTH2 {}", b64(&xoauth2_payload("u@x", "tok")))
            );
            let _ = io.get_mut().write_all(b"235 2.7.0 ok\r\n").await;
            assert!(line(&mut io).await.starts_with("MAIL FROM:<u@x>"));
            let _ = io.get_mut().write_all(b"250 ok\r\n").await;
            assert!(line(&mut io).await.starts_with("RCPT TO:<v@x>"));
            let _ = io.get_mut().write_all(b"250 ok\r\n").await;
            assert_eq!(line(&mut io).await, "DATA");
            let _ = io.get_mut().write_all(b"354 go\r\n").await;
            let mut body = Vec::new();
            loop {
                let l = line(&mut io).await;
                if l == "." {
                    break;
                }
                body.push(l);
            }
            // Exactly the message: no blank line added before the terminating dot.
            assert_eq!(body, ["Subject: hi", "", "..dot"]);
            let _ = io.get_mut().write_all(b"250 2.0.0 queued\r\n").await;
            assert_eq!(line(&mut io).await, "QUIT");
            let _ = io.get_mut().write_all(b"221 bye\r\n").await;
        });
        let r = submit_with_lettre(
            addr,
            &ca,
            "u@x",
            "tok",
            Mechanism::Xoauth2,
            "u@x",
            &["v@x"],
            b"Subject: hi\r\n\r\n.dot\r\n",
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert!(server.await.is_ok());
    }
}
