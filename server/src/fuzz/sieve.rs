//! The Sieve compiler (lexer, parser, validation) on arbitrary scripts, and every script that
//! compiles run on a sample message within the interpreter's work budget.

#[cfg(test)]
use super::engine::Target;
use crate::sieve::{Envelope, Script};

#[cfg(test)]
const WORDS: &[&[u8]] = &[
    b"require [\"fileinto\", \"imap4flags\", \"envelope\", \"variables\", \"reject\"];\n",
    b"if ",
    b"elsif ",
    b"else ",
    b"{",
    b"}",
    b";",
    b"allof(",
    b"anyof(",
    b"not ",
    b"header :contains \"subject\" \"hi\"",
    b"address :is :domain \"from\" \"example.com\"",
    b"envelope :all \"to\" \"x\"",
    b"exists \"x-spam\"",
    b"size :over 10K",
    b"true",
    b"false",
    b"fileinto \"Junk\";",
    b"keep;",
    b"discard;",
    b"stop;",
    b"redirect \"a@b\";",
    b"addflag \"\\\\Seen\";",
    b":matches \"*a?b*\"",
    b":regex \"(a+)+$\"",
    b":comparator \"i;ascii-numeric\"",
    b":value \"gt\"",
    b":count \"eq\"",
    b"set \"v\" \"${v}${v}\";",
    b"\"${1}\"",
    b"text:\n",
    b"\n.\n",
    b"#",
    b"/*",
    b"*/",
    b"\"\\\"",
    b"99999999999999999999G",
    b"[",
    b"]",
    b",",
];

const MESSAGE: &[u8] = b"From: Bob <bob@example.com>\r\nTo: alice@example.com\r\n\
    Subject: hi there\r\nX-Spam: yes\r\n\r\nbody\r\n";

#[test]
fn fuzz_sieve_compile() {
    let mut compiled = 0;
    Target::new("sieve_script")
        .dictionary(WORDS)
        .max_len(16 * 1024)
        .run(|input| compiled += usize::from(compile(input)));
    // Mutations keep enough scripts valid to exercise the interpreter too.
    assert!(compiled > 0, "no script compiled");
}

/// One script compiled and, when valid, run on a message; returns whether it compiled.
pub(super) fn compile(input: &[u8]) -> bool {
    let source = String::from_utf8_lossy(input);
    let script = match Script::compile(&source) {
        Ok(script) => script,
        Err(e) => {
            let lines = source.split('\n').count();
            assert!(
                e.line >= 1 && e.line <= lines + 1,
                "error on line {} of {lines}",
                e.line
            );
            return false;
        }
    };
    let envelope = Envelope {
        from: "bob@example.com",
        to: "alice@example.com",
    };
    // A run may hit a limit (then the caller keeps the message); never a panic.
    if let Ok(deliveries) = script.evaluate(MESSAGE, &envelope) {
        for d in deliveries {
            assert!(!d.mailbox.is_empty(), "delivery to an empty mailbox name");
        }
    }
    true
}
