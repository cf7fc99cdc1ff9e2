//! The POP3 session as a sans-IO state machine (the SMTP session's shape): bytes go in with
//! [`Session::enqueue_input`], [`Session::next_interrupt`] says what to do. Anything slow or
//! async (TLS handshake, SASL step, password check, opening the maildrop, the UPDATE state) is
//! an [`Event`] the caller performs and answers with the matching method before calling it again.
//!
//! States (RFC 1939 3): AUTHORIZATION until a login succeeds and the maildrop is locked and
//! read, TRANSACTION, then UPDATE on QUIT only. A session ended any other way (revocation,
//! timeout, a dropped connection) never reaches UPDATE: nothing is deleted.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::revocation::EndReason;
use crate::auth::sasl::{
    AuthAction, AuthDone, AuthWork, ChannelBinding, Protocol, SaslDriver, SaslFailure,
    SaslIdentity, SaslRegistry, SessionContext, SuccessData,
};
use crate::store::StoreError;

use super::command::{self, Command};
use super::maildrop::{Maildrop, MaildropLock, MaildropLocks};
use super::reply::Reply;

/// Longest command line, without CRLF (RFC 2449 4 allows 255 octets for a command; margin for
/// lenient clients).
pub const MAX_COMMAND_LINE: usize = 1024;
/// Longest AUTH, USER or PASS line and SASL response: bearer tokens are big.
pub const MAX_AUTH_LINE: usize = 16 * 1024;
/// Protocol errors tolerated before the connection is closed (stops scanners and HTTP clients).
pub const MAX_ERRORS: u32 = 10;

/// What every session of one listener shares.
#[derive(Clone)]
pub struct SessionConfig {
    pub hostname: String,
    /// `pop3.allow_plaintext_auth`.
    pub allow_plaintext_auth: bool,
    pub max_auth_failures: u32,
    /// A TLS acceptor exists and the listener is cleartext, so STLS can be offered.
    pub stls_available: bool,
    pub registry: SaslRegistry,
    /// One maildrop lock per user, shared by every POP3 listener.
    pub locks: Arc<MaildropLocks>,
}

pub use crate::sans_io::Io;
/// What the session needs next.
pub type Interrupt = crate::sans_io::Interrupt<Event>;

/// Work for the caller. Each doc says how to answer.
pub enum Event {
    /// Flush the output, run the TLS handshake, then call [`Session::tls_established`] (or
    /// close the connection if the handshake fails).
    StartTls,
    /// Run this SASL work with [`crate::auth::sasl::driver::run`]; answer with
    /// [`Session::auth_done`].
    Auth(AuthWork),
    /// Check USER/PASS with [`crate::auth::sasl::driver::verify_password`]; answer with
    /// [`Session::password_checked`].
    CheckPassword { user: Vec<u8>, password: Vec<u8> },
    /// Read the user's INBOX with [`Maildrop::load`]; answer with [`Session::maildrop_opened`].
    OpenMaildrop { user: String },
    /// The UPDATE state: unless the session was ended meanwhile (then call [`Session::ended`]
    /// instead), remove these UIDs with [`super::maildrop::commit`]; answer with
    /// [`Session::updated`].
    Update { user: String, uids: Vec<u32> },
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::StartTls => f.write_str("StartTls"),
            Event::Auth(work) => f.debug_tuple("Auth").field(work).finish(),
            // Never print the password.
            Event::CheckPassword { user, .. } => f
                .debug_struct("CheckPassword")
                .field("user", &String::from_utf8_lossy(user))
                .finish_non_exhaustive(),
            Event::OpenMaildrop { user } => {
                f.debug_struct("OpenMaildrop").field("user", user).finish()
            }
            Event::Update { user, uids } => f
                .debug_struct("Update")
                .field("user", user)
                .field("uids", uids)
                .finish(),
        }
    }
}

enum State {
    /// `user`: the name of an accepted USER command, waiting for PASS.
    Authorization { user: Option<Vec<u8>> },
    /// Logged in and locked; the maildrop is being read.
    Opening {
        identity: SaslIdentity,
        lock: MaildropLock,
    },
    Transaction {
        identity: SaslIdentity,
        maildrop: Maildrop,
        _lock: MaildropLock,
    },
    /// QUIT: the deletions are being applied.
    Update {
        identity: SaslIdentity,
        _lock: MaildropLock,
    },
    /// Nothing more will be done; the lock is released.
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Authorization { .. } => "authorization",
            State::Opening { .. } => "opening",
            State::Transaction { .. } => "transaction",
            State::Update { .. } => "update",
            State::Closed => "closed",
        }
    }
}

enum Mode {
    Command,
    /// A `+` continuation was sent; the next line is the client's SASL response.
    AuthResponse,
}

/// The event the caller must answer before the session goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Tls,
    Auth,
    Password,
    Maildrop,
    Update,
}

use crate::sans_io::InputBuffer;

struct LineTooLong;

pub struct Session {
    config: Arc<SessionConfig>,
    peer: Option<SocketAddr>,
    tls: bool,
    /// The TLS session's `tls-exporter` channel binding (SCRAM-SHA-256-PLUS).
    channel_binding: Option<ChannelBinding>,
    state: State,
    sasl: SaslDriver,
    errors: u32,
    /// Rate limit of this connection's bad-command log lines.
    bad_log: crate::log_limit::LogLimit,
    mode: Mode,
    awaiting: Option<Awaiting>,
    event: Option<Event>,
    input: InputBuffer,
    /// The rest of an over-long line (already refused) is being dropped.
    discarding: bool,
    output: Vec<u8>,
    closing: bool,
}

impl Session {
    /// A new session; the greeting is the first output. `tls` is true on implicit-TLS listeners.
    /// The client's address (the failed-login budget counts by it).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub fn new(config: Arc<SessionConfig>, peer: Option<SocketAddr>, tls: bool) -> Self {
        let max_failures = config.max_auth_failures;
        let mut session = Self {
            config,
            peer,
            tls,
            channel_binding: None,
            state: State::Authorization { user: None },
            sasl: SaslDriver::new(Protocol::Pop3, peer, max_failures, SuccessData::AsChallenge),
            errors: 0,
            bad_log: crate::log_limit::LogLimit::new("POP3"),
            mode: Mode::Command,
            awaiting: None,
            event: None,
            input: InputBuffer::default(),
            discarding: false,
            output: Vec::new(),
            closing: false,
        };
        session.reply(Reply::greeting(&session.config.hostname));
        session
    }

    pub fn enqueue_input(&mut self, bytes: &[u8]) {
        self.input.extend(bytes);
    }

    /// Buffered bytes already searched for a line end (the linear-scan regression test).
    #[cfg(test)]
    pub(crate) fn input_scanned(&self) -> usize {
        self.input.scanned()
    }

    /// Who is logged in, once the maildrop is open (TRANSACTION and UPDATE states): the session
    /// to register as live.
    pub fn identity(&self) -> Option<&SaslIdentity> {
        match &self.state {
            State::Transaction { identity, .. } | State::Update { identity, .. } => Some(identity),
            _ => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// What the caller must do next. Output comes before events, so a reply that precedes a
    /// TLS handshake is written first.
    pub fn next_interrupt(&mut self) -> Interrupt {
        loop {
            if !self.output.is_empty() {
                return Interrupt::Io(Io::Output(std::mem::take(&mut self.output)));
            }
            if let Some(event) = self.event.take() {
                return Interrupt::Event(event);
            }
            if self.closing {
                return Interrupt::Io(Io::Close);
            }
            if let Some(awaiting) = &self.awaiting {
                // A caller bug, not client input: stop rather than guess.
                tracing::error!(
                    ?awaiting,
                    "POP3 session stepped before its event was answered"
                );
                self.close();
                continue;
            }
            if !self.process_input() {
                return Interrupt::Io(Io::NeedMoreInput);
            }
        }
    }

    /// Answer to [`Event::StartTls`]: the connection is now encrypted; the client starts over
    /// in the AUTHORIZATION state (RFC 2595 4).
    pub fn tls_established(&mut self) {
        if !self.answer(Awaiting::Tls) {
            return;
        }
        self.tls = true;
        self.state = State::Authorization { user: None };
        self.mode = Mode::Command;
    }

    /// Answer to [`Event::Auth`].
    pub fn auth_done(&mut self, done: AuthDone) {
        if !self.answer(Awaiting::Auth) {
            return;
        }
        let action = self.sasl.step_done(done);
        self.auth_action(action);
    }

    /// Answer to [`Event::CheckPassword`]: the canonical user, or why not.
    pub fn password_checked(&mut self, result: Result<String, SaslFailure>) {
        if !self.answer(Awaiting::Password) {
            return;
        }
        let action = self.sasl.password_checked("USER", result);
        self.auth_action(action);
    }

    /// Answer to [`Event::OpenMaildrop`].
    pub fn maildrop_opened(&mut self, result: Result<Maildrop, StoreError>) {
        if !self.answer(Awaiting::Maildrop) {
            return;
        }
        let State::Opening { identity, lock } =
            std::mem::replace(&mut self.state, State::Authorization { user: None })
        else {
            tracing::error!("maildrop answer outside the opening state");
            return self.close();
        };
        match result {
            Ok(maildrop) => {
                let (count, octets) = maildrop.stat();
                tracing::info!(user = %identity.authorization_id, count, octets, "POP3 maildrop opened");
                self.state = State::Transaction {
                    identity,
                    maildrop,
                    _lock: lock,
                };
                self.reply(Reply::Ok("Logged in.".into()));
            }
            Err(e) => {
                tracing::warn!(user = %identity.authorization_id, error = %e, "cannot read the maildrop");
                drop(lock);
                self.refuse(Reply::maildrop_unavailable(), "maildrop unreadable");
            }
        }
    }

    /// Answer to [`Event::Update`]: how many messages were removed.
    pub fn updated(&mut self, result: Result<usize, StoreError>) {
        if !self.answer(Awaiting::Update) {
            return;
        }
        let user = self
            .identity()
            .map(|i| i.authorization_id.clone())
            .unwrap_or_default();
        // The lock goes before the reply, so a client reconnecting at once finds it free.
        self.state = State::Closed;
        match result {
            Ok(deleted) => {
                tracing::info!(%user, deleted, "POP3 update done");
                self.reply(Reply::bye_after_update(deleted));
            }
            Err(e) => {
                tracing::error!(%user, error = %e, "POP3 update failed");
                self.refuse(Reply::update_failed(), "store refused the deletions");
            }
        }
        self.closing = true;
    }

    /// The session was ended from outside (logout at the IdP, revocation, token expiry):
    /// `-ERR [SYS/PERM]`, no UPDATE (nothing is deleted), and whatever was under way is dropped.
    pub fn ended(&mut self, reason: &EndReason) {
        tracing::info!(
            code = reason.code(),
            user = ?self.identity().map(|i| &i.authorization_id),
            state = self.state.name(),
            "POP3 session ended without update"
        );
        self.output.clear();
        self.event = None;
        self.awaiting = None;
        self.sasl.cancel();
        self.mode = Mode::Command;
        self.state = State::Closed;
        self.reply(Reply::session_ended(&reason.text()));
        self.closing = true;
    }

    /// The server is shutting down: closed without UPDATE, nothing deleted.
    pub fn shutting_down(&mut self) {
        tracing::info!(
            user = ?self.identity().map(|i| &i.authorization_id),
            state = self.state.name(),
            "POP3 session ended without update: shutdown"
        );
        self.output.clear();
        self.event = None;
        self.awaiting = None;
        self.sasl.cancel();
        self.mode = Mode::Command;
        self.state = State::Closed;
        self.reply(Reply::shutting_down());
        self.closing = true;
    }

    /// The connection was idle too long: closed without UPDATE (RFC 1939 3).
    pub fn timed_out(&mut self) {
        tracing::info!(state = self.state.name(), "POP3 idle timeout");
        self.state = State::Closed;
        self.refuse(Reply::timeout(), "idle timeout");
        self.closing = true;
    }

    /// The context mechanisms see in this session.
    pub fn sasl_context(&self) -> SessionContext {
        SessionContext {
            protocol: Protocol::Pop3,
            tls: self.tls,
            allow_plaintext_without_tls: self.config.allow_plaintext_auth,
            peer: self.peer,
            channel_binding: self.channel_binding.clone(),
        }
    }

    /// The channel binding of the TLS session (the connection sets it after each handshake).
    pub fn set_channel_binding(&mut self, binding: Option<ChannelBinding>) {
        self.channel_binding = binding;
    }

    fn answer(&mut self, expected: Awaiting) -> bool {
        if self.awaiting == Some(expected) {
            self.awaiting = None;
            true
        } else {
            tracing::error!(?expected, awaiting = ?self.awaiting, "unexpected answer to a POP3 session event");
            self.close();
            false
        }
    }

    /// Stops at once (a caller bug): nothing more is read, no UPDATE.
    fn close(&mut self) {
        self.state = State::Closed;
        self.event = None;
        self.awaiting = None;
        self.closing = true;
    }

    fn reply(&mut self, reply: Reply) {
        reply.encode_into(&mut self.output);
    }

    /// Sends an error reply and logs why (rate-limited per connection).
    fn refuse(&mut self, reply: Reply, reason: &str) {
        if self.bad_log.allow() {
            tracing::info!(code = ?reply.code(), reason, state = self.state.name(), "POP3 refused");
        }
        self.reply(reply);
    }

    /// A protocol error (bad syntax, wrong state): refused, and counted.
    fn protocol_error(&mut self, reply: Reply, reason: &str) {
        self.refuse(reply, reason);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            // Always logged: it says why the connection ends.
            tracing::info!(
                state = self.state.name(),
                "too many POP3 protocol errors, closing"
            );
            self.reply(Reply::too_many_errors());
            self.state = State::Closed;
            self.closing = true;
        }
    }

    fn emit(&mut self, event: Event, awaiting: Awaiting) {
        self.event = Some(event);
        self.awaiting = Some(awaiting);
    }

    /// Handles one line. Returns false when more input is needed.
    fn process_input(&mut self) -> bool {
        match self.take_line() {
            None => false,
            Some(Err(LineTooLong)) => {
                if matches!(self.mode, Mode::AuthResponse) {
                    self.mode = Mode::Command;
                    self.sasl.cancel();
                }
                self.protocol_error(Reply::line_too_long(), "line too long");
                true
            }
            Some(Ok(line)) => {
                match std::mem::replace(&mut self.mode, Mode::Command) {
                    Mode::Command => self.command(&line),
                    Mode::AuthResponse => {
                        let action = self.sasl.client_response(&line);
                        self.auth_action(action);
                    }
                }
                true
            }
        }
    }

    fn line_limit(&self) -> usize {
        match self.mode {
            Mode::AuthResponse => MAX_AUTH_LINE,
            Mode::Command => {
                let input = self.input.bytes();
                let long = [&b"AUTH "[..], b"USER ", b"PASS "]
                    .iter()
                    .any(|p| input.len() >= p.len() && input[..p.len()].eq_ignore_ascii_case(p));
                if long {
                    MAX_AUTH_LINE
                } else {
                    MAX_COMMAND_LINE
                }
            }
        }
    }

    /// The next complete line without its line end (CRLF or a lenient bare LF).
    fn take_line(&mut self) -> Option<Result<Vec<u8>, LineTooLong>> {
        loop {
            let limit = self.line_limit();
            let found = self.input.find_lf();
            let input = self.input.bytes();
            let Some(lf) = found else {
                if self.discarding {
                    self.input.clear();
                } else if input.len() > limit + 1 {
                    self.input.clear();
                    self.discarding = true;
                    return Some(Err(LineTooLong));
                }
                return None;
            };
            let mut line = &input[..lf];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let result = if line.len() > limit {
                Err(LineTooLong)
            } else {
                Ok(line.to_vec())
            };
            self.input.consume(lf + 1);
            if std::mem::take(&mut self.discarding) {
                // The tail of a line already refused.
                continue;
            }
            return Some(result);
        }
    }

    fn command(&mut self, line: &[u8]) {
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(e) => {
                let reason = e.to_string();
                return self.protocol_error(Reply::command_error(&e), &reason);
            }
        };
        tracing::debug!(?command, state = self.state.name(), "POP3 command");
        match command {
            Command::Capa => self.capa(),
            Command::Quit => self.quit(),
            Command::User(name) => self.user(name),
            Command::Pass(password) => self.pass(password),
            Command::AuthList => self.auth_list(),
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial.as_deref()),
            Command::Stls => self.stls(),
            other => self.transaction(other),
        }
    }

    fn logged_in(&self) -> bool {
        !matches!(self.state, State::Authorization { .. })
    }

    fn capa(&mut self) {
        let mut items: Vec<String> = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !self.logged_in() {
            let context = self.sasl_context();
            if context.plaintext_allowed() {
                items.push("USER".into());
            }
            let mechanisms = self.config.registry.advertised(&context);
            if !mechanisms.is_empty() {
                items.push(format!("SASL {}", mechanisms.join(" ")));
            }
            if self.config.stls_available && !self.tls {
                items.push("STLS".into());
            }
        }
        items.push("IMPLEMENTATION mail-oidc".into());
        self.reply(Reply::capabilities(items));
    }

    fn quit(&mut self) {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Transaction {
                identity,
                maildrop,
                _lock,
            } => {
                let uids = maildrop.deleted_uids();
                let user = maildrop.user().to_string();
                self.state = State::Update { identity, _lock };
                self.emit(Event::Update { user, uids }, Awaiting::Update);
            }
            _ => {
                self.reply(Reply::bye());
                self.closing = true;
            }
        }
    }

    /// Refuses an authorization-state command after login; true if it was refused.
    fn refuse_after_login(&mut self, what: &str) -> bool {
        if self.logged_in() {
            self.protocol_error(Reply::already_logged_in(), what);
            return true;
        }
        false
    }

    /// Refuses a plaintext password login before TLS (counted by nothing: the client is told
    /// to use STLS, which is not an attempt at credentials).
    fn refuse_plaintext(&mut self, command: &str) -> bool {
        if self.sasl_context().plaintext_allowed() {
            return false;
        }
        let action = self
            .sasl
            .refused(command, SaslFailure::EncryptionRequired(command.into()));
        self.auth_action(action);
        true
    }

    fn user(&mut self, name: Vec<u8>) {
        if self.refuse_after_login("USER after login") || self.refuse_plaintext("USER") {
            return;
        }
        self.state = State::Authorization { user: Some(name) };
        self.reply(Reply::password_required());
    }

    fn pass(&mut self, password: Vec<u8>) {
        if self.refuse_after_login("PASS after login") {
            return;
        }
        let State::Authorization { user } = &mut self.state else {
            return;
        };
        // A PASS consumes its USER, whatever the outcome (RFC 1939 7).
        let Some(user) = user.take() else {
            return self.protocol_error(Reply::no_user(), "PASS without USER");
        };
        if self.refuse_plaintext("USER") {
            return;
        }
        self.emit(Event::CheckPassword { user, password }, Awaiting::Password);
    }

    fn auth_list(&mut self) {
        if self.refuse_after_login("AUTH after login") {
            return;
        }
        let mechanisms = self.config.registry.advertised(&self.sasl_context());
        self.reply(Reply::mechanisms(mechanisms));
    }

    fn auth(&mut self, mechanism: &str, initial: Option<&[u8]>) {
        if self.refuse_after_login("AUTH after login") {
            return;
        }
        self.state = State::Authorization { user: None };
        let context = self.sasl_context();
        let action = self
            .sasl
            .start(&self.config.registry, mechanism, initial, context);
        self.auth_action(action);
    }

    fn stls(&mut self) {
        if self.refuse_after_login("STLS after login") {
            return;
        }
        if self.tls {
            return self.protocol_error(Reply::tls_active(), "STLS under TLS");
        }
        if !self.config.stls_available {
            return self.refuse(Reply::tls_unavailable(), "STLS without certificate");
        }
        self.reply(Reply::begin_tls());
        // RFC 2595 / CVE-2011-0411: bytes pipelined after STLS must not reach the TLS session.
        if !self.input.bytes().is_empty() {
            tracing::info!(
                bytes = self.input.bytes().len(),
                "discarding input pipelined after STLS"
            );
        }
        self.input.clear();
        self.discarding = false;
        self.state = State::Authorization { user: None };
        self.emit(Event::StartTls, Awaiting::Tls);
    }

    /// Carries out what the SASL driver decided.
    fn auth_action(&mut self, action: AuthAction) {
        match action {
            AuthAction::Run(work) => self.emit(Event::Auth(work), Awaiting::Auth),
            AuthAction::Challenge(text) => {
                self.mode = Mode::AuthResponse;
                self.reply(Reply::Continuation(text));
            }
            AuthAction::Success { identity, .. } => {
                self.mode = Mode::Command;
                self.authenticated(identity);
            }
            AuthAction::Failure { failure, close, .. } => {
                // The driver logged the failure and its reason.
                self.mode = Mode::Command;
                if close {
                    // One reply per command (POP3 has no unsolicited replies): the limit's.
                    self.refuse(
                        Reply::too_many_auth_failures(),
                        "too many authentication failures",
                    );
                    self.state = State::Closed;
                    self.closing = true;
                } else {
                    self.reply(Reply::sasl_failure(&failure));
                }
            }
        }
    }

    /// Credentials accepted: lock the maildrop (RFC 1939 8), then read it.
    fn authenticated(&mut self, identity: SaslIdentity) {
        let user = identity.authorization_id.clone();
        let Some(lock) = self.config.locks.try_lock(&user) else {
            tracing::info!(%user, "maildrop locked by another POP3 session");
            self.state = State::Authorization { user: None };
            return self.refuse(Reply::in_use(), "maildrop in use");
        };
        self.state = State::Opening { identity, lock };
        self.emit(Event::OpenMaildrop { user }, Awaiting::Maildrop);
    }

    /// TRANSACTION-state commands.
    fn transaction(&mut self, command: Command) {
        let State::Transaction { maildrop, .. } = &mut self.state else {
            return self.protocol_error(Reply::not_logged_in(), "command before login");
        };
        let reply = match command {
            Command::Stat => {
                let (count, octets) = maildrop.stat();
                Reply::stat(count, octets)
            }
            Command::List(None) => Reply::scan_listing(maildrop.sizes(), maildrop.stat().1),
            Command::List(Some(n)) => match maildrop.size(n) {
                Ok(size) => Reply::scan_line(n, size),
                Err(e) => Reply::message_error(e),
            },
            Command::Uidl(None) => Reply::unique_id_listing(maildrop.unique_ids()),
            Command::Uidl(Some(n)) => match maildrop.unique_id(n) {
                Ok(id) => Reply::unique_id_line(n, &id),
                Err(e) => Reply::message_error(e),
            },
            Command::Retr(n) => match maildrop.fetch(n, None) {
                Ok((size, body)) => Reply::message(size, body),
                Err(e) => Reply::message_error(e),
            },
            Command::Top { message, lines } => match maildrop.fetch(message, Some(lines)) {
                Ok((_, body)) => Reply::top(body),
                Err(e) => Reply::message_error(e),
            },
            Command::Dele(n) => match maildrop.delete(n) {
                Ok(()) => Reply::deleted(),
                Err(e) => Reply::message_error(e),
            },
            Command::Rset => {
                maildrop.reset();
                let (count, octets) = maildrop.stat();
                Reply::reset(count, octets)
            }
            Command::Noop => Reply::noop(),
            // Dispatched before.
            Command::Capa
            | Command::Quit
            | Command::User(_)
            | Command::Pass(_)
            | Command::AuthList
            | Command::Auth { .. }
            | Command::Stls => Reply::noop(),
        };
        if reply.is_error() {
            // Message-number errors are ordinary (a client racing its own DELE); not counted.
            let reason = match &reply {
                Reply::Err { text, .. } => text.clone(),
                _ => String::new(),
            };
            self.refuse(reply, &reason);
        } else {
            self.reply(reply);
        }
    }
}
