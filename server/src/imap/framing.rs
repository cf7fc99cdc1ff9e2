//! Sans-IO framing: splits client bytes into whole commands (lines plus literal data) or single
//! lines (AUTHENTICATE continuations, IDLE's DONE), with size limits, before any IMAP parsing.
//!
//! Splitting first means a malformed or oversized command is skipped as a unit and literal data
//! is never mistaken for a command (the same reasoning as imap-codec's `Fragmentizer`).
//! Bare LF line ends are accepted and turned into CRLF (hand-typed sessions, `nc`), only in
//! line parts: literal data is passed through untouched.

/// How the next bytes are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A command: lines, each possibly announcing a literal that follows.
    Command,
    /// One line, `{n}` at its end means nothing (AUTHENTICATE data, IDLE's DONE).
    Line,
}

/// Size limits in force for the next frame (they depend on the session state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line of a command, CRLF included.
    pub line: usize,
    /// Longest `<tag> AUTHENTICATE ...` line and AUTHENTICATE continuation line.
    pub auth_line: usize,
    /// Most literal bytes one command may carry (all its literals together).
    pub literal: usize,
}

/// What the framer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet: read more and call again.
    NeedMore,
    /// A complete command (every line CRLF-terminated, literal data included), ready for
    /// imap-codec's `CommandCodec`.
    Command(Vec<u8>),
    /// One CRLF-terminated line (in [`Mode::Line`]).
    Line(Vec<u8>),
    /// The command read so far ends with a literal announcement. The caller decides with
    /// [`Framer::accept_literal`] (and sends `+ OK` first if `sync`) or
    /// [`Framer::reject_literal`]. `too_big` is set when it exceeds [`Limits::literal`].
    Literal {
        tag: Option<String>,
        length: u64,
        sync: bool,
        too_big: bool,
    },
    /// A line exceeded its limit. The framer refuses further input: close the connection.
    LineTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a line of the current message.
    Line,
    /// A literal was announced and awaits the caller's decision.
    Announced { length: u64, sync: bool },
    /// Copying literal data into the message.
    Literal { remaining: u64 },
    /// Skipping the data of a rejected non-synchronizing literal.
    SkipLiteral { remaining: u64 },
    /// Skipping the rest of a rejected command.
    SkipLine,
    /// A line was too long; nothing more is framed.
    Poisoned,
}

/// The framer. Feed it with [`Framer::enqueue`], then call [`Framer::next`] until `NeedMore`.
#[derive(Debug)]
pub struct Framer {
    input: Vec<u8>,
    /// The command being assembled.
    message: Vec<u8>,
    /// Literal bytes in `message`.
    literal_bytes: u64,
    /// Leading bytes of `input` already searched for a line end: a line arriving a byte at a
    /// time is scanned once, not once per byte (quadratic, found by fuzzing).
    scanned: usize,
    state: State,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    pub fn new() -> Self {
        Self {
            input: Vec::new(),
            message: Vec::new(),
            literal_bytes: 0,
            scanned: 0,
            state: State::Line,
        }
    }

    /// Adds bytes read from the client.
    pub fn enqueue(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Bytes received but not framed yet.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Drops everything received but not framed: after STARTTLS, pipelined plaintext must not
    /// be taken as if it came through TLS (CVE-2011-0411 style injection).
    pub fn discard_input(&mut self) {
        self.input.clear();
        self.scanned = 0;
        self.message.clear();
        self.literal_bytes = 0;
        if self.state != State::Poisoned {
            self.state = State::Line;
        }
    }

    /// Agrees to receive the announced literal (send `+ OK` first when it is synchronizing).
    pub fn accept_literal(&mut self) {
        if let State::Announced { length, .. } = self.state {
            self.literal_bytes = self.literal_bytes.saturating_add(length);
            self.state = State::Literal { remaining: length };
        }
    }

    /// Refuses the announced literal; the caller replies `NO`. A synchronizing literal ends the
    /// command (the client sends nothing more for it); a non-synchronizing one is on its way, so
    /// its data and the rest of its command are skipped.
    pub fn reject_literal(&mut self) {
        if let State::Announced { length, sync } = self.state {
            self.message.clear();
            self.literal_bytes = 0;
            self.state = if sync {
                State::Line
            } else {
                State::SkipLiteral { remaining: length }
            };
        }
    }

    /// Finds the next frame.
    pub fn next(&mut self, mode: Mode, limits: &Limits) -> Frame {
        loop {
            match self.state {
                State::Poisoned => return Frame::LineTooLong,
                State::Announced { length, sync } => {
                    let total = self.literal_bytes.saturating_add(length);
                    return Frame::Literal {
                        tag: tag_of(&self.message),
                        length,
                        sync,
                        too_big: total > limits.literal as u64,
                    };
                }
                State::Literal { remaining } => {
                    if self.input.is_empty() && remaining > 0 {
                        return Frame::NeedMore;
                    }
                    let take = clamp(remaining, self.input.len());
                    self.message.extend(self.input.drain(..take));
                    self.scanned = 0;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::Line
                    } else {
                        State::Literal { remaining }
                    };
                    if remaining > 0 {
                        return Frame::NeedMore;
                    }
                }
                State::SkipLiteral { remaining } => {
                    let take = clamp(remaining, self.input.len());
                    self.input.drain(..take);
                    self.scanned = 0;
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.state = State::SkipLiteral { remaining };
                        return Frame::NeedMore;
                    }
                    self.state = State::SkipLine;
                }
                State::SkipLine => {
                    let Some(end) = find_lf(&self.input) else {
                        // Nothing of it is kept, so no limit applies; keep memory flat.
                        self.input.clear();
                        return Frame::NeedMore;
                    };
                    let line: Vec<u8> = self.input.drain(..=end).collect();
                    self.scanned = 0;
                    self.state = match announcement(strip_eol(&line)) {
                        Some((length, false)) => State::SkipLiteral { remaining: length },
                        _ => State::Line,
                    };
                }
                State::Line => return self.line(mode, limits),
            }
        }
    }

    fn line(&mut self, mode: Mode, limits: &Limits) -> Frame {
        let limit = match mode {
            Mode::Line => limits.auth_line,
            Mode::Command if is_authenticate(&self.message, &self.input) => limits.auth_line,
            Mode::Command => limits.line,
        };
        let Some(end) = find_lf(&self.input[self.scanned..]).map(|i| i + self.scanned) else {
            self.scanned = self.input.len();
            if self.input.len() >= limit {
                self.poison();
                return Frame::LineTooLong;
            }
            return Frame::NeedMore;
        };
        // Limits apply to the line as framed: a bare LF becomes CRLF, one byte more (found by
        // cargo-fuzz: a 128-byte bare-LF line framed as 129 bytes under a 128-byte limit).
        let framed = if end > 0 && self.input[end - 1] == b'\r' {
            end + 1
        } else {
            end + 2
        };
        // The whole command is bounded too, or `{0}` literals could chain lines forever.
        let command_limit = limits.literal.saturating_add(limits.line.saturating_mul(4));
        if framed > limit || self.message.len() + framed > command_limit {
            self.poison();
            return Frame::LineTooLong;
        }
        let raw: Vec<u8> = self.input.drain(..=end).collect();
        self.scanned = 0;
        let content = strip_eol(&raw);
        let line_start = self.message.len();
        self.message.extend_from_slice(content);
        self.message.extend_from_slice(b"\r\n");
        if mode == Mode::Line {
            self.literal_bytes = 0;
            return Frame::Line(std::mem::take(&mut self.message));
        }
        match announcement(&self.message[line_start..self.message.len() - 2]) {
            Some((length, sync)) => {
                self.state = State::Announced { length, sync };
                self.next(mode, limits)
            }
            None => {
                self.literal_bytes = 0;
                Frame::Command(std::mem::take(&mut self.message))
            }
        }
    }

    fn poison(&mut self) {
        self.state = State::Poisoned;
        self.input.clear();
        self.scanned = 0;
        self.message.clear();
    }
}

fn clamp(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

fn find_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// The line without its LF or CRLF.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `{123}` or `{123+}` at the end of a line: (length, synchronizing).
fn announcement(line: &[u8]) -> Option<(u64, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let spec = &inner[open + 1..];
    let (digits, sync) = match spec.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (spec, true),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let length = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((length, sync))
}

/// The tag of a command (its first word), for replies to commands that were never parsed.
pub fn tag_of(message: &[u8]) -> Option<String> {
    let end = message
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(message.len());
    let tag = &message[..end];
    // tag = 1*<any ASTRING-CHAR except "+"> (RFC 3501 section 9).
    let valid = !tag.is_empty()
        && tag.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        });
    valid.then(|| String::from_utf8_lossy(tag).into_owned())
}

/// Where `<tag> AUTHENTICATE ` must end to get the AUTHENTICATE line limit.
const AUTHENTICATE_PREFIX: usize = 128;

/// Whether the command being read is `<tag> AUTHENTICATE ...` (its line may be longer).
fn is_authenticate(message: &[u8], input: &[u8]) -> bool {
    // Only the first line of a command can be AUTHENTICATE (it takes no literals).
    if !message.is_empty() {
        return false;
    }
    // Looking at the start only keeps the check cheap on a long line arriving in pieces; a tag
    // longer than this gets the shorter command limit.
    let head = &input[..input.len().min(AUTHENTICATE_PREFIX)];
    let mut words = head.splitn(3, |&b| b == b' ');
    let _tag = words.next();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case(b"AUTHENTICATE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        line: 64,
        auth_line: 128,
        literal: 10,
    };

    fn framer(bytes: &[u8]) -> Framer {
        let mut f = Framer::new();
        f.enqueue(bytes);
        f
    }

    /// Regression (fuzzing): each `next` rescanned the whole buffered line, so a long line sent
    /// a byte at a time cost quadratic time. The scan now resumes where it stopped.
    #[test]
    fn a_line_arriving_byte_by_byte_is_scanned_once() {
        let mut f = Framer::new();
        let limits = Limits {
            line: 4096,
            auth_line: 4096,
            literal: 10,
        };
        let line = [b"a AUTHENTICATE PLAIN ".as_slice(), &[b'A'; 3000]].concat();
        for (i, byte) in line.iter().enumerate() {
            f.enqueue(std::slice::from_ref(byte));
            assert_eq!(f.next(Mode::Command, &limits), Frame::NeedMore);
            assert_eq!(
                f.scanned,
                i + 1,
                "bytes already searched are not searched again"
            );
        }
        f.enqueue(b"\r\n");
        assert_eq!(
            f.next(Mode::Command, &limits),
            Frame::Command([line.as_slice(), b"\r\n"].concat())
        );
        assert_eq!(f.scanned, 0);
    }

    /// Regression (cargo-fuzz, corpus `imap_preauth/crash-80c9a25b…`): the limit was checked on
    /// the raw line, so a bare-LF line one byte under it was framed (with CRLF) one byte over.
    #[test]
    fn a_bare_lf_line_is_limited_as_framed_with_crlf() {
        let fits = [vec![b'a'; LIMITS.auth_line - 2], b"\n".to_vec()].concat();
        assert_eq!(
            framer(&fits).next(Mode::Line, &LIMITS),
            Frame::Line([&fits[..fits.len() - 1], b"\r\n"].concat())
        );
        let over = [vec![b'a'; LIMITS.auth_line - 1], b"\n".to_vec()].concat();
        assert_eq!(
            framer(&over).next(Mode::Line, &LIMITS),
            Frame::LineTooLong,
            "{} bytes once framed",
            LIMITS.auth_line + 1
        );
        let command = [b"a ".as_slice(), &[b'x'; 61], b"\n"].concat();
        assert_eq!(
            framer(&command).next(Mode::Command, &LIMITS),
            Frame::LineTooLong
        );
    }

    #[test]
    fn splits_pipelined_commands_and_waits_for_more() {
        let mut f = framer(b"a NOOP\r\nb CAPABILITY\r\nc LOG");
        assert_eq!(
            f.next(Mode::Command, &LIMITS),
            Frame::Command(b"a NOOP\r\n".to_vec())
        );
        assert_eq!(
            f.next(Mode::Command, &LIMITS),
            Frame::Command(b"b CAPABILITY\r\n".to_vec())
        );
        assert_eq!(f.next(Mode::Command, &LIMITS), Frame::NeedMore);
        f.enqueue(b"OUT\n");
        assert_eq!(
            f.next(Mode::Command, &LIMITS),
            Frame::Command(b"c LOGOUT\r\n".to_vec()),
            "bare LF becomes CRLF"
        );
    }

    #[test]
    fn sync_literal_is_announced_then_copied_verbatim() {
        let mut f = framer(b"a LOGIN {3}\r\n");
        assert_eq!(
            f.next(Mode::Command, &LIMITS),
            Frame::Literal {
                tag: Some("a".into()),
                length: 3,
                sync: true,
                too_big: false
            }
        );
        f.accept_literal();
        assert_eq!(f.next(Mode::Command, &LIMITS), Frame::NeedMore);
        f.enqueue(b"b\nc {2+}\r\nxy\r\n");
        assert_eq!(
            f.next(Mode::Command, &LIMITS),
            Frame::Literal {
                tag: Some("a".into()),
                length: 2,
                sync: false,
                too_big: false
            }
        );
        f.accept_literal();
        assert_eq!(
            f.next(Mode::Command, &LIMITS),
            Frame::Command(b"a LOGIN {3}\r\nb\nc {2+}\r\nxy\r\n".to_vec())
        );
    }

    #[test]
    fn literal_limit_counts_all_literals_of_a_command() {
        let mut f = framer(b"a X {6}\r\n");
        assert!(matches!(
            f.next(Mode::Command, &LIMITS),
            Frame::Literal { too_big: false, .. }
        ));
        f.accept_literal();
        f.enqueue(b"123456 {5}\r\n");
        assert!(matches!(
            f.next(Mode::Command, &LIMITS),
            Frame::Literal { too_big: true, .. }
        ));
    }

    #[test]
    fn rejected_sync_literal_ends_the_command() {
        let mut f = framer(b"a APPEND INBOX {999}\r\nb NOOP\r\n");
        assert!(matches!(
            f.next(Mode::Command, &LIMITS),
            Frame::Literal {
                too_big: true,
                sync: true,
                ..
            }
        ));
        f.reject_literal();
        assert_eq!(
            f.next(Mode::Command, &LIMITS),
            Frame::Command(b"b NOOP\r\n".to_vec())
        );
    }

    #[test]
    fn rejected_non_sync_literal_is_skipped_with_the_rest_of_its_command() {
        let mut f = framer(b"a APPEND INBOX {12+}\r\n0123");
        assert!(matches!(
            f.next(Mode::Command, &LIMITS),
            Frame::Literal {
                too_big: true,
                sync: false,
                ..
            }
        ));
        f.reject_literal();
        assert_eq!(f.next(Mode::Command, &LIMITS), Frame::NeedMore);
        // The literal data looks like a command: it must not be taken as one.
        f.enqueue(b"x NOOP\r\n tail {2+}\r\nzz rest\r\nb NOOP\r\n");
        assert_eq!(
            f.next(Mode::Command, &LIMITS),
            Frame::Command(b"b NOOP\r\n".to_vec())
        );
    }

    #[test]
    fn long_lines_poison_the_framer() {
        let mut f = framer(&[b'a'; 70]);
        assert_eq!(f.next(Mode::Command, &LIMITS), Frame::LineTooLong);
        f.enqueue(b"a NOOP\r\n");
        assert_eq!(f.next(Mode::Command, &LIMITS), Frame::LineTooLong);

        let mut line = b"a NOOP ".to_vec();
        line.extend([b'x'; 60]);
        line.extend(b"\r\n");
        let mut f = framer(&line);
        assert_eq!(f.next(Mode::Command, &LIMITS), Frame::LineTooLong);
    }

    #[test]
    fn authenticate_lines_get_the_larger_limit() {
        let mut line = b"a authenticate PLAIN ".to_vec();
        line.extend([b'x'; 80]);
        line.extend(b"\r\n");
        let mut f = framer(&line);
        assert_eq!(f.next(Mode::Command, &LIMITS), Frame::Command(line.clone()));
        let mut cont = vec![b'A'; 100];
        cont.extend(b"\r\n");
        f.enqueue(&cont);
        assert_eq!(f.next(Mode::Line, &LIMITS), Frame::Line(cont));
        f.enqueue(&[b'A'; 200]);
        assert_eq!(f.next(Mode::Line, &LIMITS), Frame::LineTooLong);
    }

    #[test]
    fn line_mode_ignores_literal_syntax() {
        let mut f = framer(b"abc{5}\r\n");
        assert_eq!(
            f.next(Mode::Line, &LIMITS),
            Frame::Line(b"abc{5}\r\n".to_vec())
        );
    }

    #[test]
    fn discard_input_drops_pipelined_bytes() {
        let mut f = framer(b"a STARTTLS\r\nb LOGIN x y\r\n");
        assert!(matches!(f.next(Mode::Command, &LIMITS), Frame::Command(_)));
        assert!(f.buffered() > 0);
        f.discard_input();
        assert_eq!(f.next(Mode::Command, &LIMITS), Frame::NeedMore);
    }

    #[test]
    fn announcements_and_tags() {
        assert_eq!(announcement(b"x {10}"), Some((10, true)));
        assert_eq!(announcement(b"x {0+}"), Some((0, false)));
        assert_eq!(announcement(b"x {}"), None);
        assert_eq!(announcement(b"x {a}"), None);
        assert_eq!(announcement(b"x {99999999999999999999}"), None);
        assert_eq!(tag_of(b"A001 NOOP"), Some("A001".into()));
        assert_eq!(tag_of(b"+x NOOP"), None);
        assert_eq!(tag_of(b""), None);
    }
}
