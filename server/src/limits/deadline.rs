//! Read deadlines of a line protocol: the idle time between commands (the protocol's own),
//! a deadline for each command to arrive completely once its first byte came, and a total
//! deadline for logging in. The connection loop reads until the earliest of them.
//!
//! A command ends, as far as the clock is concerned, when the session answers: SMTP DATA
//! bodies and IMAP non-synchronizing literals count as part of their command; a synchronizing
//! literal starts afresh after its `+` continuation.

use std::time::Duration;

use tokio::time::Instant;

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No command started within the idle time.
    Idle,
    /// A started command did not arrive completely in time.
    Command,
    /// Not logged in in time.
    Login,
}

impl Expiry {
    /// For logs.
    pub fn what(&self) -> &'static str {
        match self {
            Expiry::Idle => "idle timeout",
            Expiry::Command => "command not completed in time",
            Expiry::Login => "not logged in in time",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReadDeadlines {
    command: Duration,
    /// `None` once logged in, or for a listener without logins (inbound SMTP).
    login_by: Option<Instant>,
    command_started: Option<Instant>,
}

impl ReadDeadlines {
    /// Starts the login clock now (pass `None` for a listener without logins).
    pub fn new(command: Duration, login: Option<Duration>) -> Self {
        Self {
            command,
            login_by: login.map(|l| Instant::now() + l),
            command_started: None,
        }
    }

    /// Bytes arrived: a command is under way (its clock starts with its first byte).
    pub fn input(&mut self) {
        if self.command_started.is_none() {
            self.command_started = Some(Instant::now());
        }
    }

    /// The session answered: the command it answered has arrived.
    pub fn answered(&mut self) {
        self.command_started = None;
    }

    /// Logged in: the login deadline no longer applies.
    pub fn logged_in(&mut self) {
        self.login_by = None;
    }

    /// The earliest deadline for the next read, given the protocol's idle time.
    pub fn next(&self, idle: Duration) -> (Instant, Expiry) {
        let now = Instant::now();
        let mut earliest = match self.command_started {
            Some(started) => (started + self.command, Expiry::Command),
            None => (now + idle, Expiry::Idle),
        };
        if let Some(by) = self.login_by
            && by <= earliest.0
        {
            earliest = (by, Expiry::Login);
        }
        earliest
    }
}
