//! The SMTP session as a sans-IO state machine (imap-next's shape): bytes go in with
//! [`Session::enqueue_input`], [`Session::next_interrupt`] says what to do. Anything slow or async
//! (TLS handshake, SASL step, directory lookup, store append) is an [`Event`] the caller performs
//! and answers with the matching method before calling it again.

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::directory::DirectoryError;
use crate::auth::sasl::{
    AuthAction, AuthDone, AuthWork, ChannelBinding, Protocol, SaslDriver, SaslIdentity,
    SaslRegistry, SessionContext, SuccessData,
};

use super::SmtpListenerKind;
use super::command::{self, Command, MailParams, ReversePath};
use super::data::{DataOutcome, DataReader};
use super::delivery::{DeliveryError, Envelope, Trace, protocol_keyword};
use super::reply::Reply;
use crate::store::StoreError;

/// Longest command line, without CRLF (RFC 5321 says 512; extensions and lenient clients go over).
pub const MAX_COMMAND_LINE: usize = 4 * 1024;
/// Longest AUTH command or SASL response line: bearer tokens are big.
pub const MAX_AUTH_LINE: usize = 16 * 1024;
/// Recipients per transaction (RFC 5321 4.5.3.1.8 asks for at least 100).
pub const MAX_RECIPIENTS: usize = 100;
/// Protocol errors tolerated before the connection is closed (stops scanners and HTTP clients).
pub const MAX_ERRORS: u32 = 20;
/// DATA bytes are reserved from the in-flight budget in steps of this size (one atomic update
/// per step, not per read).
pub const DATA_RESERVE_STEP: usize = 64 * 1024;

/// What every session of one listener shares.
#[derive(Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub kind: SmtpListenerKind,
    /// Advertised with SIZE and enforced in DATA.
    pub max_message_size: usize,
    pub max_auth_failures: u32,
    /// `submission.allow_plaintext_auth`.
    pub allow_plaintext_auth: bool,
    /// Inbound only: accepted recipient domains; empty = the directory decides alone.
    pub local_domains: Vec<String>,
    /// A TLS acceptor exists, so STARTTLS can be offered.
    pub starttls_available: bool,
    pub registry: SaslRegistry,
    /// Refused recipients before `421 4.7.0` and close (`smtp.max_recipient_refusals`).
    pub max_recipient_refusals: u32,
    /// The server-wide budget of DATA bytes being received.
    pub inflight: crate::inflight::InFlight,
    /// Refused recipients per client address, over every session of the listener.
    pub address_refusals: Arc<super::refusals::RecipientRefusals>,
}

impl SessionConfig {
    fn is_submission(&self) -> bool {
        self.kind != SmtpListenerKind::Inbound
    }
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
    /// Look the address up in the directory; answer with [`Session::recipient_checked`].
    CheckRecipient(String),
    /// Store the message; answer with [`Session::delivered`].
    Deliver(Envelope),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::StartTls => f.write_str("StartTls"),
            Event::Auth(work) => f.debug_tuple("Auth").field(work).finish(),
            Event::CheckRecipient(a) => f.debug_tuple("CheckRecipient").field(a).finish(),
            Event::Deliver(e) => f
                .debug_struct("Deliver")
                .field("recipients", &e.recipients)
                .field("size", &e.message.len())
                .finish(),
        }
    }
}

struct Helo {
    name: String,
    esmtp: bool,
}

struct Transaction {
    from: ReversePath,
    /// Canonical names, without duplicates.
    recipients: Vec<String>,
}

enum Mode {
    Command,
    /// A `334` was sent; the next line is the client's SASL response (RFC 4954: success data
    /// goes out as `334` too, answered with an empty line, then `235`).
    AuthResponse,
    Data(DataReader),
}

/// The event the caller must answer before the session goes on.
#[derive(Debug, PartialEq, Eq)]
enum Awaiting {
    Tls,
    Auth,
    Recipient(String),
    Delivery,
}

use crate::sans_io::InputBuffer;

enum LineError {
    TooLong,
}

pub struct Session {
    config: Arc<SessionConfig>,
    peer: Option<SocketAddr>,
    tls: bool,
    helo: Option<Helo>,
    identity: Option<SaslIdentity>,
    transaction: Option<Transaction>,
    sasl: SaslDriver,
    /// The TLS session's `tls-exporter` channel binding (SCRAM-SHA-256-PLUS).
    channel_binding: Option<ChannelBinding>,
    errors: u32,
    /// Recipients refused so far (unknown, not local): directory enumeration is cut short.
    recipient_refusals: u32,
    /// In-flight bytes the message being received (then delivered) holds.
    data_reservation: Option<crate::inflight::Reservation>,
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
    pub fn new(config: Arc<SessionConfig>, peer: Option<SocketAddr>, tls: bool) -> Self {
        let max_failures = config.max_auth_failures;
        let mut session = Self {
            config,
            peer,
            tls,
            helo: None,
            identity: None,
            transaction: None,
            sasl: SaslDriver::new(Protocol::Smtp, peer, max_failures, SuccessData::AsChallenge),
            channel_binding: None,
            errors: 0,
            recipient_refusals: 0,
            data_reservation: None,
            bad_log: crate::log_limit::LogLimit::new("SMTP"),
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

    /// The authenticated user, if any.
    pub fn identity(&self) -> Option<&SaslIdentity> {
        self.identity.as_ref()
    }

    pub fn is_tls(&self) -> bool {
        self.tls
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

    /// The channel binding of the TLS session (the connection sets it after each handshake).
    pub fn set_channel_binding(&mut self, binding: Option<ChannelBinding>) {
        self.channel_binding = binding;
    }

    /// Answer to [`Event::StartTls`]: the connection is now encrypted. Everything learnt
    /// before is forgotten (RFC 3207 4.2); the client must EHLO again.
    pub fn tls_established(&mut self) {
        if !self.answer(Awaiting::Tls) {
            return;
        }
        self.tls = true;
        self.helo = None;
        self.identity = None;
        self.transaction = None;
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

    /// Answer to [`Event::CheckRecipient`]: the directory's canonical name, if the user exists.
    pub fn recipient_checked(&mut self, result: Result<Option<String>, DirectoryError>) {
        let Some(Awaiting::Recipient(address)) = self.awaiting.take() else {
            tracing::error!("recipient answer without a pending lookup");
            self.closing = true;
            return;
        };
        match result {
            Ok(Some(canonical)) => {
                if let Some(txn) = &mut self.transaction
                    && !txn.recipients.contains(&canonical)
                {
                    txn.recipients.push(canonical);
                }
                self.reply(Reply::recipient_ok());
            }
            Ok(None) => {
                if self.bad_log.allow() {
                    tracing::info!(recipient = %address, "recipient not in directory");
                }
                self.recipient_refused(Reply::unknown_user(&address), "unknown recipient");
            }
            Err(e) => {
                tracing::warn!(recipient = %address, error = %e, "directory lookup failed");
                self.refuse(Reply::directory_failure(), "directory unavailable");
            }
        }
    }

    /// Answer to [`Event::CheckRecipient`] when the directory knows the user but their quota is
    /// used up: `452 4.2.2`, the recipient is not added.
    pub fn recipient_full(&mut self, canonical: &str) {
        let Some(Awaiting::Recipient(address)) = self.awaiting.take() else {
            tracing::error!("recipient answer without a pending lookup");
            self.closing = true;
            return;
        };
        tracing::info!(recipient = %address, user = canonical, "recipient over quota");
        self.refuse(Reply::mailbox_full(&address), "recipient over quota");
    }

    /// Answer to [`Event::Deliver`]: the queue id once every copy is stored.
    pub fn delivered(&mut self, result: Result<String, DeliveryError>) {
        if !self.answer(Awaiting::Delivery) {
            return;
        }
        // Stored (or failed): the message no longer counts as in flight.
        self.data_reservation = None;
        match result {
            Ok(id) => {
                tracing::info!(id, "message delivered");
                self.reply(Reply::queued(&id));
            }
            // All or nothing: the copies stored for recipients with room were rolled back, so
            // the sender keeps the message and no accepted mail is lost.
            Err(DeliveryError::Store {
                user,
                source: StoreError::OverQuota { .. },
            }) => {
                tracing::info!(user, "message refused: a recipient's quota is exceeded");
                self.reply(Reply::over_quota(&user));
            }
            Err(e) => {
                tracing::error!(error = %e, "delivery failed");
                self.reply(Reply::store_failure());
            }
        }
    }

    /// The session was ended from outside (logout at the IdP, revocation, token expiry): `421`,
    /// and whatever was under way (a message in DATA, a pending event's answer) is dropped.
    pub fn ended(&mut self, reason: &crate::auth::revocation::EndReason) {
        tracing::info!(code = reason.code(), user = ?self.identity.as_ref().map(|i| &i.authorization_id), "session ended");
        self.output.clear();
        self.event = None;
        self.awaiting = None;
        self.transaction = None;
        self.data_reservation = None;
        self.mode = Mode::Command;
        self.reply(Reply::session_ended(&reason.text()));
        self.closing = true;
    }

    /// The server is shutting down: a message not yet accepted is not accepted.
    pub fn shutting_down(&mut self) {
        tracing::info!(user = ?self.identity.as_ref().map(|i| &i.authorization_id), "session ended: shutdown");
        self.output.clear();
        self.event = None;
        self.awaiting = None;
        self.transaction = None;
        self.mode = Mode::Command;
        self.reply(Reply::shutting_down());
        self.closing = true;
    }

    /// The connection was idle too long.
    pub fn timed_out(&mut self) {
        tracing::info!("idle timeout");
        self.reply(Reply::timeout());
        self.closing = true;
    }

    /// The context mechanisms see in this session.
    pub fn sasl_context(&self) -> SessionContext {
        SessionContext {
            protocol: Protocol::Smtp,
            tls: self.tls,
            allow_plaintext_without_tls: self.config.allow_plaintext_auth,
            peer: self.peer,
            channel_binding: self.channel_binding.clone(),
        }
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

    fn reply(&mut self, reply: Reply) {
        reply.encode_into(&mut self.output);
    }

    /// Sends an error reply and logs why (rate-limited per connection).
    fn refuse(&mut self, reply: Reply, reason: &str) {
        if self.bad_log.allow() {
            tracing::info!(code = reply.code, reason, "refused");
        }
        self.reply(reply);
    }

    /// A protocol error (bad syntax, bad sequence): refused, and counted.
    fn protocol_error(&mut self, reply: Reply, reason: &str) {
        self.refuse(reply, reason);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            // Always logged: it says why the connection ends.
            tracing::info!(peer = ?self.peer, "too many protocol errors, closing");
            self.reply(Reply::too_many_errors());
            self.closing = true;
        }
    }

    /// A refused recipient: refused, and counted; too many look like directory enumeration,
    /// so the session ends with `421` (Postfix's `smtpd_hard_error_limit` in spirit).
    fn recipient_refused(&mut self, reply: Reply, reason: &str) {
        self.refuse(reply, reason);
        self.recipient_refusals = self.recipient_refusals.saturating_add(1);
        let address_over = self
            .peer
            .is_some_and(|p| self.config.address_refusals.record(p.ip()));
        if self.recipient_refusals >= self.config.max_recipient_refusals || address_over {
            tracing::warn!(
                peer = ?self.peer,
                refusals = self.recipient_refusals,
                address_over,
                "too many refused recipients, closing (directory enumeration?)"
            );
            self.reply(Reply::too_many_recipient_refusals());
            self.transaction = None;
            self.closing = true;
        }
    }

    fn emit(&mut self, event: Event, awaiting: Option<Awaiting>) {
        self.event = Some(event);
        self.awaiting = awaiting;
    }

    /// Handles one line or one DATA chunk. Returns false when more input is needed.
    fn process_input(&mut self) -> bool {
        if let Mode::Data(reader) = &mut self.mode {
            let input = self.input.bytes();
            if input.is_empty() {
                return false;
            }
            // Reserve what this input can add before it is buffered (bare LFs become CRLF, so
            // at most twice its size; never more than the size limit, past which nothing is
            // kept): the message never holds more than its reservation.
            if !reader.is_dropped() {
                let max = self.config.max_message_size;
                let want = reader
                    .held()
                    .saturating_add(input.len().saturating_mul(2))
                    .div_ceil(DATA_RESERVE_STEP)
                    .saturating_mul(DATA_RESERVE_STEP)
                    .min(max);
                let reserved = self
                    .data_reservation
                    .as_mut()
                    .is_some_and(|r| r.try_grow_to(want));
                if !reserved {
                    tracing::warn!(
                        peer = ?self.peer,
                        held = reader.held(),
                        in_use = self.config.inflight.in_use(),
                        limit = self.config.inflight.limit(),
                        "in-flight byte budget spent, dropping the message being received"
                    );
                    reader.drop_body();
                    self.data_reservation = None;
                }
            }
            let (used, outcome) = reader.feed(input);
            self.input.consume(used);
            if let Some(outcome) = outcome {
                self.mode = Mode::Command;
                self.data_finished(outcome);
            }
            return true;
        }
        match self.take_line() {
            None => false,
            Some(Err(LineError::TooLong)) => {
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
                    Mode::Data(_) => {} // handled above
                }
                true
            }
        }
    }

    fn line_limit(&self) -> usize {
        match self.mode {
            Mode::AuthResponse => MAX_AUTH_LINE,
            _ => {
                let input = self.input.bytes();
                let is_auth = input.len() >= 5 && input[..5].eq_ignore_ascii_case(b"AUTH ");
                if is_auth {
                    MAX_AUTH_LINE
                } else {
                    MAX_COMMAND_LINE
                }
            }
        }
    }

    /// The next complete line without its line end (CRLF or a lenient bare LF).
    fn take_line(&mut self) -> Option<Result<Vec<u8>, LineError>> {
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
                    return Some(Err(LineError::TooLong));
                }
                return None;
            };
            let mut line = &input[..lf];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let result = if line.len() > limit {
                Err(LineError::TooLong)
            } else {
                Ok(line.to_vec())
            };
            self.input.consume(lf + 1);
            if std::mem::take(&mut self.discarding) {
                // The tail of a line we already refused.
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
                self.protocol_error(Reply::command_error(&e), &reason);
                return;
            }
        };
        match command {
            Command::Ehlo(name) => self.ehlo(name),
            Command::Helo(name) => {
                self.helo = Some(Helo { name, esmtp: false });
                self.transaction = None;
                self.reply(Reply::new(250, self.config.hostname.clone()));
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to } => self.rcpt(to),
            Command::Data => self.data(),
            Command::Rset => {
                self.transaction = None;
                self.reply(Reply::ok());
            }
            Command::Noop => self.reply(Reply::ok()),
            Command::Quit => {
                self.reply(Reply::bye());
                self.closing = true;
            }
            Command::Vrfy => self.reply(Reply::cannot_vrfy()),
            Command::Expn => self.refuse(Reply::expn_not_implemented(), "EXPN"),
            Command::Help => self.reply(Reply::help()),
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial.as_deref()),
        }
    }

    fn ehlo(&mut self, name: String) {
        self.helo = Some(Helo { name, esmtp: true });
        self.transaction = None;
        let config = &self.config;
        let mut lines = vec![
            config.hostname.clone(),
            "PIPELINING".to_string(),
            format!("SIZE {}", config.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if config.starttls_available && !self.tls {
            lines.push("STARTTLS".to_string());
        }
        if config.is_submission() {
            let mechanisms = config.registry.advertised(&self.sasl_context());
            if !mechanisms.is_empty() {
                lines.push(format!("AUTH {}", mechanisms.join(" ")));
            }
        }
        self.reply(Reply::multiline(250, lines));
    }

    fn mail(&mut self, from: ReversePath, params: MailParams) {
        if self.helo.is_none() {
            return self.protocol_error(Reply::need_helo(), "MAIL before EHLO");
        }
        if self.config.is_submission() && self.identity.is_none() {
            return self.refuse(Reply::auth_required(), "MAIL before AUTH on submission");
        }
        if self.transaction.is_some() {
            return self.protocol_error(Reply::nested_mail(), "nested MAIL");
        }
        if params
            .size
            .is_some_and(|s| s > self.config.max_message_size as u64)
        {
            return self.refuse(Reply::size_exceeded(), "declared SIZE over the limit");
        }
        if let (Some(identity), ReversePath::Mailbox(address)) = (&self.identity, &from)
            && !address.eq_ignore_ascii_case(&identity.authorization_id)
        {
            tracing::info!(
                sender = %address,
                user = %identity.authorization_id,
                "sender address not owned by user"
            );
            return self.refuse(Reply::sender_not_owned(), "sender not owned");
        }
        tracing::debug!(%from, "MAIL accepted");
        self.transaction = Some(Transaction {
            from,
            recipients: Vec::new(),
        });
        self.reply(Reply::sender_ok());
    }

    fn rcpt(&mut self, to: String) {
        let Some(txn) = &self.transaction else {
            return self.protocol_error(Reply::need_mail(), "RCPT before MAIL");
        };
        if txn.recipients.len() >= MAX_RECIPIENTS {
            return self.refuse(Reply::too_many_recipients(), "recipient limit reached");
        }
        if !self.config.is_submission() && !self.config.local_domains.is_empty() {
            let domain = to.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
            let local = self
                .config
                .local_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain));
            if !local {
                if self.bad_log.allow() {
                    tracing::info!(recipient = %to, "recipient domain is not local");
                }
                return self.recipient_refused(Reply::relay_denied(), "relay denied");
            }
        }
        self.emit(
            Event::CheckRecipient(to.clone()),
            Some(Awaiting::Recipient(to)),
        );
    }

    fn data(&mut self) {
        match &self.transaction {
            None => self.protocol_error(Reply::need_mail(), "DATA before MAIL"),
            Some(txn) if txn.recipients.is_empty() => {
                self.protocol_error(Reply::no_valid_recipients(), "DATA without recipients")
            }
            Some(_) => {
                let first = DATA_RESERVE_STEP.min(self.config.max_message_size);
                let Some(reservation) = self.config.inflight.try_reserve(first) else {
                    if self.bad_log.allow() {
                        tracing::warn!(
                            peer = ?self.peer,
                            in_use = self.config.inflight.in_use(),
                            limit = self.config.inflight.limit(),
                            "in-flight byte budget spent, DATA refused"
                        );
                    }
                    return self.reply(Reply::insufficient_storage());
                };
                self.data_reservation = Some(reservation);
                self.mode = Mode::Data(DataReader::new(self.config.max_message_size));
                self.reply(Reply::start_data());
            }
        }
    }

    fn data_finished(&mut self, outcome: DataOutcome) {
        let txn = self.transaction.take();
        // Held on only while the message goes to delivery; every refusal below frees it.
        let reservation = self.data_reservation.take();
        let message = match outcome {
            DataOutcome::TooBig { size } => {
                tracing::info!(size, max = self.config.max_message_size, "message too big");
                return self.refuse(Reply::message_too_big(), "message too big");
            }
            DataOutcome::Dropped { size } => {
                tracing::info!(size, "message dropped: in-flight byte budget spent");
                return self.refuse(Reply::insufficient_storage(), "in-flight budget spent");
            }
            DataOutcome::Complete(message) => message,
        };
        let (Some(txn), Some(helo)) = (txn, &self.helo) else {
            // DATA is only entered with both; keep the session sane anyway.
            tracing::error!("DATA finished without a transaction");
            return self.reply(Reply::bad_sequence());
        };
        // The envelope sender was checked at MAIL; the header a reader sees must not lie either.
        if let Some(identity) = &self.identity {
            let foreign: Vec<String> = crate::sieve::header_addresses(&message, "From")
                .into_iter()
                .filter(|a| !a.eq_ignore_ascii_case(&identity.authorization_id))
                .collect();
            if !foreign.is_empty() {
                tracing::info!(
                    user = %identity.authorization_id,
                    from = ?foreign,
                    "From header names another address"
                );
                return self.refuse(Reply::from_header_not_owned(), "From header not owned");
            }
        }
        let envelope = Envelope {
            from: txn.from,
            recipients: txn.recipients,
            message,
            trace: Trace {
                helo: helo.name.clone(),
                peer: self.peer,
                protocol: protocol_keyword(helo.esmtp, self.tls, self.identity.is_some()),
            },
        };
        tracing::debug!(
            size = envelope.message.len(),
            recipients = envelope.recipients.len(),
            "message received"
        );
        self.data_reservation = reservation;
        self.emit(Event::Deliver(envelope), Some(Awaiting::Delivery));
    }

    fn starttls(&mut self) {
        if self.tls {
            return self.protocol_error(Reply::tls_already_active(), "STARTTLS under TLS");
        }
        if !self.config.starttls_available {
            return self.refuse(Reply::tls_not_available(), "STARTTLS without certificate");
        }
        self.reply(Reply::ready_for_tls());
        // RFC 3207 / CVE-2011-0411: bytes pipelined after STARTTLS must not reach the TLS session.
        if !self.input.bytes().is_empty() {
            tracing::info!(
                bytes = self.input.bytes().len(),
                "discarding input pipelined after STARTTLS"
            );
        }
        self.input.clear();
        self.discarding = false;
        self.emit(Event::StartTls, Some(Awaiting::Tls));
    }

    fn auth(&mut self, mechanism: &str, initial: Option<&str>) {
        if !self.config.is_submission() {
            return self.protocol_error(Reply::auth_not_on_this_port(), "AUTH on inbound port");
        }
        if self.helo.is_none() {
            return self.protocol_error(Reply::need_helo(), "AUTH before EHLO");
        }
        if self.identity.is_some() {
            return self.protocol_error(Reply::already_authenticated(), "second AUTH");
        }
        if self.transaction.is_some() {
            return self.protocol_error(Reply::auth_in_transaction(), "AUTH during transaction");
        }
        let context = self.sasl_context();
        let action = self.sasl.start(
            &self.config.registry,
            mechanism,
            initial.map(str::as_bytes),
            context,
        );
        self.auth_action(action);
    }

    /// Carries out what the SASL driver decided.
    fn auth_action(&mut self, action: AuthAction) {
        match action {
            AuthAction::Run(work) => self.emit(Event::Auth(work), Some(Awaiting::Auth)),
            AuthAction::Challenge(text) => {
                self.mode = Mode::AuthResponse;
                self.reply(Reply::auth_challenge(text));
            }
            AuthAction::Success { identity, .. } => {
                self.mode = Mode::Command;
                self.authenticated(identity);
            }
            AuthAction::Failure { failure, close, .. } => {
                self.mode = Mode::Command;
                self.reply(Reply::sasl_failure(&failure));
                if close {
                    self.refuse(
                        Reply::too_many_auth_failures(),
                        "too many authentication failures",
                    );
                    self.closing = true;
                }
            }
        }
    }

    fn authenticated(&mut self, identity: SaslIdentity) {
        self.identity = Some(identity);
        self.reply(Reply::auth_success());
    }
}
