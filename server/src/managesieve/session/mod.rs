//! The ManageSieve session as a sans-IO state machine (the SMTP session's shape): bytes go in with
//! [`Session::enqueue_input`], [`Session::next_interrupt`] says what to do. The TLS handshake and
//! SASL steps are [`Event`]s the caller performs and answers; script operations are quick calls
//! on the in-memory store and the injected checker.

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::revocation::EndReason;
use crate::auth::sasl::{
    AuthAction, AuthDone, AuthWork, ChannelBinding, Protocol, SaslDriver, SaslFailure,
    SaslIdentity, SaslRegistry, SessionContext, SuccessData,
};
use crate::store::{ScriptError, SieveScripts};

use super::ScriptCheck;
use super::parser::{Command, CommandError, Limits, ParseError, Parser, Refused, Word};
use super::reply::{self, Response};

/// Longest line before authentication (AUTHENTICATE lines excepted).
pub const PREAUTH_LINE: usize = 2 * 1024;
/// Longest literal before authentication (AUTHENTICATE literals excepted).
pub const PREAUTH_LITERAL: u64 = 1024;
/// Longest AUTHENTICATE line or SASL response, and their literals: bearer tokens are big.
pub const MAX_AUTH_LINE: usize = 16 * 1024;
/// Longest line after authentication, literals excluded (names and numbers only).
pub const MAX_LINE: usize = 8 * 1024;
/// Smallest literal limit after authentication (a script name in a literal).
const MIN_LITERAL: u64 = 1024;
/// Protocol errors tolerated before the connection is closed (Dovecot's limit too).
pub const MAX_ERRORS: u32 = 10;

/// What every session of one listener shares.
#[derive(Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub registry: SaslRegistry,
    pub max_auth_failures: u32,
    /// `sieve.allow_plaintext_auth`.
    pub allow_plaintext_auth: bool,
    /// A TLS acceptor exists, so STARTTLS can be offered.
    pub starttls_available: bool,
    pub scripts: Arc<SieveScripts>,
    /// Compiles a script: `Err` is the error with its line (`line N: ...`).
    pub check: ScriptCheck,
    /// The `SIEVE` capability: the extensions scripts may require.
    pub extensions: String,
    pub preauth_timeout: Duration,
    pub idle_timeout: Duration,
}

pub use crate::sans_io::Io;
/// What the session needs next.
pub type Interrupt = crate::sans_io::Interrupt<Event>;

/// Work for the caller. Each doc says how to answer.
pub enum Event {
    /// Flush the output, run the TLS handshake, then call [`Session::tls_established`]
    /// (or close the connection if the handshake fails).
    StartTls,
    /// Run this SASL work with [`crate::auth::sasl::driver::run`]; answer with
    /// [`Session::auth_done`].
    Auth(AuthWork),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::StartTls => f.write_str("StartTls"),
            Event::Auth(work) => f.debug_tuple("Auth").field(work).finish(),
        }
    }
}

enum Mode {
    Command,
    /// A challenge went out; the next line is the client's response (one string).
    AuthResponse,
}

/// The event the caller must answer before the session goes on.
#[derive(Debug, PartialEq, Eq)]
enum Awaiting {
    Tls,
    Auth,
}

pub struct Session {
    config: Arc<SessionConfig>,
    peer: Option<SocketAddr>,
    tls: bool,
    /// The TLS session's `tls-exporter`, for SCRAM-SHA-256-PLUS (set after STARTTLS).
    channel_binding: Option<ChannelBinding>,
    identity: Option<SaslIdentity>,
    /// Successful logins so far: a new one needs a new live-session registration.
    logins: u64,
    sasl: SaslDriver,
    /// The mechanism of the running (or last) AUTHENTICATE, for logs.
    mechanism: String,
    parser: Parser,
    mode: Mode,
    errors: u32,
    /// Rate limit of this connection's bad-command log lines.
    bad_log: crate::log_limit::LogLimit,
    awaiting: Option<Awaiting>,
    event: Option<Event>,
    output: Vec<u8>,
    closing: bool,
}

impl Session {
    /// A new session; the greeting (capabilities, then `OK`) is the first output.
    pub fn new(config: Arc<SessionConfig>, peer: Option<SocketAddr>, tls: bool) -> Self {
        let max_failures = config.max_auth_failures;
        let mut session = Self {
            config,
            peer,
            tls,
            channel_binding: None,
            identity: None,
            logins: 0,
            sasl: SaslDriver::new(
                Protocol::ManageSieve,
                peer,
                max_failures,
                SuccessData::InFinalReply,
            ),
            mechanism: String::new(),
            parser: Parser::new(),
            mode: Mode::Command,
            errors: 0,
            bad_log: crate::log_limit::LogLimit::new("ManageSieve"),
            awaiting: None,
            event: None,
            output: Vec::new(),
            closing: false,
        };
        session.capabilities();
        session.respond(Response::greeting(&session.config.hostname));
        session
    }

    pub fn enqueue_input(&mut self, bytes: &[u8]) {
        self.parser.enqueue(bytes);
    }

    /// The authenticated user, if any.
    pub fn identity(&self) -> Option<&SaslIdentity> {
        self.identity.as_ref()
    }

    /// Successful logins so far (UNAUTHENTICATE allows another).
    pub fn logins(&self) -> u64 {
        self.logins
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// How long the connection may stay idle now.
    pub fn timeout(&self) -> Duration {
        if self.identity.is_some() {
            self.config.idle_timeout
        } else {
            self.config.preauth_timeout
        }
    }

    /// What the caller must do next. Output comes before events, so a reply that precedes
    /// a TLS handshake is written first.
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
                tracing::error!(?awaiting, "session stepped before its event was answered");
                self.closing = true;
                continue;
            }
            if !self.process_input() {
                return Interrupt::Io(Io::NeedMoreInput);
            }
        }
    }

    /// Answer to [`Event::StartTls`]: the connection is now encrypted; the capabilities are
    /// sent again, unasked (RFC 5804 2.2).
    pub fn tls_established(&mut self) {
        if !self.answer(Awaiting::Tls) {
            return;
        }
        self.tls = true;
        self.capabilities();
        self.respond(Response::tls_done());
    }

    /// Answer to [`Event::Auth`].
    pub fn auth_done(&mut self, done: AuthDone) {
        if !self.answer(Awaiting::Auth) {
            return;
        }
        let action = self.sasl.step_done(done);
        self.auth_action(action);
    }

    /// The session was ended from outside (logout at the IdP, revocation, token expiry):
    /// `BYE` with the reason, and whatever was under way is dropped.
    pub fn ended(&mut self, reason: &EndReason) {
        tracing::info!(
            code = reason.code(),
            user = ?self.identity.as_ref().map(|i| &i.authorization_id),
            "session ended"
        );
        self.output.clear();
        self.event = None;
        self.awaiting = None;
        self.mode = Mode::Command;
        self.sasl.cancel();
        self.respond(Response::ended(&reason.text()));
        self.closing = true;
    }

    /// The server is shutting down.
    pub fn shutting_down(&mut self) {
        tracing::info!(
            user = ?self.identity.as_ref().map(|i| &i.authorization_id),
            "session ended: shutdown"
        );
        self.output.clear();
        self.event = None;
        self.awaiting = None;
        self.mode = Mode::Command;
        self.sasl.cancel();
        self.respond(Response::shutting_down());
        self.closing = true;
    }

    /// The connection was idle too long.
    pub fn timed_out(&mut self) {
        tracing::info!(authenticated = self.identity.is_some(), "idle timeout");
        self.respond(Response::timeout());
        self.closing = true;
    }

    /// The context mechanisms see in this session.
    pub fn sasl_context(&self) -> SessionContext {
        SessionContext {
            protocol: Protocol::ManageSieve,
            tls: self.tls,
            allow_plaintext_without_tls: self.config.allow_plaintext_auth,
            peer: self.peer,
            channel_binding: self.channel_binding.clone(),
        }
    }

    /// The channel binding of the TLS session (the connection sets it after STARTTLS).
    pub fn set_channel_binding(&mut self, binding: Option<ChannelBinding>) {
        self.channel_binding = binding;
    }

    fn answer(&mut self, expected: Awaiting) -> bool {
        if self.awaiting.as_ref() == Some(&expected) {
            self.awaiting = None;
            true
        } else {
            tracing::error!(?expected, awaiting = ?self.awaiting, "unexpected answer to session event");
            self.closing = true;
            false
        }
    }

    fn respond(&mut self, response: Response) {
        response.encode_into(&mut self.output);
    }

    /// Sends a `NO` and logs why (rate-limited per connection).
    fn refuse(&mut self, response: Response, reason: &str) {
        if self.bad_log.allow() {
            tracing::info!(reason, "refused");
        }
        self.respond(response);
    }

    /// A protocol error (bad syntax, wrong state, unknown command): refused, and counted.
    fn protocol_error(&mut self, response: Response, reason: &str) {
        self.refuse(response, reason);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            // Always logged: it says why the connection ends.
            tracing::info!("too many ManageSieve protocol errors, closing");
            self.respond(Response::too_many_errors());
            self.closing = true;
        }
    }

    fn emit(&mut self, event: Event, awaiting: Awaiting) {
        self.event = Some(event);
        self.awaiting = Some(awaiting);
    }

    fn limits(&self) -> Limits {
        if matches!(self.mode, Mode::AuthResponse) {
            return Limits::uniform(MAX_AUTH_LINE, MAX_AUTH_LINE as u64);
        }
        if self.identity.is_some() {
            let literal = (self.config.scripts.limits().max_script_size as u64).max(MIN_LITERAL);
            return Limits::uniform(MAX_LINE, literal);
        }
        Limits {
            line: PREAUTH_LINE,
            literal: PREAUTH_LITERAL,
            auth_line: MAX_AUTH_LINE,
            auth_literal: MAX_AUTH_LINE as u64,
        }
    }

    /// Handles one line. Returns false when more input is needed.
    fn process_input(&mut self) -> bool {
        let limits = self.limits();
        match self.parser.next(&limits) {
            None => false,
            Some(Ok(words)) => {
                match std::mem::replace(&mut self.mode, Mode::Command) {
                    Mode::Command => self.command(words),
                    Mode::AuthResponse => self.auth_response(words),
                }
                true
            }
            Some(Err(refused)) => {
                self.refused_input(refused);
                true
            }
        }
    }

    fn refused_input(&mut self, refused: Refused) {
        let reason = refused.error.to_string();
        let in_exchange = matches!(
            std::mem::replace(&mut self.mode, Mode::Command),
            Mode::AuthResponse
        );
        let oversize = matches!(
            refused.error,
            ParseError::LineTooLong { .. } | ParseError::LiteralTooBig { .. }
        );
        if self.identity.is_none() && oversize {
            // Before login, nobody gets to make us read (or skip) large input.
            self.sasl.cancel();
            self.refuse(Response::input_too_big_bye(), &reason);
            self.closing = true;
            return;
        }
        if in_exchange {
            let action = self
                .sasl
                .refused(&self.mechanism, SaslFailure::Malformed(reason));
            return self.auth_action(action);
        }
        match refused.error {
            ParseError::LiteralTooBig { size, .. }
                if matches!(
                    refused.command.as_deref(),
                    Some("PUTSCRIPT" | "CHECKSCRIPT")
                ) =>
            {
                let max = self.config.scripts.limits().max_script_size;
                self.refuse(
                    Response::script_error(&ScriptError::TooBig { size, max }),
                    &reason,
                );
            }
            ParseError::LiteralTooBig { .. } => {
                self.protocol_error(Response::literal_too_big(), &reason)
            }
            ParseError::LineTooLong { .. } => {
                self.protocol_error(Response::line_too_long(), &reason)
            }
            ParseError::Syntax(what) => self.protocol_error(Response::syntax_error(what), &reason),
        }
    }

    /// The capability lines (RFC 5804 1.7) for the current state; `OK` is the caller's.
    fn capabilities(&mut self) {
        let context = self.sasl_context();
        let out = &mut self.output;
        let sasl = match self.identity {
            // No mechanism is offered once logged in.
            Some(_) => String::new(),
            None => self.config.registry.advertised(&context).join(" "),
        };
        reply::capability(out, "IMPLEMENTATION", Some("mail-oidc"));
        reply::capability(out, "SASL", Some(&sasl));
        reply::capability(out, "SIEVE", Some(&self.config.extensions));
        if self.config.starttls_available && !self.tls && self.identity.is_none() {
            reply::capability(out, "STARTTLS", None);
        }
        reply::capability(out, "VERSION", Some("1.0"));
        reply::capability(out, "UNAUTHENTICATE", None);
    }

    fn command(&mut self, words: Vec<Word>) {
        let command = match Command::from_words(words) {
            Ok(command) => command,
            Err(e @ CommandError::Unknown(_)) => {
                return self.protocol_error(Response::unknown_command(), &e.to_string());
            }
            Err(e @ CommandError::Arguments { expected, .. }) => {
                let what = format!("expected {expected}");
                return self.protocol_error(Response::syntax_error(&what), &e.to_string());
            }
        };
        tracing::debug!(?command, "command");
        match command {
            Command::Capability => {
                self.capabilities();
                self.respond(Response::capability_done());
            }
            Command::Noop { tag } => self.respond(Response::noop(tag)),
            Command::Logout => {
                self.respond(Response::logout());
                self.closing = true;
            }
            Command::StartTls => self.starttls(),
            Command::Authenticate { mechanism, initial } => self.authenticate(mechanism, initial),
            Command::Unauthenticate => self.unauthenticate(),
            other => match self.identity.as_ref().map(|i| i.authorization_id.clone()) {
                Some(user) => self.script_command(&user, other),
                None => self.protocol_error(Response::need_auth(), "script command before login"),
            },
        }
    }

    fn starttls(&mut self) {
        if self.tls {
            return self.protocol_error(Response::tls_active(), "STARTTLS under TLS");
        }
        if self.identity.is_some() {
            return self.protocol_error(Response::tls_after_login(), "STARTTLS after login");
        }
        if !self.config.starttls_available {
            return self.refuse(Response::tls_unavailable(), "STARTTLS without certificate");
        }
        self.respond(Response::begin_tls());
        // Bytes pipelined after STARTTLS must not reach the TLS session (CVE-2011-0411).
        let dropped = self.parser.discard_input();
        if dropped > 0 {
            tracing::info!(bytes = dropped, "discarding input pipelined after STARTTLS");
        }
        self.emit(Event::StartTls, Awaiting::Tls);
    }

    fn authenticate(&mut self, mechanism: String, initial: Option<Vec<u8>>) {
        if self.identity.is_some() {
            return self.protocol_error(Response::already_authenticated(), "second AUTHENTICATE");
        }
        // ManageSieve sends an empty initial response as an empty string; the driver's
        // wire form for it is `=`.
        let initial = initial.map(|ir| if ir.is_empty() { b"=".to_vec() } else { ir });
        let context = self.sasl_context();
        self.mechanism = mechanism.clone();
        let action = self.sasl.start(
            &self.config.registry,
            &mechanism,
            initial.as_deref(),
            context,
        );
        self.auth_action(action);
    }

    /// A line while a challenge is out: one string, `"*"` aborts.
    fn auth_response(&mut self, words: Vec<Word>) {
        let action = match <[Word; 1]>::try_from(words) {
            Ok([Word::Str(response)]) => self.sasl.client_response(&response),
            _ => self.sasl.refused(
                &self.mechanism,
                SaslFailure::Malformed("SASL response is not one string".into()),
            ),
        };
        self.auth_action(action);
    }

    /// Carries out what the SASL driver decided.
    fn auth_action(&mut self, action: AuthAction) {
        match action {
            AuthAction::Run(work) => self.emit(Event::Auth(work), Awaiting::Auth),
            AuthAction::Challenge(text) => {
                self.mode = Mode::AuthResponse;
                reply::challenge(&mut self.output, &text);
            }
            AuthAction::Success { identity, data, .. } => {
                self.mode = Mode::Command;
                self.identity = Some(identity);
                self.logins += 1;
                self.respond(Response::logged_in(data));
            }
            AuthAction::Failure { failure, close, .. } => {
                self.mode = Mode::Command;
                self.respond(Response::sasl_failure(&failure));
                if close {
                    self.refuse(
                        Response::too_many_auth_failures(),
                        "too many authentication failures",
                    );
                    self.closing = true;
                }
            }
        }
    }

    /// RFC 5804 2.14: back to the non-authenticated state (the connection deregisters the
    /// live session).
    fn unauthenticate(&mut self) {
        match self.identity.take() {
            Some(identity) => {
                tracing::info!(user = %identity.authorization_id, "unauthenticated");
                self.respond(Response::unauthenticated());
            }
            None => {
                self.protocol_error(Response::not_authenticated(), "UNAUTHENTICATE before login")
            }
        }
    }

    fn script_command(&mut self, user: &str, command: Command) {
        let scripts = self.config.scripts.clone();
        let result = match command {
            Command::PutScript { name, script } => self.put_script(user, &name, script),
            Command::CheckScript { script } => {
                self.check_script(script).map(|()| Response::script_valid())
            }
            Command::ListScripts => {
                for (name, active) in scripts.list(user) {
                    reply::script_entry(&mut self.output, &name, active);
                }
                Ok(Response::list_done())
            }
            Command::SetActive { name } => script_name(&name, true).and_then(|name| {
                scripts
                    .set_active(user, &name)
                    .map(|()| Response::set_active_done(name.is_empty()))
                    .map_err(|e| Response::script_error(&e))
            }),
            Command::GetScript { name } => script_name(&name, false).and_then(|name| {
                let source = scripts
                    .get(user, &name)
                    .map_err(|e| Response::script_error(&e))?;
                reply::script(&mut self.output, source.as_bytes());
                Ok(Response::get_done())
            }),
            Command::DeleteScript { name } => script_name(&name, false).and_then(|name| {
                scripts
                    .delete(user, &name)
                    .map(|()| Response::delete_done())
                    .map_err(|e| Response::script_error(&e))
            }),
            Command::RenameScript { old, new } => script_name(&old, false).and_then(|old| {
                let new = script_name(&new, false)?;
                scripts
                    .rename(user, &old, &new)
                    .map(|()| Response::rename_done())
                    .map_err(|e| Response::script_error(&e))
            }),
            Command::HaveSpace { name, size } => script_name(&name, false).and_then(|name| {
                scripts
                    .have_space(user, &name, size)
                    .map(|()| Response::have_space())
                    .map_err(|e| Response::script_error(&e))
            }),
            // Handled before; listed so a new command is not forgotten here.
            Command::Authenticate { .. }
            | Command::StartTls
            | Command::Capability
            | Command::Logout
            | Command::Noop { .. }
            | Command::Unauthenticate => Ok(Response::unknown_command()),
        };
        match result {
            Ok(response) => self.respond(response),
            Err(response) => {
                let reason = response.text.clone().unwrap_or_default();
                self.refuse(response, &reason);
            }
        }
    }

    /// PUTSCRIPT: room first (RFC 5804 2.6), then the script itself, then the store.
    fn put_script(
        &mut self,
        user: &str,
        name: &[u8],
        script: Vec<u8>,
    ) -> Result<Response, Response> {
        let name = script_name(name, false)?;
        let scripts = &self.config.scripts;
        scripts
            .have_space(user, &name, script.len() as u64)
            .map_err(|e| Response::script_error(&e))?;
        let source = String::from_utf8(script).map_err(|_| Response::script_not_utf8())?;
        (self.config.check)(&source).map_err(|message| Response::script_refused(&message))?;
        scripts
            .put(user, &name, source)
            .map_err(|e| Response::script_error(&e))?;
        tracing::info!(user, script = %name, "script stored");
        Ok(Response::put_done())
    }

    fn check_script(&mut self, script: Vec<u8>) -> Result<(), Response> {
        let max = self.config.scripts.limits().max_script_size;
        if script.len() > max {
            return Err(Response::script_error(&ScriptError::TooBig {
                size: script.len() as u64,
                max,
            }));
        }
        let source = String::from_utf8(script).map_err(|_| Response::script_not_utf8())?;
        (self.config.check)(&source).map_err(|message| Response::script_refused(&message))
    }
}

/// A script name from the wire: UTF-8 and the RFC 5804 rules (`empty_ok` for SETACTIVE's
/// "deactivate").
fn script_name(bytes: &[u8], empty_ok: bool) -> Result<String, Response> {
    let name = std::str::from_utf8(bytes).map_err(|_| Response::invalid_name())?;
    if name.is_empty() && empty_ok {
        return Ok(String::new());
    }
    crate::store::scripts::validate_name(name).map_err(|e| Response::script_error(&e))?;
    Ok(name.to_string())
}
