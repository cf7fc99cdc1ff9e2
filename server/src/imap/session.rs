//! The IMAP session state machine. It owns no socket and awaits nothing: the connection feeds it
//! frames and writes what it queued in `out`; [`Next`] says what the connection must do besides
//! writing, including the slow work ([`Event`]) whose answer it hands back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use imap_codec::CommandCodec;
use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::command::{Command, CommandBody};

use super::ImapContext;
use super::framing::{self, Frame, Limits};
use super::response::{self, Status};
use super::selected::Selected;
use crate::auth::sasl::{
    AuthWork, ChannelBinding, Protocol, SaslDriver, SessionContext, SuccessData, TokenSession,
};
use crate::store::DELIMITER;

/// Longest command line before authentication (AUTHENTICATE lines excepted, they may reach
/// `max_auth_line`): LOGIN with long credentials fits, a flood does not.
pub const PREAUTH_LINE: usize = 8 * 1024;
/// Longest command line after authentication (Dovecot's default `imap_max_line_length`).
pub const MAX_LINE: usize = 64 * 1024;
/// Inactivity after which an authenticated session is logged out (RFC 3501: at least 30 min).
pub const AUTOLOGOUT: Duration = Duration::from_secs(30 * 60);

/// What the connection must do after a frame, besides writing the queued output.
#[derive(Debug)]
pub enum Next {
    Continue,
    /// Receive the announced literal.
    AcceptLiteral,
    /// Skip the announced literal (a `NO [TOOBIG]` was queued).
    RejectLiteral,
    /// Flush, drop buffered input, then run the TLS handshake.
    StartTls,
    /// Flush and close.
    Close,
    /// Do this work and hand the result to the session method its doc names.
    Event(Event),
}

/// Slow work (IdP, directory) the connection performs for the session.
pub enum Event {
    /// Run it with [`crate::auth::sasl::driver::run`]; answer with [`Session::auth_done`].
    Auth(AuthWork),
    /// Check a LOGIN with [`crate::auth::sasl::driver::verify_password`]; answer with
    /// [`Session::password_checked`].
    CheckPassword { user: Vec<u8>, password: Vec<u8> },
    /// CPU-heavy work of a command (LIST, SEARCH): run it on [`ImapContext::offload`], never on
    /// an async worker; answer with [`Session::heavy_done`].
    Heavy(HeavyJob),
}

/// A heavy command's work: reads the store and returns its untagged responses.
pub type HeavyJob = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// How a command whose work was a [`HeavyJob`] finishes.
pub(in crate::imap) enum HeavyFinish {
    List { tag: String, verb: &'static str },
    Search { tag: String, uid: bool },
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Auth(work) => f.debug_tuple("Auth").field(work).finish(),
            Event::Heavy(_) => f.write_str("Heavy"),
            // Never print credentials.
            Event::CheckPassword { user, .. } => f
                .debug_struct("CheckPassword")
                .field("user", &String::from_utf8_lossy(user))
                .finish_non_exhaustive(),
        }
    }
}

/// What the next client bytes are.
pub enum Mode {
    Command,
    /// AUTHENTICATE or LOGIN `tag` runs: an exchange waits for the client's next line, or the
    /// connection does the session's [`Event`].
    Authenticate {
        tag: String,
    },
    /// IDLE runs until DONE.
    Idle {
        tag: String,
    },
}

pub struct Session {
    pub ctx: Arc<ImapContext>,
    pub peer: Option<SocketAddr>,
    /// TLS is active (implicit, or after STARTTLS).
    pub tls: bool,
    /// The listener offers STARTTLS (plain listener with a certificate).
    starttls_offered: bool,
    /// The TLS session's `tls-exporter` channel binding (SCRAM-SHA-256-PLUS).
    channel_binding: Option<ChannelBinding>,
    /// The mailbox owner (authorization identity) once logged in.
    pub user: Option<String>,
    /// The OIDC session of a bearer login (for revocation and expiry).
    pub token: Option<TokenSession>,
    pub selected: Option<Selected>,
    pub mode: Mode,
    pub sasl: SaslDriver,
    pub out: Vec<u8>,
    /// CONDSTORE is on for the session (RFC 7162 3.1: ENABLE, or a CONDSTORE-enabling command).
    pub condstore: bool,
    /// QRESYNC is on (only through ENABLE, RFC 7162 3.2.3).
    pub qresync: bool,
    /// Offsets in `out` where one response ends and another begins (long FETCH output), so a
    /// session can be ended between responses while the output is still being written.
    cuts: Vec<usize>,
    /// The command whose [`Event::Heavy`] is under way.
    pub(in crate::imap) heavy: Option<HeavyFinish>,
    /// In-flight bytes the literals of the command being received hold (server-wide budget).
    literals: Option<crate::inflight::Reservation>,
    /// Rate limit of this connection's bad-command log lines.
    pub(in crate::imap) bad_log: crate::log_limit::LogLimit,
}

impl Session {
    pub fn new(ctx: Arc<ImapContext>, peer: Option<SocketAddr>, tls: bool) -> Self {
        let starttls_offered = !tls && ctx.tls.is_some();
        let max_failures = ctx.config.max_auth_failures;
        Self {
            ctx,
            peer,
            tls,
            starttls_offered,
            channel_binding: None,
            user: None,
            token: None,
            selected: None,
            mode: Mode::Command,
            sasl: SaslDriver::new(Protocol::Imap, peer, max_failures, SuccessData::AsChallenge),
            out: Vec::new(),
            condstore: false,
            qresync: false,
            cuts: Vec::new(),
            heavy: None,
            literals: None,
            bad_log: crate::log_limit::LogLimit::new("IMAP"),
        }
    }

    pub fn greeting(&mut self) {
        let code = format!("CAPABILITY {}", self.capabilities());
        let text = format!("{} mail-oidc ready.", self.ctx.hostname);
        response::status(&mut self.out, "*", Status::Ok, Some(&code), &text);
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        self.cuts.clear();
        std::mem::take(&mut self.out)
    }

    /// The queued output as whole responses (or groups of them), in order.
    pub fn take_chunks(&mut self) -> Vec<Vec<u8>> {
        let out = std::mem::take(&mut self.out);
        let mut chunks = Vec::with_capacity(self.cuts.len() + 1);
        let mut start = 0;
        for end in self.cuts.drain(..).chain(std::iter::once(out.len())) {
            if end > start && end <= out.len() {
                chunks.push(out[start..end].to_vec());
                start = end;
            }
        }
        chunks
    }

    /// Marks the end of a response in the queued output.
    pub fn cut(&mut self) {
        self.cuts.push(self.out.len());
    }

    /// The goodbye of a session ended from outside (logout at the IdP, revocation, expiry).
    pub fn ended(&mut self, reason: &crate::auth::revocation::EndReason) {
        tracing::info!(peer = ?self.peer, user = ?self.user, code = reason.code(), "IMAP session ended");
        response::status(
            &mut self.out,
            "*",
            Status::Bye,
            Some("EXPIRED"),
            &reason.text(),
        );
    }

    pub fn session_context(&self) -> SessionContext {
        SessionContext {
            protocol: Protocol::Imap,
            tls: self.tls,
            allow_plaintext_without_tls: self.ctx.config.allow_plaintext_auth,
            peer: self.peer,
            channel_binding: self.channel_binding.clone(),
        }
    }

    /// The capability list for the current state, without the `CAPABILITY` word.
    pub fn capabilities(&self) -> String {
        let mut caps: Vec<String> = [
            "IMAP4rev1",
            "SASL-IR",
            "LITERAL+",
            "ID",
            "IDLE",
            "UIDPLUS",
            "UNSELECT",
            "CHILDREN",
            "MOVE",
            "ENABLE",
            "NAMESPACE",
            "CONDSTORE",
            "QRESYNC",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.user.is_none() {
            let sctx = self.session_context();
            if self.starttls_offered && !self.tls {
                caps.push("STARTTLS".into());
            }
            if !sctx.plaintext_allowed() {
                caps.push("LOGINDISABLED".into());
            }
            for name in self.ctx.registry.advertised(&sctx) {
                caps.push(format!("AUTH={name}"));
            }
        }
        caps.join(" ")
    }

    pub fn starttls_available(&self) -> bool {
        self.starttls_offered && !self.tls
    }

    /// The channel binding of the TLS session (set by the connection after each handshake).
    pub fn set_channel_binding(&mut self, binding: Option<ChannelBinding>) {
        self.channel_binding = binding;
    }

    /// Called by the connection once the TLS handshake after STARTTLS succeeded.
    pub fn tls_started(&mut self) {
        self.tls = true;
    }

    pub fn framer_mode(&self) -> framing::Mode {
        match self.mode {
            Mode::Command => framing::Mode::Command,
            Mode::Authenticate { .. } | Mode::Idle { .. } => framing::Mode::Line,
        }
    }

    pub fn limits(&self) -> Limits {
        let cfg = &self.ctx.config;
        if self.user.is_some() {
            Limits {
                line: MAX_LINE,
                auth_line: cfg.max_auth_line.max(MAX_LINE),
                literal: cfg.max_literal,
            }
        } else {
            Limits {
                line: PREAUTH_LINE.min(cfg.max_auth_line),
                auth_line: cfg.max_auth_line,
                literal: cfg.max_preauth_literal,
            }
        }
    }

    /// Inactivity allowed before the next client bytes.
    pub fn timeout(&self) -> Duration {
        if self.user.is_some() {
            AUTOLOGOUT
        } else {
            Duration::from_secs(self.ctx.config.preauth_timeout_seconds)
        }
    }

    pub fn on_timeout(&mut self) {
        tracing::info!(peer = ?self.peer, user = ?self.user, "closing idle IMAP connection");
        let text = if self.user.is_some() {
            "Autologout; idle for too long."
        } else {
            "Disconnected for inactivity."
        };
        response::status(&mut self.out, "*", Status::Bye, None, text);
    }

    /// The server is shutting down: the goodbye before the connection closes.
    pub fn shutting_down(&mut self) {
        tracing::info!(peer = ?self.peer, user = ?self.user, "IMAP session ended: shutdown");
        response::status(
            &mut self.out,
            "*",
            Status::Bye,
            Some("UNAVAILABLE"),
            "Server shutting down, try again later.",
        );
    }

    /// The user to watch for store events, while IDLE runs.
    pub fn idling_user(&self) -> Option<&str> {
        match self.mode {
            Mode::Idle { .. } => self.user.as_deref(),
            _ => None,
        }
    }

    /// A store event arrived (or may have been missed) during IDLE: report what changed.
    pub fn idle_update(&mut self) {
        self.sync(super::selected::SyncKind::Full);
    }

    /// Answer to [`Event::Heavy`]: writes the job's responses and completes its command.
    pub fn heavy_done(&mut self, result: Result<Vec<u8>, crate::offload::OffloadError>) -> Next {
        let Some(finish) = self.heavy.take() else {
            tracing::error!(peer = ?self.peer, "heavy-work answer without a pending command");
            return Next::Close;
        };
        let tag = match &finish {
            HeavyFinish::List { tag, .. } | HeavyFinish::Search { tag, .. } => tag.clone(),
        };
        let untagged = match result {
            Ok(untagged) => untagged,
            Err(e) => {
                tracing::error!(peer = ?self.peer, user = ?self.user, error = %e, "IMAP heavy command failed");
                self.no_code(&tag, "SERVERBUG", "Internal error, try again later.");
                return Next::Continue;
            }
        };
        self.out.extend_from_slice(&untagged);
        match finish {
            HeavyFinish::List { verb, .. } => self.ok(&tag, &format!("{verb} completed.")),
            HeavyFinish::Search { uid, .. } => {
                // EXPUNGE responses are forbidden after SEARCH (sequence numbers would shift).
                self.sync(if uid {
                    super::selected::SyncKind::Full
                } else {
                    super::selected::SyncKind::NoExpunge
                });
                self.ok(&tag, "Search completed.");
            }
        }
        Next::Continue
    }

    /// Handles one frame (never `NeedMore`).
    pub fn handle(&mut self, frame: Frame) -> Next {
        match frame {
            Frame::NeedMore => Next::Continue,
            Frame::LineTooLong => {
                self.literals = None;
                tracing::info!(peer = ?self.peer, "IMAP line too long, closing");
                response::status(&mut self.out, "*", Status::Bad, None, "Line too long.");
                Next::Close
            }
            Frame::Literal {
                tag,
                length,
                sync,
                too_big,
            } => {
                if too_big {
                    // The framer drops the command's literals received so far.
                    self.literals = None;
                    if self.bad_log.allow() {
                        tracing::info!(peer = ?self.peer, length, "IMAP literal too large, refused");
                    }
                    let tag = tag.unwrap_or_else(|| "*".into());
                    response::status(
                        &mut self.out,
                        &tag,
                        Status::No,
                        Some("TOOBIG"),
                        "Literal too large.",
                    );
                    Next::RejectLiteral
                } else if !self.reserve_literal(length) {
                    self.literals = None;
                    if self.bad_log.allow() {
                        tracing::warn!(
                            peer = ?self.peer,
                            user = ?self.user,
                            length,
                            in_use = self.ctx.inflight.in_use(),
                            limit = self.ctx.inflight.limit(),
                            "in-flight byte budget spent, IMAP literal refused"
                        );
                    }
                    let tag = tag.unwrap_or_else(|| "*".into());
                    response::status(
                        &mut self.out,
                        &tag,
                        Status::No,
                        Some("UNAVAILABLE"),
                        "Server busy, try again later.",
                    );
                    Next::RejectLiteral
                } else {
                    if sync {
                        response::continuation(&mut self.out, "OK");
                    }
                    Next::AcceptLiteral
                }
            }
            Frame::Line(line) => match std::mem::replace(&mut self.mode, Mode::Command) {
                Mode::Authenticate { tag } => self.authenticate_line(tag, &line),
                Mode::Idle { tag } => self.idle_line(&tag, &line),
                Mode::Command => Next::Continue,
            },
            Frame::Command(bytes) => {
                let next = self.command_bytes(&bytes);
                // The command's bytes (literals included) are dropped once it returns.
                self.literals = None;
                next
            }
        }
    }

    /// Reserves a literal's bytes before the framer buffers them; false when the server-wide
    /// budget has not that much left.
    fn reserve_literal(&mut self, length: u64) -> bool {
        let Ok(length) = usize::try_from(length) else {
            return false;
        };
        match &mut self.literals {
            Some(reservation) => reservation.try_grow(length),
            None => match self.ctx.inflight.try_reserve(length) {
                Some(reservation) => {
                    self.literals = Some(reservation);
                    true
                }
                None => false,
            },
        }
    }

    fn command_bytes(&mut self, bytes: &[u8]) -> Next {
        match CommandCodec::default().decode(bytes) {
            Ok((b"", command)) => self.command(command),
            Ok(_)
            | Err(CommandDecodeError::Incomplete | CommandDecodeError::LiteralFound { .. }) => {
                self.syntax_error(bytes);
                Next::Continue
            }
            Err(CommandDecodeError::Failed) => {
                if let Some(next) = self.authenticate_syntax_error(bytes) {
                    return next;
                }
                self.syntax_error(bytes);
                Next::Continue
            }
        }
    }

    /// A command imap-codec could not parse: `BAD`, naming the command when it is one we know.
    fn syntax_error(&mut self, bytes: &[u8]) {
        let tag = framing::tag_of(bytes).unwrap_or_else(|| "*".into());
        let name = bytes
            .split(|&b| b == b' ' || b == b'\r')
            .nth(1)
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
            .unwrap_or_default();
        let name = match name.as_str() {
            "UID" => bytes
                .split(|&b| b == b' ' || b == b'\r')
                .nth(2)
                .map(|n| format!("UID {}", String::from_utf8_lossy(n).to_ascii_uppercase()))
                .unwrap_or(name),
            _ => name,
        };
        let known = KNOWN_COMMANDS
            .iter()
            .any(|k| name == *k || name.strip_prefix("UID ") == Some(k));
        let text = if known {
            format!("Error in IMAP command {name}: invalid arguments.")
        } else if name.is_empty() {
            "Empty command.".to_string()
        } else {
            "Unknown command.".to_string()
        };
        if self.bad_log.allow() {
            tracing::info!(peer = ?self.peer, command = %name, "IMAP command refused: syntax error");
        }
        response::status(&mut self.out, &tag, Status::Bad, None, &text);
    }

    fn command(&mut self, command: Command<'_>) -> Next {
        let tag = command.tag.inner().to_string();
        let authed = self.user.is_some();
        let selected = self.selected.is_some();
        match command.body {
            CommandBody::Capability => {
                let caps = format!("CAPABILITY {}", self.capabilities());
                response::untagged(&mut self.out, &caps);
                self.ok(&tag, "Capability completed.");
            }
            CommandBody::Noop => {
                self.sync(super::selected::SyncKind::Full);
                self.ok(&tag, "NOOP completed.");
            }
            CommandBody::Logout => {
                response::status(&mut self.out, "*", Status::Bye, None, "Logging out.");
                self.ok(&tag, "LOGOUT completed.");
                tracing::info!(peer = ?self.peer, user = ?self.user, "IMAP logout");
                return Next::Close;
            }
            CommandBody::Id { .. } => {
                let version = env!("CARGO_PKG_VERSION");
                response::untagged(
                    &mut self.out,
                    &format!("ID (\"name\" \"mail-oidc\" \"version\" \"{version}\")"),
                );
                self.ok(&tag, "ID completed.");
            }
            CommandBody::StartTLS => return self.starttls(&tag),
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if authed {
                    return self.already_authenticated(&tag);
                }
                // The driver decodes the initial response itself, like every protocol's.
                let ir = initial_response.map(|s| encode_initial(s.declassify()));
                return self.authenticate(&tag, mechanism.as_ref(), ir.as_deref());
            }
            CommandBody::Login { username, password } => {
                if authed {
                    return self.already_authenticated(&tag);
                }
                let user = username.as_ref().to_vec();
                let pass = password.declassify().as_ref().to_vec();
                return self.login(&tag, &user, &pass);
            }
            _ if !authed => {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, "IMAP command before login refused");
                }
                self.bad(&tag, "Log in first.");
            }
            CommandBody::Select {
                mailbox,
                parameters,
            } => self.select(&tag, &mailbox, false, &parameters),
            CommandBody::Examine {
                mailbox,
                parameters,
            } => self.select(&tag, &mailbox, true, &parameters),
            CommandBody::Enable { capabilities } => self.enable(&tag, capabilities.as_ref()),
            CommandBody::Create { mailbox } => self.create(&tag, &mailbox),
            CommandBody::Delete { mailbox } => self.delete(&tag, &mailbox),
            CommandBody::Rename { from, to } => self.rename(&tag, &from, &to),
            CommandBody::Subscribe { mailbox } => self.subscribe(&tag, &mailbox, true),
            CommandBody::Unsubscribe { mailbox } => self.subscribe(&tag, &mailbox, false),
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => return self.list(&tag, &reference, &mailbox_wildcard, "LIST"),
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => return self.list(&tag, &reference, &mailbox_wildcard, "LSUB"),
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(&tag, &mailbox, &item_names),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(&tag, &mailbox, &flags, date.as_ref(), &message),
            CommandBody::Idle => return self.idle(&tag),
            CommandBody::Namespace => {
                // One personal namespace, no other users' or shared ones (RFC 2342).
                let namespace = format!("NAMESPACE ((\"\" \"{DELIMITER}\")) NIL NIL");
                response::untagged(&mut self.out, &namespace);
                self.ok(&tag, "NAMESPACE completed.");
            }
            _ if !selected => self.bad(&tag, "No mailbox selected."),
            CommandBody::Check => {
                self.sync(super::selected::SyncKind::Full);
                self.ok(&tag, "Check completed.");
            }
            CommandBody::Close => self.close(&tag),
            CommandBody::Unselect => {
                self.selected = None;
                self.ok(&tag, "Unselect completed.");
            }
            CommandBody::Expunge => self.expunge(&tag, None),
            CommandBody::ExpungeUid { sequence_set } => self.expunge(&tag, Some(&sequence_set)),
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => return self.search(&tag, charset.as_ref(), criteria.as_ref(), uid),
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => self.fetch(&tag, &sequence_set, macro_or_item_names, uid, &modifiers),
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                let change = super::commands::store::FlagChange {
                    kind: &kind,
                    reply: &response,
                    flags: &flags,
                };
                self.store(&tag, &sequence_set, change, uid, &modifiers)
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&tag, &sequence_set, &mailbox, uid, false),
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&tag, &sequence_set, &mailbox, uid, true),
            _ => {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, "IMAP command not supported");
                }
                self.bad(&tag, "Unknown command.");
            }
        }
        Next::Continue
    }

    fn starttls(&mut self, tag: &str) -> Next {
        if self.user.is_some() {
            return self.already_authenticated(tag);
        }
        if !self.starttls_available() {
            let text = if self.tls {
                "TLS is already active."
            } else {
                "STARTTLS is not available."
            };
            if self.bad_log.allow() {
                tracing::info!(peer = ?self.peer, "STARTTLS refused: {text}");
            }
            self.bad(tag, text);
            return Next::Continue;
        }
        self.ok(tag, "Begin TLS negotiation now.");
        Next::StartTls
    }

    fn already_authenticated(&mut self, tag: &str) -> Next {
        self.bad(tag, "Already authenticated.");
        Next::Continue
    }

    fn idle(&mut self, tag: &str) -> Next {
        self.sync(super::selected::SyncKind::Full);
        response::continuation(&mut self.out, "idling");
        self.mode = Mode::Idle {
            tag: tag.to_string(),
        };
        Next::Continue
    }

    fn idle_line(&mut self, tag: &str, line: &[u8]) -> Next {
        use imap_codec::IdleDoneCodec;
        match IdleDoneCodec::default().decode(line) {
            Ok(_) => {
                self.sync(super::selected::SyncKind::Full);
                self.ok(tag, "Idle completed.");
            }
            Err(_) => {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, "IDLE ended by something else than DONE");
                }
                self.bad(tag, "Expected DONE.");
            }
        }
        Next::Continue
    }

    /// Reports changes of the selected mailbox (if any). A mailbox that vanished ends the session
    /// state cleanly: it is deselected.
    pub fn sync(&mut self, kind: super::selected::SyncKind) {
        let (Some(user), Some(sel)) = (self.user.as_deref(), self.selected.as_mut()) else {
            return;
        };
        if let Err(e) = sel.sync(self.ctx.store.as_ref(), user, kind, &mut self.out) {
            tracing::warn!(peer = ?self.peer, error = %e, "selected mailbox vanished");
            response::status(
                &mut self.out,
                "*",
                Status::Bye,
                None,
                "Mailbox was removed.",
            );
            self.selected = None;
        }
    }

    pub fn ok(&mut self, tag: &str, text: &str) {
        response::status(&mut self.out, tag, Status::Ok, None, text);
    }

    pub fn ok_code(&mut self, tag: &str, code: &str, text: &str) {
        response::status(&mut self.out, tag, Status::Ok, Some(code), text);
    }

    pub fn no(&mut self, tag: &str, text: &str) {
        response::status(&mut self.out, tag, Status::No, None, text);
    }

    pub fn no_code(&mut self, tag: &str, code: &str, text: &str) {
        response::status(&mut self.out, tag, Status::No, Some(code), text);
    }

    pub fn bad(&mut self, tag: &str, text: &str) {
        response::status(&mut self.out, tag, Status::Bad, None, text);
    }
}

/// Command names (RFC 3501 and the extensions we offer), to tell "bad arguments" from "unknown".
const KNOWN_COMMANDS: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "AUTHENTICATE",
    "LOGIN",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "STATUS",
    "APPEND",
    "CHECK",
    "CLOSE",
    "EXPUNGE",
    "SEARCH",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "UID",
    "IDLE",
    "ID",
    "UNSELECT",
    "ENABLE",
    "NAMESPACE",
];

/// imap-codec hands over the decoded initial response; the driver takes wire text (`=` empty).
fn encode_initial(bytes: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    if bytes.is_empty() {
        b"=".to_vec()
    } else {
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes()
    }
}
