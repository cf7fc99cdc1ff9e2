//! ManageSieve responses (RFC 5804 section 4): `OK`/`NO`/`BYE` with an optional response code and
//! text, capability lines, strings as quoted strings or literals. Every fixed text lives here, and
//! so do the mappings from SASL failures and script-store errors to the wire.

use crate::auth::sasl::SaslFailure;
use crate::store::ScriptError;

/// Longest string sent quoted; longer ones (and any with CR, LF or NUL) go as literals.
/// RFC 5804 limits quoted strings to 1024 octets.
const MAX_QUOTED: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bye,
}

/// Response codes (RFC 5804 section 1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    EncryptNeeded,
    QuotaMaxScripts,
    QuotaMaxSize,
    /// Base64 success data of the SASL mechanism.
    Sasl(String),
    TryLater,
    Active,
    NonExistent,
    AlreadyExists,
    /// The string given to NOOP.
    Tag(Vec<u8>),
}

/// One final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub code: Option<Code>,
    pub text: Option<String>,
}

/// Appends `bytes` as a quoted string when it can be one, else as a literal (`{n}` CRLF bytes).
pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    let quotable = bytes.len() <= MAX_QUOTED
        && std::str::from_utf8(bytes).is_ok()
        && !bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0));
    if quotable {
        out.push(b'"');
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
    }
}

/// A capability line: `"NAME"` or `"NAME" "value"`.
pub fn capability(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    string(out, name.as_bytes());
    if let Some(value) = value {
        out.push(b' ');
        string(out, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// A SASL challenge: its base64 as a string on a line of its own.
pub fn challenge(out: &mut Vec<u8>, base64: &str) {
    string(out, base64.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// One LISTSCRIPTS line.
pub fn script_entry(out: &mut Vec<u8>, name: &str, active: bool) {
    string(out, name.as_bytes());
    if active {
        out.extend_from_slice(b" ACTIVE");
    }
    out.extend_from_slice(b"\r\n");
}

/// GETSCRIPT's script: always a literal (RFC 5804 2.9), then CRLF.
pub fn script(out: &mut Vec<u8>, source: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", source.len()).as_bytes());
    out.extend_from_slice(source);
    out.extend_from_slice(b"\r\n");
}

impl Response {
    fn new(status: Status, code: Option<Code>, text: impl Into<String>) -> Self {
        Self {
            status,
            code,
            text: Some(text.into()),
        }
    }
    fn ok(text: &str) -> Self {
        Self::new(Status::Ok, None, text)
    }
    fn no(text: &str) -> Self {
        Self::new(Status::No, None, text)
    }
    fn bye(text: &str) -> Self {
        Self::new(Status::Bye, None, text)
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.status {
            Status::Ok => b"OK",
            Status::No => b"NO",
            Status::Bye => b"BYE",
        });
        if let Some(code) = &self.code {
            out.extend_from_slice(b" (");
            match code {
                Code::EncryptNeeded => out.extend_from_slice(b"ENCRYPT-NEEDED"),
                Code::QuotaMaxScripts => out.extend_from_slice(b"QUOTA/MAXSCRIPTS"),
                Code::QuotaMaxSize => out.extend_from_slice(b"QUOTA/MAXSIZE"),
                Code::Sasl(data) => {
                    out.extend_from_slice(b"SASL ");
                    string(out, data.as_bytes());
                }
                Code::TryLater => out.extend_from_slice(b"TRYLATER"),
                Code::Active => out.extend_from_slice(b"ACTIVE"),
                Code::NonExistent => out.extend_from_slice(b"NONEXISTENT"),
                Code::AlreadyExists => out.extend_from_slice(b"ALREADYEXISTS"),
                Code::Tag(tag) => {
                    out.extend_from_slice(b"TAG ");
                    string(out, tag);
                }
            }
            out.push(b')');
        }
        if let Some(text) = &self.text {
            out.push(b' ');
            string(out, text.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    // Session.
    pub fn greeting(hostname: &str) -> Self {
        Self::new(
            Status::Ok,
            None,
            format!("{hostname} mail-oidc ManageSieve ready."),
        )
    }
    pub fn capability_done() -> Self {
        Self::ok("Capability completed.")
    }
    pub fn noop(tag: Option<Vec<u8>>) -> Self {
        Self::new(Status::Ok, tag.map(Code::Tag), "Done")
    }
    pub fn logout() -> Self {
        Self::ok("Logout completed.")
    }
    pub fn begin_tls() -> Self {
        Self::ok("Begin TLS negotiation now.")
    }
    pub fn tls_done() -> Self {
        Self::ok("TLS negotiation successful.")
    }
    pub fn tls_active() -> Self {
        Self::no("TLS is already active.")
    }
    pub fn tls_unavailable() -> Self {
        Self::no("STARTTLS is not available.")
    }
    pub fn tls_after_login() -> Self {
        Self::no("STARTTLS is only allowed before authentication.")
    }
    pub fn unknown_command() -> Self {
        Self::no("Unknown command.")
    }
    pub fn syntax_error(what: &str) -> Self {
        Self::new(Status::No, None, format!("Syntax error: {what}."))
    }
    pub fn line_too_long() -> Self {
        Self::no("Line too long.")
    }
    pub fn literal_too_big() -> Self {
        Self::no("Literal too big.")
    }
    /// Before authentication, oversize input ends the connection.
    pub fn input_too_big_bye() -> Self {
        Self::bye("Command too long.")
    }
    pub fn too_many_errors() -> Self {
        Self::bye("Too many invalid commands.")
    }
    pub fn timeout() -> Self {
        Self::bye("Disconnected for inactivity.")
    }
    /// The server is shutting down (RFC 5804 1.3: TRYLATER).
    pub fn shutting_down() -> Self {
        Self::new(
            Status::Bye,
            Some(Code::TryLater),
            "Server shutting down, try again later.",
        )
    }
    /// The session was ended from outside (logout at the IdP, revocation, token expiry).
    pub fn ended(text: &str) -> Self {
        Self::bye(text)
    }
    pub fn need_auth() -> Self {
        Self::no("Authenticate first.")
    }

    // Authentication.
    pub fn logged_in(success_data: Option<String>) -> Self {
        Self::new(Status::Ok, success_data.map(Code::Sasl), "Logged in.")
    }
    pub fn already_authenticated() -> Self {
        Self::no("Already authenticated.")
    }
    pub fn not_authenticated() -> Self {
        Self::no("Not authenticated.")
    }
    pub fn unauthenticated() -> Self {
        Self::ok("Unauthenticated.")
    }
    pub fn too_many_auth_failures() -> Self {
        Self::bye("Too many invalid authentication attempts.")
    }

    /// The one mapping from a SASL failure to the wire (RFC 5804 codes, Dovecot's texts).
    pub fn sasl_failure(failure: &SaslFailure) -> Self {
        match failure {
            SaslFailure::InvalidCredentials { .. } => Self::no("Authentication failed."),
            SaslFailure::DelegationForbidden { .. } => {
                Self::no("Authorization failed: not allowed to act as that user.")
            }
            SaslFailure::TemporaryFailure(_) => Self::new(
                Status::No,
                Some(Code::TryLater),
                "Temporary authentication failure.",
            ),
            SaslFailure::Malformed(_) => Self::no("Malformed SASL message."),
            SaslFailure::InvalidBase64 => Self::no("Invalid base64 data."),
            SaslFailure::Aborted | SaslFailure::AbortedAfterRefusal { .. } => {
                Self::no("Authentication aborted.")
            }
            SaslFailure::MechanismUnavailable(_) => {
                Self::no("Unsupported authentication mechanism.")
            }
            SaslFailure::EncryptionRequired(_) => Self::new(
                Status::No,
                Some(Code::EncryptNeeded),
                "Plaintext authentication disallowed on non-secure connections.",
            ),
            SaslFailure::Throttled { .. } => Self::new(
                Status::No,
                Some(Code::TryLater),
                "Too many failed logins from this address or for this user; try again later.",
            ),
        }
    }

    // Scripts.
    pub fn put_done() -> Self {
        Self::ok("Putscript completed.")
    }
    pub fn script_valid() -> Self {
        Self::ok("Script is valid.")
    }
    pub fn list_done() -> Self {
        Self::ok("Listscripts completed.")
    }
    pub fn get_done() -> Self {
        Self::ok("Getscript completed.")
    }
    pub fn set_active_done(deactivated: bool) -> Self {
        Self::ok(if deactivated {
            "Script deactivated."
        } else {
            "Setactive completed."
        })
    }
    pub fn delete_done() -> Self {
        Self::ok("Deletescript completed.")
    }
    pub fn rename_done() -> Self {
        Self::ok("Renamescript completed.")
    }
    pub fn have_space() -> Self {
        Self::ok("Putscript would succeed.")
    }
    /// The checker's message as it is (`line N: ...`): RFC 5804 wants it human readable.
    pub fn script_refused(message: &str) -> Self {
        Self::no(message)
    }
    pub fn script_not_utf8() -> Self {
        Self::no("Script is not valid UTF-8.")
    }
    pub fn invalid_name() -> Self {
        Self::no("Invalid script name.")
    }

    /// The one mapping from a script-store error to the wire.
    pub fn script_error(error: &ScriptError) -> Self {
        match error {
            ScriptError::InvalidName(_) => Self::invalid_name(),
            ScriptError::NonExistent(_) => Self::new(
                Status::No,
                Some(Code::NonExistent),
                "There is no script by that name.",
            ),
            ScriptError::AlreadyExists(_) => Self::new(
                Status::No,
                Some(Code::AlreadyExists),
                "A script with that name already exists.",
            ),
            ScriptError::Active(_) => Self::new(
                Status::No,
                Some(Code::Active),
                "The active script cannot be deleted.",
            ),
            ScriptError::TooBig { max, .. } => Self::new(
                Status::No,
                Some(Code::QuotaMaxSize),
                format!("Script too big (at most {max} bytes)."),
            ),
            ScriptError::TooManyScripts { max } => Self::new(
                Status::No,
                Some(Code::QuotaMaxScripts),
                format!("Too many scripts (at most {max})."),
            ),
            ScriptError::Unavailable(_) => Self::new(
                Status::No,
                Some(Code::TryLater),
                "The script store is unavailable, try again later.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: Response) -> String {
        let mut out = Vec::new();
        r.encode_into(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_quoted_or_literal() {
        let enc = |b: &[u8]| {
            let mut out = Vec::new();
            string(&mut out, b);
            out
        };
        assert_eq!(enc(b"plain"), b"\"plain\"");
        assert_eq!(enc(b"a\"b\\c"), b"\"a\\\"b\\\\c\"");
        assert_eq!(enc(b""), b"\"\"");
        assert_eq!(enc(b"two\r\nlines"), b"{10}\r\ntwo\r\nlines");
        assert_eq!(enc(b"\xff"), b"{1}\r\n\xff");
        let long = vec![b'a'; MAX_QUOTED + 1];
        assert!(enc(&long).starts_with(b"{1025}\r\naaa"));
        assert_eq!(enc(&long[..MAX_QUOTED]).len(), MAX_QUOTED + 2);
    }

    #[test]
    fn responses_with_codes() {
        assert_eq!(wire(Response::logout()), "OK \"Logout completed.\"\r\n");
        assert_eq!(
            wire(Response::noop(Some(b"STARTTLS-RESYNC-CAPA".to_vec()))),
            "OK (TAG \"STARTTLS-RESYNC-CAPA\") \"Done\"\r\n"
        );
        assert_eq!(
            wire(Response::logged_in(Some("dj1vaw==".into()))),
            "OK (SASL \"dj1vaw==\") \"Logged in.\"\r\n"
        );
        assert_eq!(
            wire(Response::script_error(&ScriptError::TooBig {
                size: 9,
                max: 8
            })),
            "NO (QUOTA/MAXSIZE) \"Script too big (at most 8 bytes).\"\r\n"
        );
        assert_eq!(
            wire(Response::script_error(&ScriptError::TooManyScripts {
                max: 3
            })),
            "NO (QUOTA/MAXSCRIPTS) \"Too many scripts (at most 3).\"\r\n"
        );
        assert_eq!(
            wire(Response::script_error(&ScriptError::Active("a".into()))),
            "NO (ACTIVE) \"The active script cannot be deleted.\"\r\n"
        );
        assert_eq!(
            wire(Response::script_error(&ScriptError::NonExistent(
                "a".into()
            ))),
            "NO (NONEXISTENT) \"There is no script by that name.\"\r\n"
        );
        assert_eq!(
            wire(Response::script_error(&ScriptError::AlreadyExists(
                "a".into()
            ))),
            "NO (ALREADYEXISTS) \"A script with that name already exists.\"\r\n"
        );
        assert_eq!(
            wire(Response::script_refused("line 2: unknown command bad")),
            "NO \"line 2: unknown command bad\"\r\n"
        );
    }

    #[test]
    fn every_sasl_failure_has_its_reply() {
        let w = |f: SaslFailure| wire(Response::sasl_failure(&f));
        assert_eq!(
            w(SaslFailure::InvalidCredentials { reason: "x".into() }),
            "NO \"Authentication failed.\"\r\n"
        );
        assert_eq!(
            w(SaslFailure::DelegationForbidden {
                authcid: "a".into(),
                authzid: "b".into()
            }),
            "NO \"Authorization failed: not allowed to act as that user.\"\r\n"
        );
        assert_eq!(
            w(SaslFailure::TemporaryFailure("idp".into())),
            "NO (TRYLATER) \"Temporary authentication failure.\"\r\n"
        );
        assert_eq!(
            w(SaslFailure::EncryptionRequired("PLAIN".into())),
            "NO (ENCRYPT-NEEDED) \"Plaintext authentication disallowed on non-secure connections.\"\r\n"
        );
        assert_eq!(
            w(SaslFailure::Aborted),
            "NO \"Authentication aborted.\"\r\n"
        );
        assert_eq!(
            w(SaslFailure::AbortedAfterRefusal { reason: "x".into() }),
            "NO \"Authentication aborted.\"\r\n"
        );
        assert_eq!(
            w(SaslFailure::InvalidBase64),
            "NO \"Invalid base64 data.\"\r\n"
        );
        assert_eq!(
            w(SaslFailure::Malformed("x".into())),
            "NO \"Malformed SASL message.\"\r\n"
        );
        assert_eq!(
            w(SaslFailure::MechanismUnavailable("X".into())),
            "NO \"Unsupported authentication mechanism.\"\r\n"
        );
    }

    #[test]
    fn capability_and_list_lines() {
        let mut out = Vec::new();
        capability(&mut out, "SASL", Some(""));
        capability(&mut out, "STARTTLS", None);
        script_entry(&mut out, "vacation", true);
        script_entry(&mut out, "a \"q\"", false);
        script(&mut out, b"keep;");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"SASL\" \"\"\r\n\"STARTTLS\"\r\n\"vacation\" ACTIVE\r\n\"a \\\"q\\\"\"\r\n{5}\r\nkeep;\r\n"
        );
    }
}
