//! Sans-IO SMTP command parser (RFC 5321 section 4.1, with RFC 1870 SIZE, RFC 6152 BODY and
//! RFC 4954 AUTH). One line in (without CRLF), one typed command or error out.

use std::fmt;

/// `MAIL FROM` path: the null path `<>` or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    Null,
    Mailbox(String),
}

impl fmt::Display for ReversePath {
    /// The path as written in `Return-Path`: `<>` or `<local@domain>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// RFC 6152 `BODY=` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

/// Parameters of `MAIL FROM` that we understand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// RFC 1870 declared size.
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    /// RFC 4954 `AUTH=` (kept for logs only; we never trust it).
    pub auth: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: String,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// `AUTH <mechanism> [initial-response]`; the response is still base64 (`=` = empty).
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unrecognized command {0:?}")]
    Unrecognized(String),
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    #[error("unsupported parameter {0:?}")]
    UnsupportedParameter(String),
}

/// Longest verb we echo into logs for unknown commands (they may be binary garbage).
const MAX_LOGGED_VERB: usize = 16;

/// Parses one command line (CRLF already removed).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(CommandError::Syntax("command line is not UTF-8"));
    };
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(CommandError::Syntax("control characters in command line"));
    }
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, rest) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i + 1..].trim_start_matches([' ', '\t'])),
        None => (line, ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => domain_arg(rest).map(Command::Ehlo),
        "HELO" => domain_arg(rest).map(Command::Helo),
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_arg(rest, Command::Data),
        "RSET" => no_arg(rest, Command::Rset),
        "QUIT" => no_arg(rest, Command::Quit),
        "STARTTLS" => no_arg(rest, Command::StartTls),
        // RFC 5321 allows an argument to NOOP and HELP; it is ignored.
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" if !rest.is_empty() => Ok(Command::Vrfy),
        "EXPN" if !rest.is_empty() => Ok(Command::Expn),
        "VRFY" | "EXPN" => Err(CommandError::Syntax("argument required")),
        "AUTH" => parse_auth(rest),
        _ => Err(CommandError::Unrecognized(
            verb.chars().take(MAX_LOGGED_VERB).collect(),
        )),
    }
}

fn no_arg(rest: &str, command: Command) -> Result<Command, CommandError> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Syntax("no argument allowed"))
    }
}

/// EHLO/HELO argument: a domain or address literal. Anything after it is ignored, as many
/// clients send extra words.
fn domain_arg(rest: &str) -> Result<String, CommandError> {
    let name = rest.split([' ', '\t']).next().unwrap_or_default();
    if name.is_empty() {
        return Err(CommandError::Syntax("hostname required"));
    }
    if !name.is_ascii() {
        return Err(CommandError::Syntax("hostname must be ASCII"));
    }
    Ok(name.to_string())
}

/// Strips a case-insensitive `FROM:`/`TO:` keyword; tolerates spaces after the colon.
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(rest[keyword.len()..].trim_start_matches([' ', '\t']))
}

fn parse_mail(rest: &str) -> Result<Command, CommandError> {
    let rest =
        strip_keyword(rest, "FROM:").ok_or(CommandError::Syntax("expected MAIL FROM:<address>"))?;
    let (path, params) = split_path(rest)?;
    let from = match path {
        Path::Null => ReversePath::Null,
        Path::Mailbox(m) => ReversePath::Mailbox(m),
    };
    let mut parsed = MailParams::default();
    for param in params.split([' ', '\t']).filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v)) => {
                let size = v
                    .parse::<u64>()
                    .map_err(|_| CommandError::Syntax("SIZE must be a number"))?;
                parsed.size = Some(size);
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {
                parsed.body = Some(BodyType::SevenBit)
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                parsed.body = Some(BodyType::EightBitMime)
            }
            ("AUTH", Some(v)) => parsed.auth = Some(v.to_string()),
            _ => return Err(CommandError::UnsupportedParameter(key.to_string())),
        }
    }
    Ok(Command::Mail {
        from,
        params: parsed,
    })
}

fn parse_rcpt(rest: &str) -> Result<Command, CommandError> {
    let rest =
        strip_keyword(rest, "TO:").ok_or(CommandError::Syntax("expected RCPT TO:<address>"))?;
    let (path, params) = split_path(rest)?;
    let Path::Mailbox(to) = path else {
        return Err(CommandError::Syntax("empty recipient address"));
    };
    // We advertise no RCPT extension (no DSN), so any parameter is unsupported.
    if let Some(param) = params.split([' ', '\t']).find(|p| !p.is_empty()) {
        let key = param.split('=').next().unwrap_or_default();
        return Err(CommandError::UnsupportedParameter(key.to_string()));
    }
    Ok(Command::Rcpt { to })
}

fn parse_auth(rest: &str) -> Result<Command, CommandError> {
    let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
    let mechanism = words
        .next()
        .ok_or(CommandError::Syntax("mechanism required"))?;
    // RFC 4422 mechanism names: up to 20 of A-Z, 0-9, '-', '_'.
    let valid_name = mechanism.len() <= 20
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        return Err(CommandError::Syntax("invalid mechanism name"));
    }
    let initial = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(CommandError::Syntax("too many arguments"));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial,
    })
}

enum Path {
    Null,
    Mailbox(String),
}

/// Splits `<path> params` (or a bare address, which lenient servers accept) and validates the
/// mailbox. Returns the path and the remaining parameter text.
fn split_path(rest: &str) -> Result<(Path, &str), CommandError> {
    let (inner, params) = if let Some(after) = rest.strip_prefix('<') {
        let end = closing_bracket(after).ok_or(CommandError::Syntax("missing '>'"))?;
        (&after[..end], &after[end + 1..])
    } else {
        match rest.find([' ', '\t']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        }
    };
    if !params.is_empty() && !params.starts_with([' ', '\t']) {
        return Err(CommandError::Syntax("garbage after address"));
    }
    if inner.is_empty() {
        return Ok((Path::Null, params));
    }
    // RFC 5321 source routes (`@a,@b:user@domain`) must be accepted and ignored.
    let mailbox = if inner.starts_with('@') {
        inner
            .split_once(':')
            .map(|(_, m)| m)
            .ok_or(CommandError::Syntax("bad source route"))?
    } else {
        inner
    };
    validate_mailbox(mailbox)?;
    Ok((Path::Mailbox(mailbox.to_string()), params))
}

/// Index of the `>` closing a path, skipping quoted local parts.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn validate_mailbox(mailbox: &str) -> Result<(), CommandError> {
    if !mailbox.is_ascii() {
        // SMTPUTF8 is not advertised.
        return Err(CommandError::Syntax("non-ASCII address"));
    }
    let Some(at) = mailbox.rfind('@') else {
        // RFC 5321 4.5.1: `<Postmaster>` without a domain must be accepted.
        if mailbox.eq_ignore_ascii_case("postmaster") {
            return Ok(());
        }
        return Err(CommandError::Syntax("address needs a domain"));
    };
    let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    if local.is_empty() || domain.is_empty() {
        return Err(CommandError::Syntax("empty local part or domain"));
    }
    let local_ok = if local.starts_with('"') {
        local.len() >= 2 && local.ends_with('"')
    } else {
        local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b))
    };
    if !local_ok {
        return Err(CommandError::Syntax("invalid local part"));
    }
    let domain_ok = if let Some(literal) = domain.strip_prefix('[') {
        literal.ends_with(']') && !literal.contains(['[', ' '])
    } else {
        domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !domain_ok {
        return Err(CommandError::Syntax("invalid domain"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(from: &str) -> Command {
        Command::Mail {
            from: ReversePath::Mailbox(from.into()),
            params: MailParams::default(),
        }
    }

    #[test]
    fn simple_verbs_are_case_insensitive() {
        assert_eq!(parse(b"data"), Ok(Command::Data));
        assert_eq!(parse(b"RsEt"), Ok(Command::Rset));
        assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
        assert_eq!(parse(b"noop whatever"), Ok(Command::Noop));
        assert_eq!(parse(b"STARTTLS"), Ok(Command::StartTls));
        assert_eq!(parse(b"HELP"), Ok(Command::Help));
        assert_eq!(parse(b"VRFY bob"), Ok(Command::Vrfy));
    }

    #[test]
    fn ehlo_and_helo_need_a_name() {
        assert_eq!(
            parse(b"EHLO client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(
            parse(b"helo [127.0.0.1]"),
            Ok(Command::Helo("[127.0.0.1]".into()))
        );
        assert_eq!(
            parse(b"EHLO"),
            Err(CommandError::Syntax("hostname required"))
        );
        assert_eq!(
            parse(b"EHLO   "),
            Err(CommandError::Syntax("hostname required"))
        );
    }

    #[test]
    fn mail_from_variants() {
        assert_eq!(parse(b"MAIL FROM:<a@b.example>"), Ok(mail("a@b.example")));
        assert_eq!(parse(b"mail from: <a@b.example>"), Ok(mail("a@b.example")));
        assert_eq!(parse(b"MAIL FROM:a@b.example"), Ok(mail("a@b.example")));
        assert_eq!(
            parse(b"MAIL FROM:<@r1,@r2:a@b.example>"),
            Ok(mail("a@b.example"))
        );
        assert_eq!(
            parse(b"MAIL FROM:<>"),
            Ok(Command::Mail {
                from: ReversePath::Null,
                params: MailParams::default()
            })
        );
        assert_eq!(
            parse(b"MAIL FROM:<\"odd > name\"@b.example>"),
            Ok(mail("\"odd > name\"@b.example"))
        );
    }

    #[test]
    fn mail_parameters() {
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=1234 BODY=8BITMIME AUTH=<>"),
            Ok(Command::Mail {
                from: ReversePath::Mailbox("a@b.example".into()),
                params: MailParams {
                    size: Some(1234),
                    body: Some(BodyType::EightBitMime),
                    auth: Some("<>".into()),
                }
            })
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=big"),
            Err(CommandError::Syntax("SIZE must be a number"))
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SMTPUTF8"),
            Err(CommandError::UnsupportedParameter("SMTPUTF8".into()))
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> BODY=BINARYMIME"),
            Err(CommandError::UnsupportedParameter("BODY".into()))
        );
    }

    #[test]
    fn bad_paths() {
        for line in [
            &b"MAIL FROM"[..],
            b"MAIL TO:<a@b>",
            b"MAIL FROM:<a@b",
            b"MAIL FROM:<a@b>x",
            b"MAIL FROM:<a b@c>",
            b"MAIL FROM:<nodomain>",
            b"MAIL FROM:<@b>",
            b"MAIL FROM:<a@>",
            b"MAIL FROM:<a@b_c>",
            b"MAIL FROM:<\xc3\xa9@b>",
            b"RCPT TO:<>",
            b"RCPT TO:",
        ] {
            assert!(
                matches!(parse(line), Err(CommandError::Syntax(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(line),
                parse(line)
            );
        }
    }

    #[test]
    fn rcpt_to() {
        assert_eq!(
            parse(b"RCPT TO:<bob@example.com>"),
            Ok(Command::Rcpt {
                to: "bob@example.com".into()
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<Postmaster>"),
            Ok(Command::Rcpt {
                to: "Postmaster".into()
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<bob@example.com> NOTIFY=NEVER"),
            Err(CommandError::UnsupportedParameter("NOTIFY".into()))
        );
    }

    #[test]
    fn auth_command() {
        assert_eq!(
            parse(b"AUTH plain AGJvYgBzZWNyZXQ="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGJvYgBzZWNyZXQ=".into())
            })
        );
        assert_eq!(
            parse(b"AUTH LOGIN"),
            Ok(Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            })
        );
        assert!(matches!(parse(b"AUTH"), Err(CommandError::Syntax(_))));
        assert!(matches!(
            parse(b"AUTH PLAIN a b"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(parse(b"AUTH PL@IN"), Err(CommandError::Syntax(_))));
    }

    #[test]
    fn garbage_never_panics() {
        assert_eq!(
            parse(b"GET / HTTP/1.1"),
            Err(CommandError::Unrecognized("GET".into()))
        );
        assert!(matches!(parse(b"\xff\xfe"), Err(CommandError::Syntax(_))));
        assert!(matches!(
            parse(b"MAIL\x00FROM"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(parse(b""), Err(CommandError::Unrecognized(_))));
        assert!(matches!(parse(b"DATA now"), Err(CommandError::Syntax(_))));
        // Multi-byte UTF-8 around every split point.
        for line in [
            "MAIL FROM:é",
            "RCPT TO:<é",
            "É",
            "AUTH é",
            "EHLO é",
            "MAIL é",
        ] {
            assert!(parse(line.as_bytes()).is_err(), "{line}");
        }
    }
}
