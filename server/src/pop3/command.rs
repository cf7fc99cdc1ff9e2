//! Sans-IO POP3 command parser (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH). One
//! line in (without CRLF), one typed command or error out. Keywords are case-insensitive.

/// A message number as the client wrote it; range checks belong to the maildrop.
pub type MessageNumber = u64;

#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    Capa,
    /// `USER <name>`: the rest of the line.
    User(Vec<u8>),
    /// `PASS <password>`: the rest of the line (RFC 1939 7: spaces belong to the password).
    Pass(Vec<u8>),
    /// `AUTH` alone lists the mechanisms (RFC 5034's optional form).
    AuthList,
    /// `AUTH <mechanism> [initial-response]`; the response is still base64 (`=` = empty).
    Auth {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Stls,
    Quit,
    Stat,
    List(Option<MessageNumber>),
    Uidl(Option<MessageNumber>),
    Retr(MessageNumber),
    Top {
        message: MessageNumber,
        lines: u64,
    },
    Dele(MessageNumber),
    Rset,
    Noop,
}

// Never print credentials (PASS, SASL initial responses).
impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Capa => f.write_str("Capa"),
            Command::User(name) => f
                .debug_tuple("User")
                .field(&String::from_utf8_lossy(name))
                .finish(),
            Command::Pass(_) => f.write_str("Pass(<redacted>)"),
            Command::AuthList => f.write_str("AuthList"),
            Command::Auth { mechanism, initial } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field("initial", &initial.as_ref().map(Vec::len))
                .finish(),
            Command::Stls => f.write_str("Stls"),
            Command::Quit => f.write_str("Quit"),
            Command::Stat => f.write_str("Stat"),
            Command::List(n) => f.debug_tuple("List").field(n).finish(),
            Command::Uidl(n) => f.debug_tuple("Uidl").field(n).finish(),
            Command::Retr(n) => f.debug_tuple("Retr").field(n).finish(),
            Command::Top { message, lines } => f
                .debug_struct("Top")
                .field("message", message)
                .field("lines", lines)
                .finish(),
            Command::Dele(n) => f.debug_tuple("Dele").field(n).finish(),
            Command::Rset => f.write_str("Rset"),
            Command::Noop => f.write_str("Noop"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not a command we know (APOP, LAST, binary garbage, an HTTP request line).
    #[error("unknown command {0:?}")]
    Unknown(String),
    /// A known command with bad arguments; the text says what was expected.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
}

/// Longest keyword echoed into logs (unknown ones may be binary garbage).
const MAX_LOGGED_KEYWORD: usize = 16;

/// Parses one command line (CRLF already removed).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    let upper = keyword.to_ascii_uppercase();
    let args = || -> Vec<&[u8]> {
        rest.map(|r| r.split(|&b| b == b' ').filter(|a| !a.is_empty()).collect())
            .unwrap_or_default()
    };
    let command = match upper.as_slice() {
        b"CAPA" => no_args(rest, Command::Capa)?,
        b"STLS" => no_args(rest, Command::Stls)?,
        b"QUIT" => no_args(rest, Command::Quit)?,
        b"STAT" => no_args(rest, Command::Stat)?,
        b"RSET" => no_args(rest, Command::Rset)?,
        b"NOOP" => no_args(rest, Command::Noop)?,
        b"USER" => Command::User(rest_of_line(rest, "user name expected")?),
        b"PASS" => Command::Pass(rest_of_line(rest, "password expected")?),
        b"AUTH" => match args().as_slice() {
            [] => Command::AuthList,
            [mechanism] => Command::Auth {
                mechanism: mechanism_name(mechanism)?,
                initial: None,
            },
            [mechanism, initial] => Command::Auth {
                mechanism: mechanism_name(mechanism)?,
                initial: Some(initial.to_vec()),
            },
            _ => return Err(CommandError::Syntax("AUTH mechanism [initial-response]")),
        },
        b"LIST" => Command::List(optional_number(&args())?),
        b"UIDL" => Command::Uidl(optional_number(&args())?),
        b"RETR" => Command::Retr(one_number(&args())?),
        b"DELE" => Command::Dele(one_number(&args())?),
        b"TOP" => match args().as_slice() {
            [message, lines] => Command::Top {
                message: number(message)?,
                lines: number(lines)?,
            },
            _ => return Err(CommandError::Syntax("TOP message-number lines")),
        },
        _ => {
            let shown = &keyword[..keyword.len().min(MAX_LOGGED_KEYWORD)];
            return Err(CommandError::Unknown(
                String::from_utf8_lossy(shown).into_owned(),
            ));
        }
    };
    Ok(command)
}

fn no_args(rest: Option<&[u8]>, command: Command) -> Result<Command, CommandError> {
    // Trailing spaces are harmless; real arguments are not.
    match rest {
        Some(r) if r.iter().any(|&b| b != b' ') => Err(CommandError::Syntax("no arguments")),
        _ => Ok(command),
    }
}

fn rest_of_line(rest: Option<&[u8]>, what: &'static str) -> Result<Vec<u8>, CommandError> {
    match rest {
        Some(r) if !r.is_empty() => Ok(r.to_vec()),
        _ => Err(CommandError::Syntax(what)),
    }
}

fn mechanism_name(word: &[u8]) -> Result<String, CommandError> {
    // RFC 4422 3.1: upper-case letters, digits, `-` and `_`, at most 20 characters.
    let ok = !word.is_empty()
        && word.len() <= 20
        && word
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if !ok {
        return Err(CommandError::Syntax("mechanism name expected"));
    }
    Ok(String::from_utf8_lossy(word).to_ascii_uppercase())
}

/// A decimal number; too many digits saturate (then no such message exists).
fn number(word: &[u8]) -> Result<u64, CommandError> {
    if word.is_empty() || !word.iter().all(u8::is_ascii_digit) {
        return Err(CommandError::Syntax("number expected"));
    }
    Ok(word.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn one_number(args: &[&[u8]]) -> Result<u64, CommandError> {
    match args {
        [n] => number(n),
        _ => Err(CommandError::Syntax("one message number expected")),
    }
}

fn optional_number(args: &[&[u8]]) -> Result<Option<u64>, CommandError> {
    match args {
        [] => Ok(None),
        [n] => number(n).map(Some),
        _ => Err(CommandError::Syntax("at most one message number expected")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn err(line: &[u8]) -> CommandError {
        match parse(line) {
            Ok(c) => panic!("{:?} parsed as {c:?}", String::from_utf8_lossy(line)),
            Err(e) => e,
        }
    }

    #[test]
    fn keywords_without_arguments_in_any_case() {
        for (line, want) in [
            ("CAPA", Command::Capa),
            ("capa", Command::Capa),
            ("Stls", Command::Stls),
            ("QUIT", Command::Quit),
            ("STAT", Command::Stat),
            ("RSET", Command::Rset),
            ("noop", Command::Noop),
            ("NOOP ", Command::Noop),
        ] {
            assert_eq!(ok(line), want, "{line}");
        }
        assert_eq!(err(b"STAT 1"), CommandError::Syntax("no arguments"));
    }

    #[test]
    fn user_and_pass_take_the_rest_of_the_line() {
        assert_eq!(ok("USER alice"), Command::User(b"alice".to_vec()));
        assert_eq!(
            ok("PASS secret with spaces "),
            Command::Pass(b"secret with spaces ".to_vec())
        );
        assert_eq!(err(b"USER"), CommandError::Syntax("user name expected"));
        assert_eq!(err(b"PASS"), CommandError::Syntax("password expected"));
        assert_eq!(err(b"PASS "), CommandError::Syntax("password expected"));
    }

    #[test]
    fn debug_never_shows_credentials() {
        let shown = format!("{:?}", ok("PASS hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        let shown = format!("{:?}", ok("AUTH PLAIN AGFsaWNlAHB3"));
        assert!(!shown.contains("AGFsaWNlAHB3"), "{shown}");
    }

    #[test]
    fn auth_forms() {
        assert_eq!(ok("AUTH"), Command::AuthList);
        assert_eq!(
            ok("auth oauthbearer"),
            Command::Auth {
                mechanism: "OAUTHBEARER".into(),
                initial: None
            }
        );
        assert_eq!(
            ok("AUTH PLAIN ="),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some(b"=".to_vec())
            }
        );
        assert_eq!(
            ok("AUTH XOAUTH2 dXNlcj0="),
            Command::Auth {
                mechanism: "XOAUTH2".into(),
                initial: Some(b"dXNlcj0=".to_vec())
            }
        );
        assert!(matches!(err(b"AUTH PLAIN a b"), CommandError::Syntax(_)));
        assert!(matches!(err(b"AUTH PL\xffAIN"), CommandError::Syntax(_)));
        assert!(matches!(
            err(b"AUTH AVERYLONGMECHANISMNAMEOVER20"),
            CommandError::Syntax(_)
        ));
    }

    #[test]
    fn message_numbers() {
        assert_eq!(ok("LIST"), Command::List(None));
        assert_eq!(ok("LIST 2"), Command::List(Some(2)));
        assert_eq!(ok("UIDL"), Command::Uidl(None));
        assert_eq!(ok("uidl 7"), Command::Uidl(Some(7)));
        assert_eq!(ok("RETR 1"), Command::Retr(1));
        assert_eq!(ok("DELE 3"), Command::Dele(3));
        assert_eq!(
            ok("TOP 1 0"),
            Command::Top {
                message: 1,
                lines: 0
            }
        );
        assert_eq!(
            ok("RETR 99999999999999999999999"),
            Command::Retr(u64::MAX),
            "saturates: no such message"
        );
        assert_eq!(ok("RETR 0"), Command::Retr(0));
        for bad in [
            &b"RETR"[..],
            b"RETR x",
            b"RETR -1",
            b"RETR 1 2",
            b"DELE",
            b"LIST 1 2",
            b"LIST a",
            b"TOP 1",
            b"TOP 1 x",
            b"TOP 1 2 3",
        ] {
            assert!(
                matches!(err(bad), CommandError::Syntax(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn unknown_commands() {
        assert_eq!(err(b"APOP a b"), CommandError::Unknown("APOP".into()));
        assert_eq!(err(b""), CommandError::Unknown(String::new()));
        assert_eq!(err(b"GET / HTTP/1.1"), CommandError::Unknown("GET".into()));
        let long = err(&[b'X'; 100]);
        assert_eq!(long, CommandError::Unknown("X".repeat(MAX_LOGGED_KEYWORD)));
    }
}
