//! Runs a compiled script on one message. Recursion follows the script tree, whose depth the
//! parser bounds; actions are counted and every comparison is charged to a work budget.

use super::flags::{FlagSet, merge_sorted};
use super::matcher::{Budget, MAX_MATCH_WORK};
use super::message::MessageView;
use super::program::{AddressPart, BodyTransform, Command, EnvelopePart, Test};
use super::{Delivery, Envelope, RuntimeError};

/// Actions (keep, fileinto, discard) one run may execute.
pub const MAX_ACTIONS: usize = 64;

pub(crate) fn run(
    program: &[Command],
    message: &[u8],
    envelope: &Envelope<'_>,
    work: u64,
) -> Result<Vec<Delivery>, RuntimeError> {
    let mut run = Run {
        message: MessageView::new(message),
        envelope,
        flags: FlagSet::default(),
        deliveries: Vec::new(),
        implicit_keep: true,
        actions: 0,
        budget: Budget::new(work),
    };
    run.block(program)?;
    if run.implicit_keep {
        let flags = run.flags.as_slice().to_vec();
        run.deliver("INBOX", &flags);
    }
    Ok(run.deliveries)
}

/// Default work budget, exposed for the public entry point.
pub(crate) const DEFAULT_WORK: u64 = MAX_MATCH_WORK;

enum Flow {
    Continue,
    Stop,
}

struct Run<'a> {
    message: MessageView<'a>,
    envelope: &'a Envelope<'a>,
    flags: FlagSet,
    deliveries: Vec<Delivery>,
    /// Cleared by keep, discard and fileinto without :copy (RFC 5228 section 2.10.2, RFC 3894).
    implicit_keep: bool,
    actions: usize,
    budget: Budget,
}

impl Run<'_> {
    fn block(&mut self, commands: &[Command]) -> Result<Flow, RuntimeError> {
        for command in commands {
            if let Flow::Stop = self.command(command)? {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    fn command(&mut self, command: &Command) -> Result<Flow, RuntimeError> {
        match command {
            Command::If {
                branches,
                otherwise,
            } => {
                for (test, block) in branches {
                    if self.test(test)? {
                        return self.block(block);
                    }
                }
                if let Some(block) = otherwise {
                    return self.block(block);
                }
            }
            Command::Stop => return Ok(Flow::Stop),
            Command::Keep { flags } => {
                self.count_action()?;
                self.implicit_keep = false;
                let flags = flags
                    .clone()
                    .unwrap_or_else(|| self.flags.as_slice().to_vec());
                self.deliver("INBOX", &flags);
            }
            Command::Discard => {
                self.count_action()?;
                self.implicit_keep = false;
            }
            Command::FileInto {
                mailbox,
                copy,
                flags,
            } => {
                self.count_action()?;
                if !copy {
                    self.implicit_keep = false;
                }
                let flags = flags
                    .clone()
                    .unwrap_or_else(|| self.flags.as_slice().to_vec());
                self.deliver(mailbox, &flags);
            }
            Command::SetFlag(flags) => self.flags.set(flags)?,
            Command::AddFlag(flags) => self.flags.add(flags)?,
            Command::RemoveFlag(flags) => self.flags.remove(flags),
        }
        Ok(Flow::Continue)
    }

    fn count_action(&mut self) -> Result<(), RuntimeError> {
        self.actions += 1;
        if self.actions > MAX_ACTIONS {
            return Err(RuntimeError(format!(
                "script executed more than {MAX_ACTIONS} actions"
            )));
        }
        Ok(())
    }

    /// Files into `mailbox` once: a second delivery to the same mailbox only adds its flags
    /// (RFC 5228 section 2.10.3 asks to avoid duplicates). INBOX is case-insensitive (RFC 3501).
    fn deliver(&mut self, mailbox: &str, flags: &[String]) {
        let mailbox = if mailbox.eq_ignore_ascii_case("INBOX") {
            "INBOX"
        } else {
            mailbox
        };
        if let Some(existing) = self.deliveries.iter_mut().find(|d| d.mailbox == mailbox) {
            merge_sorted(&mut existing.flags, flags);
            return;
        }
        let mut sorted = Vec::new();
        merge_sorted(&mut sorted, flags);
        self.deliveries.push(Delivery {
            mailbox: mailbox.to_owned(),
            flags: sorted,
        });
    }

    fn test(&mut self, test: &Test) -> Result<bool, RuntimeError> {
        Ok(match test {
            Test::True => true,
            Test::False => false,
            Test::Not(inner) => !self.test(inner)?,
            Test::AllOf(tests) => {
                for t in tests {
                    if !self.test(t)? {
                        return Ok(false);
                    }
                }
                true
            }
            Test::AnyOf(tests) => {
                for t in tests {
                    if self.test(t)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Header {
                headers,
                keys,
                matcher,
            } => {
                for name in headers {
                    self.budget.charge(self.message.header_count())?;
                    let values = self.message.header_values(name);
                    if matcher.any(values.iter().map(String::as_str), keys, &mut self.budget)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Address {
                headers,
                keys,
                part,
                matcher,
            } => {
                for name in headers {
                    self.budget.charge(self.message.header_count())?;
                    let addresses = self.message.header_addresses(name);
                    let values = addresses.iter().filter_map(|a| address_part(a, *part));
                    if matcher.any(values, keys, &mut self.budget)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Envelope {
                parts,
                keys,
                part,
                matcher,
            } => {
                for envelope_part in parts {
                    let raw = match envelope_part {
                        EnvelopePart::From => self.envelope.from,
                        EnvelopePart::To => self.envelope.to,
                    };
                    let address = strip_path(raw);
                    // RFC 5228 section 5.4: the null reverse-path is the empty string,
                    // whatever the address part.
                    let value = if address.is_empty() {
                        Some("")
                    } else {
                        address_part(address, *part)
                    };
                    if matcher.any(value, keys, &mut self.budget)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Exists(headers) => {
                for name in headers {
                    self.budget.charge(self.message.header_count())?;
                    if !self.message.has_header(name) {
                        return Ok(false);
                    }
                }
                true
            }
            Test::Size { over, limit } => {
                let size = u64::try_from(self.message.size()).unwrap_or(u64::MAX);
                if *over { size > *limit } else { size < *limit }
            }
            Test::Body {
                transform,
                keys,
                matcher,
            } => {
                let budget = &mut self.budget;
                // Raw and :content copy the body again for each test; :text is cached.
                if !matches!(transform, BodyTransform::Text) {
                    budget.charge(self.message.size())?;
                }
                match transform {
                    BodyTransform::Raw => {
                        matcher.any([self.message.raw_body().as_ref()], keys, budget)?
                    }
                    BodyTransform::Text => {
                        let parts = self.message.text_parts();
                        matcher.any(parts.iter().map(String::as_str), keys, budget)?
                    }
                    BodyTransform::Content(types) => {
                        let parts = self.message.content_parts(types);
                        matcher.any(parts.iter().map(String::as_str), keys, budget)?
                    }
                }
            }
            Test::HasFlag { keys, matcher } => {
                // Keys may hold several space-separated flags, like the flag arguments.
                let keys: Vec<String> = keys
                    .iter()
                    .flat_map(|k| k.split_ascii_whitespace())
                    .map(str::to_owned)
                    .collect();
                let flags = self.flags.as_slice().iter().map(String::as_str);
                matcher.any(flags, &keys, &mut self.budget)?
            }
        })
    }
}

/// An envelope address may come with its SMTP angle brackets.
fn strip_path(raw: &str) -> &str {
    let trimmed = raw.trim();
    trimmed
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(trimmed)
}

/// RFC 5228 section 2.7.4: the local part is before the last `@`, the domain after it. An
/// address without `@` has neither, so only `:all` can match it.
fn address_part(address: &str, part: AddressPart) -> Option<&str> {
    match part {
        AddressPart::All => Some(address),
        AddressPart::LocalPart => address.rsplit_once('@').map(|(local, _)| local),
        AddressPart::Domain => address.rsplit_once('@').map(|(_, domain)| domain),
    }
}
