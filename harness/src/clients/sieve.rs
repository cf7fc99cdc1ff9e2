//! Raw ManageSieve client (RFC 5804) for tests: capabilities, STARTTLS, quoted strings and
//! literals both ways, SASL driven step by step, and the script commands.

use std::net::SocketAddr;
use std::time::Duration;

use super::conn::Conn;
use super::{
    ClientError, ClientResult, Io, b64, deadline, read_exact_bytes, read_raw_line, trim_eol, unb64,
};
pub use super::{OAuthOutcome, oauthbearer_payload, plain_payload, xoauth2_payload};

/// Longest string this client sends quoted (RFC 5804 limits quoted strings to 1024 octets);
/// longer ones go as non-synchronising literals.
const MAX_QUOTED: usize = 1024;

/// One element of a server line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    Atom(String),
    /// A quoted string or a literal, unescaped.
    Str(Vec<u8>),
    /// A parenthesised response code, e.g. `QUOTA/MAXSIZE` or `SASL "..."`, as its words.
    Code(Vec<Word>),
}

impl Word {
    pub fn as_str(&self) -> Option<String> {
        match self {
            Word::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            Word::Atom(a) => Some(a.clone()),
            Word::Code(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bye,
}

/// A final response: `OK`/`NO`/`BYE`, its code, its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveResponse {
    pub status: Status,
    /// The code's name in upper case, e.g. `QUOTA/MAXSIZE`, `SASL`, `TAG`.
    pub code: Option<String>,
    /// The string after the code's name (`SASL "<base64>"`, `TAG "<tag>"`).
    pub code_data: Option<Vec<u8>>,
    /// The human-readable text (empty when there was none).
    pub text: String,
    /// The line as received (literals as `{n}`), for messages.
    pub line: String,
}

/// The lines a command got: data lines (capabilities, scripts) and the final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveReply {
    pub data: Vec<Vec<Word>>,
    pub response: SieveResponse,
}

impl SieveReply {
    pub fn is_ok(&self) -> bool {
        self.response.status == Status::Ok
    }
    pub fn is_no(&self) -> bool {
        self.response.status == Status::No
    }
    pub fn is_bye(&self) -> bool {
        self.response.status == Status::Bye
    }
    pub fn code(&self) -> Option<&str> {
        self.response.code.as_deref()
    }
    pub fn text(&self) -> &str {
        &self.response.text
    }
    /// The final line as received, e.g. `NO (QUOTA/MAXSIZE) "Script too big."`.
    pub fn line(&self) -> &str {
        &self.response.line
    }
}

/// One step of an AUTHENTICATE exchange.
pub type SaslReply = super::SaslStep<SieveReply>;

/// A server line: its words, and the line as text for messages.
struct Line {
    words: Vec<Word>,
    text: String,
}

/// `bytes` as a quoted string when it can be one, else as a non-synchronising literal.
pub fn string(bytes: &[u8]) -> Vec<u8> {
    let quotable = bytes.len() <= MAX_QUOTED
        && std::str::from_utf8(bytes).is_ok()
        && !bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0));
    if !quotable {
        let mut out = format!("{{{}+}}\r\n", bytes.len()).into_bytes();
        out.extend_from_slice(bytes);
        return out;
    }
    let mut out = vec![b'"'];
    for &b in bytes {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// Splits one line (CRLF removed) into words; a trailing `{n}` announces a literal, whose bytes
/// `literal` must read (the line goes on after them).
fn words_of(line: &[u8]) -> ClientResult<(Vec<Word>, Option<usize>)> {
    let bad = |what: &str| {
        ClientError::Protocol(format!(
            "{what} in server line {:?}",
            String::from_utf8_lossy(line)
        ))
    };
    let mut stack: Vec<Vec<Word>> = vec![Vec::new()];
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        match b {
            b' ' => i += 1,
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err(bad("unterminated quoted string")),
                        Some(b'\\') => {
                            let escaped = line.get(i + 1).ok_or_else(|| bad("bad escape"))?;
                            s.push(*escaped);
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                stack
                    .last_mut()
                    .ok_or_else(|| bad("nesting"))?
                    .push(Word::Str(s));
            }
            b'(' => {
                stack.push(Vec::new());
                i += 1;
            }
            b')' => {
                let inner = stack.pop().ok_or_else(|| bad("unbalanced parenthesis"))?;
                stack
                    .last_mut()
                    .ok_or_else(|| bad("unbalanced parenthesis"))?
                    .push(Word::Code(inner));
                i += 1;
            }
            b'{' => {
                let end = line[i..]
                    .iter()
                    .position(|&c| c == b'}')
                    .ok_or_else(|| bad("unterminated literal length"))?;
                if i + end + 1 != line.len() {
                    return Err(bad("literal length not at the end of the line"));
                }
                let digits = &line[i + 1..i + end];
                let digits = digits.strip_suffix(b"+").unwrap_or(digits);
                let n = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(|| bad("bad literal length"))?;
                if stack.len() != 1 {
                    return Err(bad("literal inside a response code"));
                }
                return Ok((stack.pop().unwrap_or_default(), Some(n)));
            }
            _ => {
                let start = i;
                while i < line.len() && !matches!(line[i], b' ' | b'(' | b')' | b'"' | b'{') {
                    i += 1;
                }
                let atom = String::from_utf8_lossy(&line[start..i]).into_owned();
                stack
                    .last_mut()
                    .ok_or_else(|| bad("nesting"))?
                    .push(Word::Atom(atom));
            }
        }
    }
    if stack.len() != 1 {
        return Err(bad("unbalanced parenthesis"));
    }
    Ok((stack.pop().unwrap_or_default(), None))
}

/// The final response a line is, if its first word is `OK`, `NO` or `BYE`.
fn response_of(line: &Line) -> Option<SieveResponse> {
    let mut words = line.words.iter();
    let status = match words.next()? {
        Word::Atom(a) if a.eq_ignore_ascii_case("OK") => Status::Ok,
        Word::Atom(a) if a.eq_ignore_ascii_case("NO") => Status::No,
        Word::Atom(a) if a.eq_ignore_ascii_case("BYE") => Status::Bye,
        _ => return None,
    };
    let mut code = None;
    let mut code_data = None;
    let mut text = String::new();
    for word in words {
        match word {
            Word::Code(inner) => {
                code = inner
                    .first()
                    .and_then(Word::as_str)
                    .map(|c| c.to_ascii_uppercase());
                code_data = inner.get(1).and_then(|w| match w {
                    Word::Str(s) => Some(s.clone()),
                    _ => None,
                });
            }
            Word::Str(s) => text = String::from_utf8_lossy(s).into_owned(),
            Word::Atom(a) => text = a.clone(),
        }
    }
    Some(SieveResponse {
        status,
        code,
        code_data,
        text,
        line: line.text.clone(),
    })
}

pub struct SieveClient {
    conn: Conn,
    /// The capabilities last announced (greeting, STARTTLS, CAPABILITY), in order.
    capabilities: Vec<(String, Option<String>)>,
    greeting: SieveResponse,
}

impl std::fmt::Debug for SieveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SieveClient")
            .field("peer", &self.conn.peer)
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

impl SieveClient {
    /// Plain TCP; reads the greeting (capabilities, then `OK`).
    pub async fn connect(addr: SocketAddr) -> ClientResult<Self> {
        Self::with_conn(Conn::tcp(addr).await?).await
    }

    /// Any stream (unit tests use an in-memory duplex); reads the greeting.
    pub async fn from_stream(stream: impl Io + 'static) -> ClientResult<Self> {
        Self::with_conn(Conn::new(Box::new(stream), None)).await
    }

    async fn with_conn(conn: Conn) -> ClientResult<Self> {
        let mut client = Self {
            conn,
            capabilities: Vec::new(),
            greeting: SieveResponse {
                status: Status::Bye,
                code: None,
                code_data: None,
                text: String::new(),
                line: String::new(),
            },
        };
        let reply = client.read_reply().await?;
        if !reply.is_ok() {
            return Err(ClientError::Protocol(format!(
                "greeting is not OK: {}",
                reply.line()
            )));
        }
        client.capabilities = capabilities_of(&reply);
        client.greeting = reply.response;
        Ok(client)
    }

    /// The greeting's final `OK` line.
    pub fn greeting(&self) -> &SieveResponse {
        &self.greeting
    }

    /// The capabilities last announced, `(NAME, value)` in order.
    pub fn capabilities(&self) -> &[(String, Option<String>)] {
        &self.capabilities
    }

    /// The value of one capability (`Some("")` for a capability without value).
    pub fn capability(&self, name: &str) -> Option<&str> {
        self.capabilities
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// The mechanisms of the last announced `SASL` capability.
    pub fn sasl_mechanisms(&self) -> Vec<String> {
        self.capability("SASL")
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
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

    /// `CAPABILITY`; the announced list is kept.
    pub async fn refresh_capabilities(&mut self) -> ClientResult<SieveReply> {
        let reply = self.command("CAPABILITY").await?;
        if reply.is_ok() {
            self.capabilities = capabilities_of(&reply);
        }
        Ok(reply)
    }

    /// `STARTTLS`, the handshake trusting only `ca_pem`, then the capabilities the server sends
    /// again unasked (RFC 5804 2.2), which are kept. Fails if the server refuses or sent anything
    /// after its `OK` in plaintext.
    pub async fn starttls(&mut self, ca_pem: &str) -> ClientResult<SieveReply> {
        let reply = self.command("STARTTLS").await?;
        if !reply.is_ok() {
            return Err(ClientError::Protocol(format!(
                "STARTTLS refused: {}",
                reply.line()
            )));
        }
        self.conn.start_tls(ca_pem, "OK").await?;
        let caps = self.read_reply().await?;
        if !caps.is_ok() {
            return Err(ClientError::Protocol(format!(
                "capabilities after STARTTLS: {}",
                caps.line()
            )));
        }
        self.capabilities = capabilities_of(&caps);
        Ok(caps)
    }

    /// Sends raw bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> ClientResult<()> {
        self.conn.send_bytes(bytes).await
    }

    /// Sends one line; CRLF is appended.
    pub async fn send_line(&mut self, line: &str) -> ClientResult<()> {
        self.send_bytes(format!("{line}\r\n").as_bytes()).await
    }

    /// Sends a command line as it is (CRLF appended) and reads its reply.
    pub async fn command(&mut self, line: &str) -> ClientResult<SieveReply> {
        self.send_line(line).await?;
        self.read_reply().await
    }

    /// Sends `name` followed by each argument as a string (quoted or literal), then reads the
    /// reply.
    pub async fn command_with(&mut self, name: &str, args: &[&[u8]]) -> ClientResult<SieveReply> {
        let mut bytes = name.as_bytes().to_vec();
        for arg in args {
            bytes.push(b' ');
            bytes.extend_from_slice(&string(arg));
        }
        bytes.extend_from_slice(b"\r\n");
        self.send_bytes(&bytes).await?;
        self.read_reply().await
    }

    /// One server line with its literals. `Err(Closed)` at the end of the stream.
    async fn read_line(&mut self) -> ClientResult<Line> {
        let stream = &mut self.conn.stream;
        deadline(self.conn.timeout, "reading a line", async {
            let mut words = Vec::new();
            let mut text = String::new();
            loop {
                let raw = trim_eol(read_raw_line(stream).await?);
                text.push_str(&String::from_utf8_lossy(&raw));
                let (more, literal) = words_of(&raw)?;
                words.extend(more);
                let Some(n) = literal else {
                    return Ok(Line { words, text });
                };
                words.push(Word::Str(read_exact_bytes(stream, n).await?));
            }
        })
        .await
    }

    /// Reads data lines up to the final `OK`/`NO`/`BYE`.
    pub async fn read_reply(&mut self) -> ClientResult<SieveReply> {
        let mut data = Vec::new();
        loop {
            let line = self.read_line().await?;
            if let Some(response) = response_of(&line) {
                return Ok(SieveReply { data, response });
            }
            data.push(line.words);
        }
    }

    /// Like [`read_reply`](Self::read_reply) with another deadline (e.g. waiting for a `BYE`).
    pub async fn read_reply_within(&mut self, limit: Duration) -> ClientResult<SieveReply> {
        let saved = std::mem::replace(&mut self.conn.timeout, limit);
        let r = self.read_reply().await;
        self.conn.timeout = saved;
        r
    }

    /// A challenge (a line that is one string) or the final response.
    async fn read_sasl(&mut self) -> ClientResult<SaslReply> {
        let line = self.read_line().await?;
        if let Some(response) = response_of(&line) {
            return Ok(SaslReply::Done(SieveReply {
                data: Vec::new(),
                response,
            }));
        }
        match line.words.as_slice() {
            [Word::Str(s)] => Ok(SaslReply::Challenge(unb64(&String::from_utf8_lossy(s))?)),
            _ => Err(ClientError::Protocol(format!(
                "neither a challenge nor a response: {:?}",
                line.text
            ))),
        }
    }

    /// `AUTHENTICATE "<mech>" ["<initial response>"]`: the initial response is base64, quoted
    /// or as a literal when long; `Some(&[])` sends the empty string.
    pub async fn auth_start(
        &mut self,
        mechanism: &str,
        initial: Option<&[u8]>,
    ) -> ClientResult<SaslReply> {
        let mut bytes = b"AUTHENTICATE ".to_vec();
        bytes.extend_from_slice(&string(mechanism.as_bytes()));
        if let Some(ir) = initial {
            bytes.push(b' ');
            bytes.extend_from_slice(&string(b64(ir).as_bytes()));
        }
        bytes.extend_from_slice(b"\r\n");
        self.send_bytes(&bytes).await?;
        self.read_sasl().await
    }

    /// Answers a challenge with `data`, base64 in a string.
    pub async fn auth_continue(&mut self, data: &[u8]) -> ClientResult<SaslReply> {
        self.auth_continue_raw(&b64(data)).await
    }

    /// Answers a challenge with `text` as the string's contents (e.g. invalid base64).
    pub async fn auth_continue_raw(&mut self, text: &str) -> ClientResult<SaslReply> {
        let mut bytes = string(text.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send_bytes(&bytes).await?;
        self.read_sasl().await
    }

    /// Cancels the exchange with `"*"`.
    pub async fn auth_abort(&mut self) -> ClientResult<SaslReply> {
        self.auth_continue_raw("*").await
    }

    /// OAUTHBEARER with authzid = `user`; an RFC 7628 error challenge is answered with `AQ==`.
    pub async fn oauthbearer(
        &mut self,
        user: &str,
        token: &str,
        ir: bool,
    ) -> ClientResult<OAuthOutcome<SieveReply>> {
        let port = self.conn.peer.map(|a| a.port()).unwrap_or(4190);
        let payload = oauthbearer_payload(Some(user), "localhost", port, token);
        super::oauth_exchange(self, "OAUTHBEARER", &payload, ir).await
    }

    /// XOAUTH2; an error challenge is answered with `AQ==`.
    pub async fn xoauth2(
        &mut self,
        user: &str,
        token: &str,
        ir: bool,
    ) -> ClientResult<OAuthOutcome<SieveReply>> {
        super::oauth_exchange(self, "XOAUTH2", &xoauth2_payload(user, token), ir).await
    }

    /// PLAIN with an empty authzid.
    pub async fn plain(
        &mut self,
        user: &str,
        password: &str,
        ir: bool,
    ) -> ClientResult<SieveReply> {
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

    pub async fn putscript(&mut self, name: &str, script: &[u8]) -> ClientResult<SieveReply> {
        // Scripts always go as literals, as clients send them.
        let mut bytes = b"PUTSCRIPT ".to_vec();
        bytes.extend_from_slice(&string(name.as_bytes()));
        bytes.extend_from_slice(format!(" {{{}+}}\r\n", script.len()).as_bytes());
        bytes.extend_from_slice(script);
        bytes.extend_from_slice(b"\r\n");
        self.send_bytes(&bytes).await?;
        self.read_reply().await
    }

    pub async fn checkscript(&mut self, script: &[u8]) -> ClientResult<SieveReply> {
        let mut bytes = format!("CHECKSCRIPT {{{}+}}\r\n", script.len()).into_bytes();
        bytes.extend_from_slice(script);
        bytes.extend_from_slice(b"\r\n");
        self.send_bytes(&bytes).await?;
        self.read_reply().await
    }

    /// `LISTSCRIPTS`: (name, active) of each script, if the server said `OK`.
    pub async fn listscripts(&mut self) -> ClientResult<(Vec<(String, bool)>, SieveReply)> {
        let reply = self.command("LISTSCRIPTS").await?;
        let scripts = reply
            .data
            .iter()
            .filter_map(|words| {
                let name = match words.first()? {
                    Word::Str(s) => String::from_utf8_lossy(s).into_owned(),
                    _ => return None,
                };
                let active =
                    matches!(words.get(1), Some(Word::Atom(a)) if a.eq_ignore_ascii_case("ACTIVE"));
                Some((name, active))
            })
            .collect();
        Ok((scripts, reply))
    }

    /// `GETSCRIPT`: the script, if the server said `OK`.
    pub async fn getscript(&mut self, name: &str) -> ClientResult<(Option<Vec<u8>>, SieveReply)> {
        let reply = self.command_with("GETSCRIPT", &[name.as_bytes()]).await?;
        let script = match reply.data.first().map(Vec::as_slice) {
            Some([Word::Str(s)]) if reply.is_ok() => Some(s.clone()),
            _ => None,
        };
        Ok((script, reply))
    }

    pub async fn setactive(&mut self, name: &str) -> ClientResult<SieveReply> {
        self.command_with("SETACTIVE", &[name.as_bytes()]).await
    }

    pub async fn deletescript(&mut self, name: &str) -> ClientResult<SieveReply> {
        self.command_with("DELETESCRIPT", &[name.as_bytes()]).await
    }

    pub async fn renamescript(&mut self, old: &str, new: &str) -> ClientResult<SieveReply> {
        self.command_with("RENAMESCRIPT", &[old.as_bytes(), new.as_bytes()])
            .await
    }

    pub async fn havespace(&mut self, name: &str, size: u64) -> ClientResult<SieveReply> {
        let mut bytes = b"HAVESPACE ".to_vec();
        bytes.extend_from_slice(&string(name.as_bytes()));
        bytes.extend_from_slice(format!(" {size}\r\n").as_bytes());
        self.send_bytes(&bytes).await?;
        self.read_reply().await
    }

    /// `NOOP ["<tag>"]`.
    pub async fn noop(&mut self, tag: Option<&str>) -> ClientResult<SieveReply> {
        match tag {
            Some(tag) => self.command_with("NOOP", &[tag.as_bytes()]).await,
            None => self.command("NOOP").await,
        }
    }

    pub async fn unauthenticate(&mut self) -> ClientResult<SieveReply> {
        self.command("UNAUTHENTICATE").await
    }

    pub async fn logout(&mut self) -> ClientResult<SieveReply> {
        self.command("LOGOUT").await
    }
}

/// `(NAME, value)` of each capability line of a reply.
fn capabilities_of(reply: &SieveReply) -> Vec<(String, Option<String>)> {
    reply
        .data
        .iter()
        .filter_map(|words| {
            let name = words.first()?.as_str()?.to_ascii_uppercase();
            Some((name, words.get(1).and_then(Word::as_str)))
        })
        .collect()
}

#[async_trait::async_trait]
impl super::ContinuationSasl for SieveClient {
    type Reply = SieveReply;
    async fn start(&mut self, mech: &str, ir: Option<&[u8]>) -> ClientResult<SaslReply> {
        SieveClient::auth_start(self, mech, ir).await
    }
    async fn respond(&mut self, data: &[u8]) -> ClientResult<SaslReply> {
        SieveClient::auth_continue(self, data).await
    }
    async fn abort(&mut self) -> ClientResult<SaslReply> {
        SieveClient::auth_abort(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::script::{Server, pipe};

    const GREETING: &[u8] = b"\"IMPLEMENTATION\" \"mail-oidc\"\r\n\"SASL\" \"PLAIN OAUTHBEARER\"\r\n\"SIEVE\" \"fileinto\"\r\n\"STARTTLS\"\r\n\"VERSION\" \"1.0\"\r\nOK \"ready.\"\r\n";

    async fn pair() -> (SieveClient, Server) {
        let (a, server) = pipe(GREETING).await;
        let client = SieveClient::from_stream(a).await.expect("greeting");
        (client, server)
    }

    #[test]
    fn words_of_lines() {
        let (w, lit) = words_of(b"OK (QUOTA/MAXSIZE) \"too \\\"big\\\"\"").unwrap();
        assert_eq!(
            w,
            [
                Word::Atom("OK".into()),
                Word::Code(vec![Word::Atom("QUOTA/MAXSIZE".into())]),
                Word::Str(b"too \"big\"".to_vec())
            ]
        );
        assert_eq!(lit, None);
        let (w, lit) = words_of(b"\"name\" {12}").unwrap();
        assert_eq!(w, [Word::Str(b"name".to_vec())]);
        assert_eq!(lit, Some(12));
        assert!(words_of(b"OK (SASL \"x\"").is_err());
        assert!(words_of(b"\"open").is_err());
    }

    #[test]
    fn strings_quoted_or_literal() {
        assert_eq!(string(b"a\"b"), b"\"a\\\"b\"");
        assert_eq!(string(b"a\r\nb"), b"{4+}\r\na\r\nb");
        assert!(string(&[b'x'; 2000]).starts_with(b"{2000+}\r\nxx"));
    }

    #[tokio::test]
    async fn greeting_and_capabilities() {
        let (client, _server) = pair().await;
        assert_eq!(client.sasl_mechanisms(), ["PLAIN", "OAUTHBEARER"]);
        assert_eq!(client.capability("starttls"), Some(""));
        assert_eq!(client.capability("VERSION"), Some("1.0"));
        assert_eq!(client.capability("NOTIFY"), None);
        assert_eq!(client.greeting().text, "ready.");
    }

    #[tokio::test]
    async fn sasl_steps_and_success_data() {
        let (mut client, mut server) = pair().await;
        let step = tokio::spawn(async move {
            let r = client.auth_start("OAUTHBEARER", None).await.unwrap();
            assert_eq!(r, SaslReply::Challenge(Vec::new()));
            let r = client.auth_continue(b"hello").await.unwrap();
            let SaslReply::Done(reply) = r else {
                panic!("{r:?}")
            };
            assert!(reply.is_ok());
            assert_eq!(reply.code(), Some("SASL"));
            assert_eq!(reply.response.code_data.as_deref(), Some(&b"dj1v"[..]));
            client
        });
        server.expect("AUTHENTICATE \"OAUTHBEARER\"").await;
        server.send(b"\"\"\r\n").await;
        server.expect("\"aGVsbG8=\"").await;
        server.send(b"OK (SASL \"dj1v\") \"Logged in.\"\r\n").await;
        let mut client = step.await.unwrap();
        // A long initial response goes as a literal.
        let big = vec![b'z'; 900];
        let encoded = b64(&big);
        let step = tokio::spawn(async move {
            let r = client.auth_start("XOAUTH2", Some(&big)).await.unwrap();
            assert!(matches!(r, SaslReply::Done(ref d) if d.is_no()), "{r:?}");
        });
        server
            .expect_bytes(
                format!(
                    "AUTHENTICATE \"XOAUTH2\" {{{}+}}\r\n{encoded}\r\n",
                    encoded.len()
                )
                .as_bytes(),
            )
            .await;
        server.send(b"NO \"Authentication failed.\"\r\n").await;
        step.await.unwrap();
    }

    #[tokio::test]
    async fn scripts_listed_and_fetched() {
        let (mut client, mut server) = pair().await;
        let step = tokio::spawn(async move {
            let (list, reply) = client.listscripts().await.unwrap();
            assert!(reply.is_ok());
            assert_eq!(
                list,
                [
                    ("a \"b\"".to_string(), true),
                    ("lit\r\n".to_string(), false)
                ]
            );
            let (script, reply) = client.getscript("a \"b\"").await.unwrap();
            assert!(reply.is_ok());
            assert_eq!(script.as_deref(), Some(&b"keep;\r\n"[..]));
            let reply = client.putscript("x", b"bad;").await.unwrap();
            assert_eq!(reply.text(), "line 1: bad");
            assert_eq!(reply.line(), "NO \"line 1: bad\"");
        });
        server.expect("LISTSCRIPTS").await;
        server
            .send(b"\"a \\\"b\\\"\" ACTIVE\r\n{5}\r\nlit\r\n\r\nOK \"done\"\r\n")
            .await;
        server.expect("GETSCRIPT \"a \\\"b\\\"\"").await;
        server.send(b"{7}\r\nkeep;\r\n\r\nOK \"done\"\r\n").await;
        server
            .expect_bytes(b"PUTSCRIPT \"x\" {4+}\r\nbad;\r\n")
            .await;
        server.send(b"NO \"line 1: bad\"\r\n").await;
        step.await.unwrap();
    }
}
