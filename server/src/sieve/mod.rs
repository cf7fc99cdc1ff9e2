//! Sieve mail filtering (RFC 5228): a pure, synchronous interpreter with no I/O.
//!
//! [`Script::compile`] lexes, parses and validates a script once (errors name the line);
//! [`Script::evaluate`] runs it on one message and says where to file it.
//!
//! Supported: the RFC 5228 core (`require`, `if`/`elsif`/`else`, `stop`, `keep`, `discard`;
//! tests `address`, `header`, `exists`, `size`, `allof`, `anyof`, `not`, `true`, `false`;
//! match types `:is`, `:contains`, `:matches`; comparators `i;octet` and `i;ascii-casemap`),
//! and the extensions `fileinto`, `envelope`, `copy` (RFC 3894), `imap4flags` (RFC 5232,
//! without the variable-name forms, as `variables` is not supported) and `body` (RFC 5173).
//! `redirect` is recognised but refused at compile time: this server has no outbound relay.
//!
//! A script comes from a user, so nothing here trusts it: nesting is bounded at parse time
//! ([`MAX_NESTING_DEPTH`]), a run executes at most [`MAX_ACTIONS`] actions and spends at most
//! [`MAX_MATCH_WORK`] comparison units, and no input makes it panic.
//!
//! ```
//! use mail_oidc_server::sieve::{Delivery, Envelope, Script};
//!
//! let script = Script::compile(
//!     "require \"fileinto\";\nif header :contains \"subject\" \"report\" { fileinto \"Reports\"; }",
//! )?;
//! let envelope = Envelope { from: "a@example.org", to: "b@example.com" };
//! let deliveries = script.evaluate(b"Subject: Weekly report\r\n\r\nHi\r\n", &envelope)?;
//! assert_eq!(deliveries, vec![Delivery { mailbox: "Reports".into(), flags: vec![] }]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod filter;
mod flags;
mod interpret;
mod lexer;
mod matcher;
mod message;
mod parser;
mod program;
mod validate;

#[cfg(test)]
mod tests;

pub use filter::{ActiveScripts, NoScripts, SieveFilter};
pub use flags::MAX_FLAGS;
pub use interpret::MAX_ACTIONS;
pub use matcher::MAX_MATCH_WORK;
pub use parser::MAX_NESTING_DEPTH;
pub use validate::SUPPORTED_EXTENSIONS;

/// The addr-specs in every `name` header of `message`, as the `address` test reads them
/// (display names and group names are not addresses). Submission checks `From:` with it.
pub fn header_addresses(message: &[u8], name: &str) -> Vec<String> {
    message::MessageView::new(message).header_addresses(name)
}

/// Longest script accepted, in bytes. ManageSieve quotas are usually far lower.
pub const MAX_SCRIPT_SIZE: usize = 1024 * 1024;

/// A compiled script, ready to run on any number of messages.
#[derive(Debug, Clone)]
pub struct Script {
    commands: Vec<program::Command>,
}

impl Script {
    /// Parses and validates; the error names the line.
    pub fn compile(source: &str) -> Result<Script, CompileError> {
        if source.len() > MAX_SCRIPT_SIZE {
            return Err(CompileError::new(
                1,
                format!("script is larger than {MAX_SCRIPT_SIZE} bytes"),
            ));
        }
        let tokens = lexer::tokenize(source)?;
        let tree = parser::parse(tokens)?;
        let commands = validate::validate(&tree)?;
        Ok(Script { commands })
    }

    /// Runs the script on one message. `message` is the full RFC 5322 message bytes.
    ///
    /// Returns where to file the message, each mailbox once, in the order the script chose
    /// them (the implicit keep last); an empty list means the message was discarded.
    pub fn evaluate(
        &self,
        message: &[u8],
        envelope: &Envelope<'_>,
    ) -> Result<Vec<Delivery>, RuntimeError> {
        self.evaluate_with_budget(message, envelope, interpret::DEFAULT_WORK)
    }

    fn evaluate_with_budget(
        &self,
        message: &[u8],
        envelope: &Envelope<'_>,
        work: u64,
    ) -> Result<Vec<Delivery>, RuntimeError> {
        let result = interpret::run(&self.commands, message, envelope, work);
        match &result {
            Ok(deliveries) => tracing::debug!(?deliveries, "sieve: script evaluated"),
            Err(error) => tracing::warn!(%error, "sieve: script failed"),
        }
        result
    }
}

/// A script that can't be compiled: what is wrong and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CompileError {
    pub line: usize,
    pub message: String,
}

impl CompileError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }
}

/// A run that hit a limit. The caller should fall back to keeping the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(pub String);

/// The SMTP envelope of the delivery being filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// MAIL FROM address; `""` for the null reverse path.
    pub from: &'a str,
    /// The recipient being delivered.
    pub to: &'a str,
}

/// One mailbox to store the message in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `"INBOX"` for keep.
    pub mailbox: String,
    /// IMAP flags such as `\Seen` or `$Label1`: sorted, deduplicated case-insensitively,
    /// system flags in their canonical spelling.
    pub flags: Vec<String>,
}
