//! ManageSieve framing and commands (RFC 5804 section 4), pure: bytes in, lines of words out,
//! then typed commands. The [`Parser`] keeps its place between reads, so a literal or a quoted
//! string may arrive in any number of pieces; refused input is dropped up to the end of its line
//! without being stored.

use std::fmt;

/// One element of a command line.
#[derive(Clone, PartialEq, Eq)]
pub enum Word {
    /// A bare word other than a number (command names).
    Atom(String),
    /// A quoted string or a literal, unescaped.
    Str(Vec<u8>),
    Number(u64),
}

// Strings may hold scripts, passwords or tokens: never print their contents.
impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Word::Atom(a) => f.debug_tuple("Atom").field(a).finish(),
            Word::Str(s) => write!(f, "Str({} bytes)", s.len()),
            Word::Number(n) => f.debug_tuple("Number").field(n).finish(),
        }
    }
}

/// What one line may hold; the session chooses by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of a line outside its literals.
    pub line: usize,
    /// Largest literal, in bytes.
    pub literal: u64,
    /// `line` for AUTHENTICATE lines (initial responses carry bearer tokens).
    pub auth_line: usize,
    /// `literal` for AUTHENTICATE lines.
    pub auth_literal: u64,
}

impl Limits {
    /// The same limits for every line (SASL responses).
    pub fn uniform(line: usize, literal: u64) -> Self {
        Self {
            line,
            literal,
            auth_line: line,
            auth_literal: literal,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line longer than {max} bytes")]
    LineTooLong { max: usize },
    #[error("literal of {size} bytes exceeds the limit of {max}")]
    LiteralTooBig { size: u64, max: u64 },
    #[error("syntax error: {0}")]
    Syntax(&'static str),
}

/// A line refused by the parser; the rest of it is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The command name (upper case), when the line got that far.
    pub command: Option<String>,
    pub error: ParseError,
}

/// Digits of a literal length: RFC 5804 numbers fit in 32 bits.
const MAX_LITERAL_DIGITS: usize = 10;

enum State {
    /// Before a word (line start or after a space).
    Start,
    /// A word ended: a space or the line end must follow.
    AfterWord,
    Quoted {
        buf: Vec<u8>,
        escaped: bool,
    },
    Bare {
        buf: Vec<u8>,
    },
    /// After `{`: the length, `+` and `}` seen so far, then CR.
    LiteralHeader {
        size: u64,
        digits: usize,
        plus: bool,
        closed: bool,
        cr: bool,
    },
    LiteralData {
        remaining: u64,
        buf: Vec<u8>,
    },
    /// CR seen, LF must follow.
    Cr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Keep following the syntax (literal lengths matter) but store nothing.
    Words,
    /// The syntax is lost: drop everything up to the next LF.
    ToLineEnd,
}

/// Splits input into command lines. Feed it with [`Parser::enqueue`], take lines with
/// [`Parser::next`].
pub struct Parser {
    input: Vec<u8>,
    /// Bytes of `input` already parsed.
    pos: usize,
    words: Vec<Word>,
    state: State,
    /// Bytes of the current line outside literals.
    line_bytes: usize,
    skip: Option<Skip>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

fn is_atom_char(b: u8) -> bool {
    // RFC 5804 ATOM-CHAR: printable ASCII except atom-specials `(`, `)`, `"`, `\`, `{`, SP.
    (0x21..=0x7e).contains(&b) && !matches!(b, b'(' | b')' | b'"' | b'\\' | b'{')
}

impl Parser {
    pub fn new() -> Self {
        Self {
            input: Vec::new(),
            pos: 0,
            words: Vec::new(),
            state: State::Start,
            line_bytes: 0,
            skip: None,
        }
    }

    pub fn enqueue(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Bytes received but not parsed yet.
    pub fn buffered(&self) -> usize {
        self.input.len() - self.pos
    }

    /// Drops unparsed input (bytes pipelined after STARTTLS must not reach the TLS session);
    /// returns how many bytes were dropped. A line in progress is forgotten too.
    pub fn discard_input(&mut self) -> usize {
        let dropped = self.buffered();
        self.input.clear();
        self.pos = 0;
        self.reset_line();
        dropped
    }

    fn reset_line(&mut self) {
        self.words.clear();
        self.state = State::Start;
        self.line_bytes = 0;
        self.skip = None;
    }

    fn command_name(&self) -> Option<String> {
        match self.words.first() {
            Some(Word::Atom(a)) => Some(a.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn is_authenticate(&self) -> bool {
        matches!(self.words.first(), Some(Word::Atom(a)) if a.eq_ignore_ascii_case("AUTHENTICATE"))
    }

    /// Refuses the current line; the rest of it is dropped as `skip` says.
    fn refuse(&mut self, error: ParseError, skip: Skip) -> Refused {
        let refused = Refused {
            command: self.command_name(),
            error,
        };
        self.words.clear();
        self.skip = Some(skip);
        refused
    }

    fn push(&mut self, word: Word) {
        if self.skip.is_none() {
            self.words.push(word);
        }
    }

    /// The next complete line, a refusal, or `None` when more input is needed. Empty lines
    /// are skipped.
    pub fn next(&mut self, limits: &Limits) -> Option<Result<Vec<Word>, Refused>> {
        loop {
            if self.skip == Some(Skip::ToLineEnd) {
                let rest = &self.input[self.pos..];
                match rest.iter().position(|&b| b == b'\n') {
                    Some(lf) => {
                        self.pos += lf + 1;
                        self.reset_line();
                        continue;
                    }
                    None => {
                        self.pos = self.input.len();
                        return None;
                    }
                }
            }
            if let State::LiteralData { remaining, buf } = &mut self.state {
                let available = self.input.len() - self.pos;
                let take = (*remaining).min(available as u64) as usize;
                if self.skip.is_none() {
                    buf.extend_from_slice(&self.input[self.pos..self.pos + take]);
                }
                self.pos += take;
                *remaining -= take as u64;
                if *remaining > 0 {
                    return None;
                }
                let data = std::mem::take(buf);
                self.state = State::AfterWord;
                self.push(Word::Str(data));
                continue;
            }
            let &b = self.input.get(self.pos)?;
            // Every byte outside literals counts toward the line limit.
            if self.skip.is_none() {
                let max = if self.is_authenticate() {
                    limits.auth_line
                } else {
                    limits.line
                };
                if self.line_bytes >= max && b != b'\n' && b != b'\r' {
                    return Some(Err(
                        self.refuse(ParseError::LineTooLong { max }, Skip::Words)
                    ));
                }
            }
            match self.step(b, limits) {
                Ok(Some(words)) => return Some(Ok(words)),
                Ok(None) => {}
                Err(refused) => return Some(Err(refused)),
            }
        }
    }

    /// Handles one byte outside literal data. `Ok(Some(words))` ends a line.
    fn step(&mut self, b: u8, limits: &Limits) -> Result<Option<Vec<Word>>, Refused> {
        let syntax = |p: &mut Self, what| Err(p.refuse(ParseError::Syntax(what), Skip::ToLineEnd));
        match &mut self.state {
            State::Start | State::AfterWord => {
                let after_word = matches!(self.state, State::AfterWord);
                match b {
                    b'\n' => return Ok(self.end_line()),
                    b'\r' => self.state = State::Cr,
                    b' ' => self.state = State::Start,
                    _ if after_word => return syntax(self, "missing space between arguments"),
                    b'"' => {
                        self.state = State::Quoted {
                            buf: Vec::new(),
                            escaped: false,
                        }
                    }
                    b'{' => {
                        self.state = State::LiteralHeader {
                            size: 0,
                            digits: 0,
                            plus: false,
                            closed: false,
                            cr: false,
                        }
                    }
                    _ if is_atom_char(b) => self.state = State::Bare { buf: vec![b] },
                    _ => return syntax(self, "unexpected character"),
                }
            }
            State::Quoted { buf, escaped } => {
                let skipping = self.skip.is_some();
                match b {
                    b'\r' | b'\n' | 0 => return syntax(self, "unterminated quoted string"),
                    b'"' | b'\\' if *escaped => {
                        if !skipping {
                            buf.push(b);
                        }
                        *escaped = false;
                    }
                    _ if *escaped => return syntax(self, "invalid escape in quoted string"),
                    b'\\' => *escaped = true,
                    b'"' => {
                        let data = std::mem::take(buf);
                        self.state = State::AfterWord;
                        self.push(Word::Str(data));
                    }
                    _ => {
                        if !skipping {
                            buf.push(b);
                        }
                    }
                }
            }
            State::Bare { buf } => {
                if is_atom_char(b) {
                    if self.skip.is_none() {
                        buf.push(b);
                    }
                } else if matches!(b, b' ' | b'\r' | b'\n') {
                    let bare = std::mem::take(buf);
                    self.state = State::AfterWord;
                    let word = if bare.iter().all(u8::is_ascii_digit) {
                        match std::str::from_utf8(&bare).ok().and_then(|s| s.parse().ok()) {
                            Some(n) => Word::Number(n),
                            None if self.skip.is_some() => Word::Number(0),
                            None => return syntax(self, "number too large"),
                        }
                    } else {
                        // ATOM-CHARs are ASCII.
                        Word::Atom(String::from_utf8_lossy(&bare).into_owned())
                    };
                    self.push(word);
                    // The separator is handled as after any word.
                    return self.step(b, limits);
                } else {
                    return syntax(self, "unexpected character in atom");
                }
            }
            State::LiteralHeader {
                size,
                digits,
                plus,
                closed,
                cr,
            } => match b {
                b'0'..=b'9' if !*plus && !*closed => {
                    *digits += 1;
                    if *digits > MAX_LITERAL_DIGITS {
                        return syntax(self, "literal length too long");
                    }
                    *size = *size * 10 + u64::from(b - b'0');
                }
                b'+' if *digits > 0 && !*plus && !*closed => *plus = true,
                b'}' if *digits > 0 && !*closed => *closed = true,
                b'\r' if *closed && !*cr => *cr = true,
                // RFC 5804 only defines `{n+}` from clients; `{n}` is accepted the same way,
                // as there is no continuation request to wait for.
                b'\n' if *closed => {
                    let size = *size;
                    let max = if self.is_authenticate() {
                        limits.auth_literal
                    } else {
                        limits.literal
                    };
                    self.state = State::LiteralData {
                        remaining: size,
                        buf: Vec::new(),
                    };
                    if self.skip.is_none() {
                        if size > max {
                            self.line_bytes += 1;
                            self.pos += 1;
                            return Err(
                                self.refuse(ParseError::LiteralTooBig { size, max }, Skip::Words)
                            );
                        }
                        if let State::LiteralData { buf, .. } = &mut self.state {
                            // Bounded by the limit just checked.
                            buf.reserve_exact(size as usize);
                        }
                    }
                }
                _ => return syntax(self, "invalid literal"),
            },
            State::Cr => match b {
                b'\n' => {
                    self.pos += 1;
                    return Ok(self.end_line_consumed());
                }
                _ => return syntax(self, "CR without LF"),
            },
            // `next` consumes literal data before calling this.
            State::LiteralData { .. } => return Ok(None),
        }
        self.pos += 1;
        self.line_bytes += 1;
        Ok(None)
    }

    /// At LF (not consumed yet).
    fn end_line(&mut self) -> Option<Vec<Word>> {
        self.pos += 1;
        self.end_line_consumed()
    }

    fn end_line_consumed(&mut self) -> Option<Vec<Word>> {
        let skipped = self.skip.is_some();
        let words = std::mem::take(&mut self.words);
        self.reset_line();
        // A refused line was answered already; an empty line needs no answer.
        (!skipped && !words.is_empty()).then_some(words)
    }
}

/// A command with its arguments checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `AUTHENTICATE <mechanism> [<initial response>]`; the response is the wire text (base64).
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    StartTls,
    Capability,
    Logout,
    Noop {
        tag: Option<Vec<u8>>,
    },
    Unauthenticate,
    PutScript {
        name: Vec<u8>,
        script: Vec<u8>,
    },
    CheckScript {
        script: Vec<u8>,
    },
    ListScripts,
    SetActive {
        name: Vec<u8>,
    },
    GetScript {
        name: Vec<u8>,
    },
    DeleteScript {
        name: Vec<u8>,
    },
    RenameScript {
        old: Vec<u8>,
        new: Vec<u8>,
    },
    HaveSpace {
        name: Vec<u8>,
        size: u64,
    },
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: arguments may be credentials or scripts.
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown command {0:?}")]
    Unknown(String),
    #[error("bad arguments to {command}: expected {expected}")]
    Arguments {
        command: &'static str,
        expected: &'static str,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::StartTls => "STARTTLS",
            Command::Capability => "CAPABILITY",
            Command::Logout => "LOGOUT",
            Command::Noop { .. } => "NOOP",
            Command::Unauthenticate => "UNAUTHENTICATE",
            Command::PutScript { .. } => "PUTSCRIPT",
            Command::CheckScript { .. } => "CHECKSCRIPT",
            Command::ListScripts => "LISTSCRIPTS",
            Command::SetActive { .. } => "SETACTIVE",
            Command::GetScript { .. } => "GETSCRIPT",
            Command::DeleteScript { .. } => "DELETESCRIPT",
            Command::RenameScript { .. } => "RENAMESCRIPT",
            Command::HaveSpace { .. } => "HAVESPACE",
        }
    }

    /// Types one line from the [`Parser`].
    pub fn from_words(words: Vec<Word>) -> Result<Command, CommandError> {
        let mut words = words.into_iter();
        let name = match words.next() {
            Some(Word::Atom(a)) => a.to_ascii_uppercase(),
            Some(Word::Str(_)) => return Err(CommandError::Unknown("(string)".into())),
            Some(Word::Number(n)) => return Err(CommandError::Unknown(n.to_string())),
            None => return Err(CommandError::Unknown(String::new())),
        };
        let args: Vec<Word> = words.collect();
        let bad = |command, expected| CommandError::Arguments { command, expected };
        let strings = |command: &'static str, expected: &'static str, min, max| {
            if args.len() < min || args.len() > max {
                return Err(bad(command, expected));
            }
            args.iter()
                .map(|w| match w {
                    Word::Str(s) => Ok(s.clone()),
                    _ => Err(bad(command, expected)),
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let command = match name.as_str() {
            "AUTHENTICATE" => {
                let expected = "a mechanism and an optional initial response";
                let mut args = args.into_iter();
                let mechanism = match args.next() {
                    // RFC 5804 wants a string; a bare atom is accepted too.
                    Some(Word::Str(s)) => String::from_utf8(s)
                        .map_err(|_| bad("AUTHENTICATE", "a mechanism name in ASCII"))?,
                    Some(Word::Atom(a)) => a,
                    _ => return Err(bad("AUTHENTICATE", expected)),
                };
                let initial = match args.next() {
                    None => None,
                    Some(Word::Str(s)) => Some(s),
                    Some(_) => return Err(bad("AUTHENTICATE", expected)),
                };
                if args.next().is_some() {
                    return Err(bad("AUTHENTICATE", expected));
                }
                Command::Authenticate { mechanism, initial }
            }
            "STARTTLS" => {
                strings("STARTTLS", "no arguments", 0, 0)?;
                Command::StartTls
            }
            "CAPABILITY" => {
                strings("CAPABILITY", "no arguments", 0, 0)?;
                Command::Capability
            }
            "LOGOUT" => {
                strings("LOGOUT", "no arguments", 0, 0)?;
                Command::Logout
            }
            "UNAUTHENTICATE" => {
                strings("UNAUTHENTICATE", "no arguments", 0, 0)?;
                Command::Unauthenticate
            }
            "LISTSCRIPTS" => {
                strings("LISTSCRIPTS", "no arguments", 0, 0)?;
                Command::ListScripts
            }
            "NOOP" => Command::Noop {
                tag: strings("NOOP", "an optional string", 0, 1)?.pop(),
            },
            "PUTSCRIPT" => {
                let [name, script] = two(strings("PUTSCRIPT", "a name and a script", 2, 2)?)
                    .ok_or_else(|| bad("PUTSCRIPT", "a name and a script"))?;
                Command::PutScript { name, script }
            }
            "CHECKSCRIPT" => Command::CheckScript {
                script: one(strings("CHECKSCRIPT", "a script", 1, 1)?)
                    .ok_or_else(|| bad("CHECKSCRIPT", "a script"))?,
            },
            "SETACTIVE" => Command::SetActive {
                name: one(strings("SETACTIVE", "a script name", 1, 1)?)
                    .ok_or_else(|| bad("SETACTIVE", "a script name"))?,
            },
            "GETSCRIPT" => Command::GetScript {
                name: one(strings("GETSCRIPT", "a script name", 1, 1)?)
                    .ok_or_else(|| bad("GETSCRIPT", "a script name"))?,
            },
            "DELETESCRIPT" => Command::DeleteScript {
                name: one(strings("DELETESCRIPT", "a script name", 1, 1)?)
                    .ok_or_else(|| bad("DELETESCRIPT", "a script name"))?,
            },
            "RENAMESCRIPT" => {
                let expected = "the old and the new name";
                let [old, new] = two(strings("RENAMESCRIPT", expected, 2, 2)?)
                    .ok_or_else(|| bad("RENAMESCRIPT", expected))?;
                Command::RenameScript { old, new }
            }
            "HAVESPACE" => {
                let expected = "a script name and a size";
                let mut args = args.into_iter();
                match (args.next(), args.next(), args.next()) {
                    (Some(Word::Str(name)), Some(Word::Number(size)), None) => {
                        Command::HaveSpace { name, size }
                    }
                    _ => return Err(bad("HAVESPACE", expected)),
                }
            }
            _ => return Err(CommandError::Unknown(name)),
        };
        Ok(command)
    }
}

fn one(mut v: Vec<Vec<u8>>) -> Option<Vec<u8>> {
    (v.len() == 1).then(|| v.pop()).flatten()
}

fn two(v: Vec<Vec<u8>>) -> Option<[Vec<u8>; 2]> {
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        line: 64,
        literal: 16,
        auth_line: 256,
        auth_literal: 128,
    };

    fn s(text: &str) -> Word {
        Word::Str(text.as_bytes().to_vec())
    }
    fn atom(text: &str) -> Word {
        Word::Atom(text.into())
    }

    /// Every result of feeding `input` at once.
    fn parse_all(input: &[u8]) -> Vec<Result<Vec<Word>, Refused>> {
        let mut p = Parser::new();
        p.enqueue(input);
        std::iter::from_fn(|| p.next(&LIMITS)).collect()
    }

    /// The same, one byte per read.
    fn parse_bytewise(input: &[u8]) -> Vec<Result<Vec<Word>, Refused>> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for b in input {
            p.enqueue(&[*b]);
            while let Some(r) = p.next(&LIMITS) {
                out.push(r);
            }
        }
        out
    }

    fn both(input: &[u8]) -> Vec<Result<Vec<Word>, Refused>> {
        let whole = parse_all(input);
        assert_eq!(whole, parse_bytewise(input), "split reads give the same");
        whole
    }

    fn syntax(command: Option<&str>, what: &'static str) -> Result<Vec<Word>, Refused> {
        Err(Refused {
            command: command.map(str::to_string),
            error: ParseError::Syntax(what),
        })
    }

    #[test]
    fn atoms_strings_and_numbers() {
        assert_eq!(
            both(b"Capability\r\nHAVESPACE \"my script\" 1024\r\nnoop\n"),
            [
                Ok(vec![atom("Capability")]),
                Ok(vec![atom("HAVESPACE"), s("my script"), Word::Number(1024)]),
                Ok(vec![atom("noop")]),
            ]
        );
    }

    #[test]
    fn quoted_escapes() {
        assert_eq!(
            both(b"NOOP \"a\\\"b\\\\c\"\r\n"),
            [Ok(vec![atom("NOOP"), s("a\"b\\c")])]
        );
        assert_eq!(
            both(b"NOOP \"\\n\"\r\nNOOP\r\n"),
            [
                syntax(Some("NOOP"), "invalid escape in quoted string"),
                Ok(vec![atom("NOOP")])
            ]
        );
        assert_eq!(
            both(b"NOOP \"open\r\nNOOP \"\"\r\n"),
            [
                syntax(Some("NOOP"), "unterminated quoted string"),
                Ok(vec![atom("NOOP"), s("")])
            ]
        );
        assert_eq!(
            both("NOOP \"ünïcødé\"\r\n".as_bytes()),
            [Ok(vec![atom("NOOP"), s("ünïcødé")])]
        );
    }

    #[test]
    fn literals_synchronising_and_not() {
        assert_eq!(
            both(b"PUTSCRIPT \"a\" {5+}\r\nkeep;\r\nPUTSCRIPT {1}\r\nb {0+}\r\n\r\n"),
            [
                Ok(vec![atom("PUTSCRIPT"), s("a"), s("keep;")]),
                Ok(vec![atom("PUTSCRIPT"), s("b"), s("")]),
            ]
        );
        // A literal holds anything, line ends and quotes included.
        assert_eq!(
            both(b"CHECKSCRIPT {8+}\r\n\"\r\n{2}\r\n\r\n"),
            [Ok(vec![atom("CHECKSCRIPT"), s("\"\r\n{2}\r\n")])]
        );
    }

    #[test]
    fn literal_across_reads_in_chunks() {
        let mut p = Parser::new();
        p.enqueue(b"PUTSCRIPT \"x\" {10+}\r\nrequ");
        assert_eq!(p.next(&LIMITS), None);
        p.enqueue(b"ire;");
        assert_eq!(p.next(&LIMITS), None);
        p.enqueue(b"\r\n");
        assert_eq!(
            p.next(&LIMITS),
            None,
            "the literal is whole, the line is not"
        );
        p.enqueue(b"\r\nLOGOUT\r\n");
        assert_eq!(
            p.next(&LIMITS),
            Some(Ok(vec![atom("PUTSCRIPT"), s("x"), s("require;\r\n")]))
        );
        assert_eq!(p.next(&LIMITS), Some(Ok(vec![atom("LOGOUT")])));
        assert_eq!(p.next(&LIMITS), None);
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn oversize_literal_is_refused_and_skipped() {
        let input = b"PUTSCRIPT \"x\" {17+}\r\n0123456789abcdefg \"more\" {3+}\r\nabc\r\nNOOP\r\n";
        let refused = Err(Refused {
            command: Some("PUTSCRIPT".into()),
            error: ParseError::LiteralTooBig { size: 17, max: 16 },
        });
        assert_eq!(both(input), [refused, Ok(vec![atom("NOOP")])]);
        // Refused as soon as the length is known, before its bytes arrive.
        let mut p = Parser::new();
        p.enqueue(b"PUTSCRIPT \"x\" {4000000000+}\r\n");
        assert!(matches!(
            p.next(&LIMITS),
            Some(Err(Refused {
                error: ParseError::LiteralTooBig {
                    size: 4_000_000_000,
                    ..
                },
                ..
            }))
        ));
        p.enqueue(&[b'x'; 1000]);
        assert_eq!(p.next(&LIMITS), None);
        assert_eq!(p.buffered(), 0, "skipped bytes are not kept");
    }

    #[test]
    fn line_limit_and_authenticate_limits() {
        let long = format!("NOOP \"{}\"\r\nNOOP\r\n", "a".repeat(70));
        assert_eq!(
            both(long.as_bytes()),
            [
                Err(Refused {
                    command: Some("NOOP".into()),
                    error: ParseError::LineTooLong { max: 64 },
                }),
                Ok(vec![atom("NOOP")])
            ]
        );
        // AUTHENTICATE lines may be longer and carry bigger literals.
        let token = "b".repeat(200);
        let line = format!("AUTHENTICATE \"XOAUTH2\" \"{token}\"\r\n");
        assert_eq!(
            both(line.as_bytes()),
            [Ok(vec![atom("AUTHENTICATE"), s("XOAUTH2"), s(&token)])]
        );
        let literal = format!("authenticate \"PLAIN\" {{100+}}\r\n{}\r\n", "c".repeat(100));
        assert_eq!(both(literal.as_bytes()).len(), 1);
        assert!(both(literal.as_bytes())[0].is_ok());
        let too_long = format!("AUTHENTICATE \"X\" \"{}\"\r\n", "d".repeat(300));
        assert!(matches!(
            &both(too_long.as_bytes())[0],
            Err(Refused {
                error: ParseError::LineTooLong { max: 256 },
                ..
            })
        ));
    }

    #[test]
    fn syntax_errors_resynchronise_at_the_line_end() {
        assert_eq!(
            both(b"NOOP \"a\"\"b\"\r\nNOOP (x)\r\nNOOP {x}\r\nNOOP\rX\r\nLOGOUT\r\n"),
            [
                syntax(Some("NOOP"), "missing space between arguments"),
                syntax(Some("NOOP"), "unexpected character"),
                syntax(Some("NOOP"), "invalid literal"),
                syntax(Some("NOOP"), "CR without LF"),
                Ok(vec![atom("LOGOUT")]),
            ]
        );
        assert_eq!(
            both(b"HAVESPACE \"a\" 99999999999999999999999\r\n"),
            [syntax(Some("HAVESPACE"), "number too large")]
        );
        assert_eq!(
            both(b"NOOP {12345678901+}\r\n"),
            [syntax(Some("NOOP"), "literal length too long")]
        );
    }

    #[test]
    fn empty_lines_and_extra_spaces_are_tolerated() {
        assert_eq!(
            both(b"\r\n\nNOOP  \"a\" \r\n"),
            [Ok(vec![atom("NOOP"), s("a")])]
        );
    }

    #[test]
    fn discard_input_forgets_everything() {
        let mut p = Parser::new();
        p.enqueue(b"STARTTLS\r\nCAPABILITY\r\nNOOP \"hal");
        assert_eq!(p.next(&LIMITS), Some(Ok(vec![atom("STARTTLS")])));
        assert_eq!(p.discard_input(), 21);
        // The rest of the half-read string is a new line now.
        p.enqueue(b"f\"\r\nLOGOUT\r\n");
        assert_eq!(
            p.next(&LIMITS),
            Some(Err(Refused {
                command: None,
                error: ParseError::Syntax("unexpected character in atom")
            }))
        );
        assert_eq!(p.next(&LIMITS), Some(Ok(vec![atom("LOGOUT")])));
    }

    fn command(line: &[u8]) -> Result<Command, CommandError> {
        let mut p = Parser::new();
        p.enqueue(line);
        let words = p.next(&LIMITS).expect("a line").expect("parses");
        Command::from_words(words)
    }

    #[test]
    fn typed_commands() {
        assert_eq!(
            command(b"Authenticate \"PLAIN\" \"AGEAYg==\"\r\n"),
            Ok(Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(b"AGEAYg==".to_vec())
            })
        );
        assert_eq!(
            command(b"AUTHENTICATE OAUTHBEARER\r\n"),
            Ok(Command::Authenticate {
                mechanism: "OAUTHBEARER".into(),
                initial: None
            })
        );
        assert_eq!(
            command(b"putscript \"s\" {5+}\r\nkeep;\r\n"),
            Ok(Command::PutScript {
                name: b"s".to_vec(),
                script: b"keep;".to_vec()
            })
        );
        assert_eq!(
            command(b"RENAMESCRIPT \"a\" \"b\"\r\n"),
            Ok(Command::RenameScript {
                old: b"a".to_vec(),
                new: b"b".to_vec()
            })
        );
        assert_eq!(
            command(b"HAVESPACE \"a\" 10\r\n"),
            Ok(Command::HaveSpace {
                name: b"a".to_vec(),
                size: 10
            })
        );
        assert_eq!(
            command(b"NOOP \"t\"\r\n"),
            Ok(Command::Noop {
                tag: Some(b"t".to_vec())
            })
        );
        assert_eq!(command(b"NOOP\r\n"), Ok(Command::Noop { tag: None }));
        assert_eq!(command(b"LISTSCRIPTS\r\n"), Ok(Command::ListScripts));
        assert_eq!(
            command(b"FROB\r\n"),
            Err(CommandError::Unknown("FROB".into()))
        );
        assert_eq!(
            command(b"\"FROB\"\r\n"),
            Err(CommandError::Unknown("(string)".into()))
        );
        for bad in [
            &b"HAVESPACE \"a\" \"10\"\r\n"[..],
            b"SETACTIVE\r\n",
            b"GETSCRIPT \"a\" \"b\"\r\n",
            b"LOGOUT \"now\"\r\n",
            b"PUTSCRIPT \"a\"\r\n",
            b"AUTHENTICATE \"PLAIN\" \"a\" \"b\"\r\n",
            b"AUTHENTICATE 12\r\n",
            b"DELETESCRIPT name\r\n",
        ] {
            assert!(
                matches!(command(bad), Err(CommandError::Arguments { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
