//! End-to-end tests through the public API: compile errors and their lines, every test, match
//! type and comparator, the action rules, RFC 5228's examples and hostile input.

use super::*;

const ENVELOPE: Envelope<'static> = Envelope {
    from: "sender@example.org",
    to: "me@example.com",
};

fn compile(source: &str) -> Script {
    match Script::compile(source) {
        Ok(script) => script,
        Err(e) => panic!("compile failed: {e}\n{source}"),
    }
}

fn compile_error(source: &str) -> CompileError {
    match Script::compile(source) {
        Ok(script) => panic!("expected a compile error, got {script:?}"),
        Err(e) => e,
    }
}

fn run_with(source: &str, message: &[u8], envelope: &Envelope<'_>) -> Vec<Delivery> {
    match compile(source).evaluate(message, envelope) {
        Ok(deliveries) => deliveries,
        Err(e) => panic!("evaluate failed: {e}"),
    }
}

fn run(source: &str, message: &[u8]) -> Vec<Delivery> {
    run_with(source, message, &ENVELOPE)
}

/// Mailbox names only, for tests that don't look at flags.
fn mailboxes(source: &str, message: &[u8]) -> Vec<String> {
    run(source, message)
        .into_iter()
        .map(|d| d.mailbox)
        .collect()
}

fn delivery(mailbox: &str, flags: &[&str]) -> Delivery {
    Delivery {
        mailbox: mailbox.to_owned(),
        flags: flags.iter().map(|f| (*f).to_owned()).collect(),
    }
}

/// Whether `test` (a Sieve test expression) is true for `message`.
fn holds(requires: &str, test: &str, message: &[u8]) -> bool {
    holds_with(requires, test, message, &ENVELOPE)
}

fn holds_with(requires: &str, test: &str, message: &[u8], envelope: &Envelope<'_>) -> bool {
    let source = format!("require [\"fileinto\"{requires}];\nif {test} {{ fileinto \"yes\"; }}");
    match run_with(&source, message, envelope).as_slice() {
        [d] if d.mailbox == "yes" => true,
        [d] if d.mailbox == "INBOX" => false,
        other => panic!("unexpected deliveries {other:?}"),
    }
}

const SIMPLE: &[u8] = b"From: \"Alice Example\" <Alice@Example.COM>\r\n\
To: Bob <bob@example.org>, carol@example.net\r\n\
Cc: undisclosed-recipients:;\r\n\
Bcc: Team: dave@team.test, \"Eve, E.\" <eve@team.test>;\r\n\
Subject: Make MONEY fast\r\n\
X-Folded: first part\r\n\
\tsecond part\r\n\
X-Encoded: =?UTF-8?B?UmVwb3J0IGbDvHIgZGllIFdvY2hl?=\r\n\
X-Star: *urgent*\r\n\
X-Empty:\r\n\
\r\n\
Hello Bob,\r\nthis is the body.\r\n";

const MULTIPART: &[u8] = b"From: alice@example.com\r\n\
To: bob@example.org\r\n\
Subject: parts\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
This is the prologue.\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
VGhlIHNlY3JldCB3b3JkIGlzIFplYnJhLg0K\r\n\
--inner\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<html><body><p>Caf=C3=A9 &amp; <b>Giraffe</b></p></body></html>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
YmluYXJ5IFBheWxvYWQ=\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: inner message\r\n\
From: nested@example.net\r\n\
\r\n\
Nested body mentions Okapi.\r\n\
--outer--\r\n\
Epilogue here.\r\n";

// ---- compile errors -------------------------------------------------------------------

#[test]
fn error_display_names_the_line() {
    let e = compile_error("keep;\n\nfoo;");
    assert_eq!(e.to_string(), "line 3: unknown command foo");
}

#[test]
fn unterminated_string_reports_where_it_starts() {
    let e = compile_error("require \"fileinto\";\nif true {\n  fileinto \"Lists;\n}\n");
    assert_eq!((e.line, e.message.as_str()), (3, "unterminated string"));
}

#[test]
fn missing_semicolon() {
    let e = compile_error("require \"fileinto\";\nif true {\n  fileinto \"a\"\n  stop;\n}");
    assert_eq!(
        (e.line, e.message.as_str()),
        (3, "missing ';' after fileinto")
    );
}

#[test]
fn unknown_command_and_test() {
    let e = compile_error("keep;\nvacation \"away\";");
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "unknown command vacation")
    );
    let e = compile_error("if true {}\nelsif spamtest 5 { keep; }");
    assert_eq!((e.line, e.message.as_str()), (2, "unknown test spamtest"));
}

#[test]
fn extensions_must_be_required() {
    let cases = [
        (
            "\nfileinto \"x\";",
            2,
            "fileinto needs require \"fileinto\"",
        ),
        (
            "require \"fileinto\";\nfileinto :copy \"x\";",
            2,
            ":copy needs require \"copy\"",
        ),
        (
            "if envelope \"from\" \"a\" {}",
            1,
            "the envelope test needs require \"envelope\"",
        ),
        (
            "\n\nif body :contains \"a\" {}",
            3,
            "the body test needs require \"body\"",
        ),
        (
            "addflag \"\\\\Seen\";",
            1,
            "addflag needs require \"imap4flags\"",
        ),
        (
            "keep :flags \"\\\\Seen\";",
            1,
            ":flags needs require \"imap4flags\"",
        ),
        (
            "if hasflag \"x\" {}",
            1,
            "hasflag needs require \"imap4flags\"",
        ),
    ];
    for (source, line, message) in cases {
        let e = compile_error(source);
        assert_eq!((e.line, e.message.as_str()), (line, message), "{source}");
    }
}

#[test]
fn require_names_only_supported_extensions() {
    let e = compile_error("require [\"fileinto\", \"vacation\"];");
    assert_eq!(
        (e.line, e.message.as_str()),
        (1, "unsupported extension vacation")
    );
    let e = compile_error("# relational\nrequire \"relational\";");
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "unsupported extension relational")
    );
    assert_eq!(
        compile_error("require \"variables\";").message,
        "unsupported extension variables"
    );
    compile("require [\"comparator-i;octet\", \"comparator-i;ascii-casemap\", \"FileInto\"];");
    compile("require \"fileinto\";\nrequire [\"copy\", \"imap4flags\", \"body\", \"envelope\"];");
}

#[test]
fn require_only_at_the_start() {
    let e = compile_error("keep;\nrequire \"fileinto\";");
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "require is only allowed at the start of the script")
    );
    let e = compile_error("if true {\n  require \"fileinto\";\n}");
    assert_eq!(e.line, 2);
    assert_eq!(
        compile_error("require \"fileinto\" { }").message,
        "require takes no block"
    );
}

#[test]
fn elsif_and_else_need_an_if() {
    let e = compile_error("keep;\nelsif true { keep; }");
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "elsif without a preceding if")
    );
    let e = compile_error("else { keep; }");
    assert_eq!(
        (e.line, e.message.as_str()),
        (1, "else without a preceding if")
    );
    let e = compile_error("if true {} else {}\nelse {}");
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "else without a preceding if")
    );
    let e = compile_error("if true {} keep; elsif false {}");
    assert_eq!(e.message, "elsif without a preceding if");
    assert_eq!(compile_error("if true;").message, "if needs a block");
    assert_eq!(
        compile_error("if true {} else (true) {}").message,
        "else takes no test"
    );
}

#[test]
fn wrong_argument_types_name_the_argument_line() {
    let e = compile_error("require \"fileinto\";\nfileinto\n  [\"a\", \"b\"];");
    assert_eq!(
        (e.line, e.message.as_str()),
        (
            3,
            "fileinto: expected a string (the mailbox), found a string list"
        )
    );
    let e = compile_error("if size :over \"10\" {}");
    assert_eq!(
        e.message,
        "size: expected a number (the size limit), found a string"
    );
    let e = compile_error("if header :is 5 \"x\" {}");
    assert_eq!(
        e.message,
        "header: expected a string list (the header names), found number 5"
    );
    let e = compile_error("if header \"a\" {}");
    assert_eq!(e.message, "header is missing the key list");
    let e = compile_error("if exists \"a\" \"b\" {}");
    assert_eq!(e.message, "exists has too many arguments");
    let e = compile_error("if header \"a\" \"b\" :is {}");
    assert_eq!(
        e.message,
        "header: unexpected :is (tags go before the other arguments)"
    );
    assert_eq!(
        compile_error("stop 1;").message,
        "stop has too many arguments"
    );
    assert_eq!(
        compile_error("if size 10 {}").message,
        "size needs :over or :under"
    );
    assert_eq!(
        compile_error("if allof {}").message,
        "allof needs a test list in parentheses"
    );
    assert_eq!(
        compile_error("if not (true) {}").message,
        "not needs exactly one test"
    );
    assert_eq!(
        compile_error("if (true) {}").message,
        "if needs exactly one test (use allof/anyof to combine)"
    );
    assert_eq!(compile_error("keep (true);").message, "keep takes no test");
    assert_eq!(
        compile_error("if true (false) {}").message,
        "true takes no nested test"
    );
}

#[test]
fn tags_are_checked_per_test() {
    assert_eq!(
        compile_error("if header :domain \"to\" \"x\" {}").message,
        "header does not take :domain"
    );
    assert_eq!(
        compile_error("if exists :is \"to\" {}").message,
        "exists does not take :is"
    );
    assert_eq!(
        compile_error("if header :is :contains \"a\" \"b\" {}").message,
        "match type given twice"
    );
    assert_eq!(
        compile_error("if address :all :localpart \"to\" \"b\" {}").message,
        "address part given twice"
    );
    assert_eq!(
        compile_error("\nif header :count \"gt\" \"a\" \"1\" {}").to_string(),
        "line 2: :count needs the \"relational\" extension, which is not supported"
    );
    assert_eq!(
        compile_error("keep :copy;").message,
        "keep does not take :copy"
    );
    assert_eq!(
        compile_error("require [\"copy\", \"fileinto\"];\nfileinto :copy :copy \"x\";").to_string(),
        "line 2: :copy given twice"
    );
    assert_eq!(
        compile_error("stop :now;").message,
        "stop does not take :now"
    );
    assert_eq!(
        compile_error("if true :is {}").message,
        "true does not take :is"
    );
    assert_eq!(
        compile_error("require [\"body\"]; if body :raw :text \"x\" {}").message,
        "body transform given twice"
    );
}

#[test]
fn comparators_are_checked() {
    let e = compile_error("if header :comparator \"i;unicode-casemap\" \"a\" \"b\" {}");
    assert_eq!(e.message, "unknown comparator \"i;unicode-casemap\"");
    let e = compile_error("if header :comparator [\"i;octet\"] \"a\" \"b\" {}");
    assert_eq!(
        e.message,
        "header: expected a string (the comparator name), found a string list"
    );
    compile("if header :comparator \"i;octet\" :matches \"a\" \"b\" {}");
    compile("if address :comparator \"i;ascii-casemap\" :domain :is \"to\" \"b\" {}");
}

#[test]
fn redirect_is_validated_then_refused_on_its_line() {
    let e = compile_error("keep;\nif true {\n  redirect \"a@example.com\";\n}");
    assert_eq!(
        (e.line, e.message.as_str()),
        (3, "redirect is not supported by this server")
    );
    let e = compile_error("require \"copy\";\nredirect :copy \"a@example.com\";");
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "redirect is not supported by this server")
    );
    // Its own mistakes come first.
    assert_eq!(
        compile_error("redirect :copy \"a@b\";").message,
        ":copy needs require \"copy\""
    );
    assert_eq!(
        compile_error("redirect;").message,
        "redirect is missing the address"
    );
    assert_eq!(
        compile_error("redirect :flags \"x\" \"a@b\";").message,
        "redirect does not take :flags"
    );
}

#[test]
fn imap4flags_variable_forms_are_refused() {
    let e = compile_error("require \"imap4flags\";\nsetflag \"var\" \"\\\\Seen\";");
    assert_eq!(e.line, 2);
    assert_eq!(
        e.message,
        "setflag with a variable name needs the \"variables\" extension, which is not supported"
    );
    let e = compile_error("require \"imap4flags\";\nif hasflag \"var\" \"x\" {}");
    assert!(e.message.contains("\"variables\""), "{e}");
}

#[test]
fn address_and_envelope_arguments_are_checked() {
    let e = compile_error("if address \"Subject\" \"x\" {}");
    assert_eq!(
        e.message,
        "address test on header Subject, which holds no addresses"
    );
    let e = compile_error("require \"envelope\";\nif envelope \"auth\" \"x\" {}");
    assert_eq!(
        (e.line, e.message.as_str()),
        (
            2,
            "unsupported envelope part \"auth\" (only \"from\" and \"to\")"
        )
    );
    let e = compile_error("require \"fileinto\";\nfileinto \"\";");
    assert_eq!(e.message, "fileinto needs a mailbox name");
}

#[test]
fn nesting_beyond_the_limit_is_a_compile_error() {
    let depth = MAX_NESTING_DEPTH + 1;
    let source = format!("{}keep;{}", "if true {\n".repeat(depth), "}".repeat(depth));
    let e = compile_error(&source);
    assert!(e.message.contains("nesting deeper than"), "{e}");
    assert!(e.line <= depth);
    // Deep enough to overflow the stack of a naive recursive parser.
    let source = format!("if {}true {{}}", "not ".repeat(100_000));
    assert!(
        compile_error(&source)
            .message
            .contains("nesting deeper than")
    );
    let source = format!(
        "if {}true{} {{}}",
        "anyof(".repeat(100_000),
        ")".repeat(100_000)
    );
    assert!(
        compile_error(&source)
            .message
            .contains("nesting deeper than")
    );
    // Just inside the limit compiles and runs.
    let ok = format!(
        "{}keep;{}",
        "if true {".repeat(MAX_NESTING_DEPTH - 1),
        "}".repeat(MAX_NESTING_DEPTH - 1)
    );
    assert_eq!(mailboxes(&ok, SIMPLE), vec!["INBOX"]);
}

#[test]
fn oversized_scripts_are_refused() {
    let source = format!("# {}\nkeep;", "x".repeat(MAX_SCRIPT_SIZE));
    assert!(
        compile_error(&source)
            .message
            .starts_with("script is larger than")
    );
}

#[test]
fn script_is_shareable() {
    fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug>() {}
    assert_traits::<Script>();
}

// ---- actions ----------------------------------------------------------------------------

#[test]
fn empty_script_keeps() {
    assert_eq!(run("", SIMPLE), vec![delivery("INBOX", &[])]);
    assert_eq!(
        run("# only a comment\n/* and another */", SIMPLE),
        vec![delivery("INBOX", &[])]
    );
    assert_eq!(
        run("require \"fileinto\";", SIMPLE),
        vec![delivery("INBOX", &[])]
    );
}

#[test]
fn discard_cancels_the_implicit_keep_only() {
    assert_eq!(run("discard;", SIMPLE), vec![]);
    assert_eq!(mailboxes("discard; keep;", SIMPLE), vec!["INBOX"]);
    assert_eq!(mailboxes("keep; discard;", SIMPLE), vec!["INBOX"]);
    assert_eq!(
        mailboxes("require \"fileinto\"; discard; fileinto \"a\";", SIMPLE),
        vec!["a"]
    );
}

#[test]
fn stop_ends_the_script_but_not_the_implicit_keep() {
    assert_eq!(mailboxes("stop; discard;", SIMPLE), vec!["INBOX"]);
    assert_eq!(
        mailboxes(
            "require \"fileinto\"; fileinto \"a\"; stop; fileinto \"b\";",
            SIMPLE
        ),
        vec!["a"]
    );
    assert_eq!(
        mailboxes("if true { if true { stop; } discard; } discard;", SIMPLE),
        vec!["INBOX"]
    );
    assert_eq!(mailboxes("discard; stop;", SIMPLE), Vec::<String>::new());
}

#[test]
fn fileinto_cancels_implicit_keep_and_deduplicates() {
    let source =
        "require \"fileinto\";\nfileinto \"Work\";\nfileinto \"Work\";\nfileinto \"Other\";";
    assert_eq!(mailboxes(source, SIMPLE), vec!["Work", "Other"]);
    // INBOX is one mailbox whatever its case, and keep is a delivery to it.
    let source = "require \"fileinto\"; fileinto \"inbox\"; keep; fileinto \"INBOX\";";
    assert_eq!(mailboxes(source, SIMPLE), vec!["INBOX"]);
    // Other names are case-sensitive.
    let source = "require \"fileinto\"; fileinto \"work\"; fileinto \"Work\";";
    assert_eq!(mailboxes(source, SIMPLE), vec!["work", "Work"]);
}

#[test]
fn fileinto_copy_keeps_the_implicit_keep() {
    let source = "require [\"fileinto\", \"copy\"];\nfileinto :copy \"Archive\";";
    assert_eq!(mailboxes(source, SIMPLE), vec!["Archive", "INBOX"]);
    let source = "require [\"fileinto\", \"copy\"];\nfileinto :copy \"Archive\"; discard;";
    assert_eq!(mailboxes(source, SIMPLE), vec!["Archive"]);
    let source = "require [\"fileinto\", \"copy\"];\nfileinto :copy \"A\"; fileinto \"B\";";
    assert_eq!(mailboxes(source, SIMPLE), vec!["A", "B"]);
}

#[test]
fn if_elsif_else_pick_one_branch() {
    let source = "require \"fileinto\";
if header :is \"subject\" \"nope\" { fileinto \"one\"; }
elsif header :contains \"subject\" \"money\" { fileinto \"two\"; }
elsif true { fileinto \"three\"; }
else { fileinto \"four\"; }";
    assert_eq!(mailboxes(source, SIMPLE), vec!["two"]);
    let source = "require \"fileinto\"; if false { fileinto \"a\"; } elsif false { fileinto \"b\"; } else { fileinto \"c\"; }";
    assert_eq!(mailboxes(source, SIMPLE), vec!["c"]);
    let source =
        "require \"fileinto\"; if false { fileinto \"a\"; } elsif false { fileinto \"b\"; }";
    assert_eq!(mailboxes(source, SIMPLE), vec!["INBOX"]);
}

#[test]
fn too_many_actions_is_a_runtime_error() {
    let ok: String = (0..MAX_ACTIONS)
        .map(|i| format!("fileinto \"f{i}\";\n"))
        .collect();
    let script = compile(&format!("require \"fileinto\";\n{ok}"));
    assert_eq!(
        script.evaluate(SIMPLE, &ENVELOPE).map(|d| d.len()),
        Ok(MAX_ACTIONS)
    );
    let script = compile(&format!("require \"fileinto\";\n{ok}keep;"));
    let result = script.evaluate(SIMPLE, &ENVELOPE);
    assert!(
        matches!(result, Err(RuntimeError(ref m)) if m.contains("more than 64 actions")),
        "{result:?}"
    );
}

// ---- imap4flags ---------------------------------------------------------------------------

#[test]
fn flags_follow_the_internal_variable() {
    let source = r#"require ["imap4flags", "fileinto"];
addflag "\\Seen";
fileinto "A";
addflag ["$Label1", "\\flagged"];
fileinto :flags "\\Answered" "B";
removeflag "\\SEEN";
keep;
"#;
    assert_eq!(
        run(source, SIMPLE),
        vec![
            delivery("A", &["\\Seen"]),
            delivery("B", &["\\Answered"]),
            delivery("INBOX", &["$Label1", "\\Flagged"]),
        ]
    );
}

#[test]
fn implicit_keep_uses_the_final_flags() {
    let source = "require \"imap4flags\";\naddflag \"\\\\Seen junk\";\nsetflag \"$b $a\";\naddflag \"\\\\seen\";";
    assert_eq!(
        run(source, SIMPLE),
        vec![delivery("INBOX", &["$a", "$b", "\\Seen"])]
    );
    // Each run starts with no flags.
    let script = compile("require \"imap4flags\";\nif hasflag \"x\" { discard; }\naddflag \"x\";");
    assert_eq!(
        script.evaluate(SIMPLE, &ENVELOPE),
        Ok(vec![delivery("INBOX", &["x"])])
    );
    assert_eq!(
        script.evaluate(SIMPLE, &ENVELOPE),
        Ok(vec![delivery("INBOX", &["x"])])
    );
}

#[test]
fn flags_argument_and_invalid_flags() {
    let source = "require \"imap4flags\";\naddflag \"kept\";\nkeep :flags [\"\\\\Draft\", \"\\\\Recent\", \"bad(\"];";
    assert_eq!(run(source, SIMPLE), vec![delivery("INBOX", &["\\Draft"])]);
    let source = "require \"imap4flags\";\naddflag \"x\";\nkeep :flags \"\";";
    assert_eq!(run(source, SIMPLE), vec![delivery("INBOX", &[])]);
}

#[test]
fn duplicate_fileinto_merges_flags() {
    let source = "require [\"imap4flags\", \"fileinto\"];\nfileinto :flags \"b \\\\Seen\" \"X\";\nfileinto :flags [\"A\", \"\\\\SEEN\"] \"X\";";
    assert_eq!(
        run(source, SIMPLE),
        vec![delivery("X", &["A", "\\Seen", "b"])]
    );
}

#[test]
fn hasflag_matches_the_internal_flags() {
    let prefix = "require [\"imap4flags\", \"fileinto\"];\naddflag \"$Important \\\\Seen\";\n";
    let cases = [
        ("hasflag \"$important\"", true),
        ("hasflag :is \"\\\\seen\"", true),
        ("hasflag :comparator \"i;octet\" \"$important\"", false),
        ("hasflag :contains \"port\"", true),
        ("hasflag :matches \"$imp*\"", true),
        ("hasflag :matches \"imp*\"", false),
        ("hasflag [\"nope\", \"\\\\Seen\"]", true),
        ("hasflag \"nope \\\\Seen\"", true),
        ("hasflag \"\\\\Flagged\"", false),
    ];
    for (test, expected) in cases {
        let source = format!("{prefix}if {test} {{ fileinto \"yes\"; }}");
        let got = mailboxes(&source, SIMPLE).contains(&"yes".to_owned());
        assert_eq!(got, expected, "{test}");
    }
    let source = "require [\"imap4flags\"];\nif hasflag :contains \"\" { discard; }";
    assert_eq!(mailboxes(source, SIMPLE), vec!["INBOX"]);
}

// ---- tests: header ------------------------------------------------------------------------

#[test]
fn header_match_types_and_comparators() {
    let cases = [
        ("header :is \"Subject\" \"Make MONEY fast\"", true),
        ("header :is \"subject\" \"make money fast\"", true),
        (
            "header :is :comparator \"i;octet\" \"subject\" \"make money fast\"",
            false,
        ),
        (
            "header :is :comparator \"i;octet\" \"subject\" \"Make MONEY fast\"",
            true,
        ),
        ("header :is \"subject\" \"Make MONEY\"", false),
        ("header :contains \"subject\" \"money\"", true),
        (
            "header :contains :comparator \"i;octet\" \"subject\" \"money\"",
            false,
        ),
        ("header :contains \"subject\" \"\"", true),
        ("header :contains \"x-absent\" \"\"", false),
        ("header :matches \"subject\" \"make*fast\"", true),
        ("header :matches \"subject\" \"make*\"", true),
        ("header :matches \"subject\" \"money*\"", false),
        ("header :matches \"subject\" \"Make MONEY fas?\"", true),
        ("header :matches \"subject\" \"Make MONEY fa?\"", false),
        (
            "header :matches :comparator \"i;octet\" \"subject\" \"make*\"",
            false,
        ),
        ("header :matches \"x-star\" \"\\\\*urgent\\\\*\"", true),
        ("header :matches \"subject\" \"\\\\*money*\"", false),
        ("header :matches \"x-star\" \"?urgent?\"", true),
        (
            "header [\"x-absent\", \"subject\"] [\"nope\", \"Make MONEY fast\"]",
            true,
        ),
        ("header :is \"x-empty\" \"\"", true),
        ("header :is \"x-folded\" \"first part second part\"", true),
        (
            "header :is \"x-encoded\" \"Report f\u{fc}r die Woche\"",
            true,
        ),
        ("header :contains \"x-encoded\" \"UTF-8\"", false),
    ];
    for (test, expected) in cases {
        assert_eq!(holds("", test, SIMPLE), expected, "{test}");
    }
}

#[test]
fn multiline_strings_as_keys() {
    let source = "require \"fileinto\";\nif header :is \"subject\" text:\nMake MONEY fast\n.\n{ fileinto \"yes\"; }";
    // A text: string keeps its line break, so it can't equal a one-line header value.
    assert_eq!(mailboxes(source, SIMPLE), vec!["INBOX"]);
    let source = "require \"fileinto\";\nif header :matches \"subject\" text:\n*MONEY*\n.\n{ fileinto \"yes\"; }";
    assert_eq!(mailboxes(source, SIMPLE), vec!["INBOX"]);
    let source = "require \"body\"; require \"fileinto\";\nif body :raw :contains text:\n..Hello Bob,\n.\n{ fileinto \"yes\"; }";
    assert_eq!(
        mailboxes(source, b"Subject: x\r\n\r\n.Hello Bob,\n"),
        vec!["yes"]
    );
}

#[test]
fn exists_needs_every_header() {
    assert!(holds("", "exists \"from\"", SIMPLE));
    assert!(holds(
        "",
        "exists [\"From\", \"x-empty\", \"SUBJECT\"]",
        SIMPLE
    ));
    assert!(!holds("", "exists [\"From\", \"x-absent\"]", SIMPLE));
    assert!(!holds("", "not exists \"x-empty\"", SIMPLE));
}

#[test]
fn size_with_quantifiers() {
    let big = [SIMPLE, "x".repeat(2048).as_bytes()].concat();
    assert!(holds("", "size :over 1K", &big));
    assert!(!holds("", "size :under 1k", &big));
    assert!(holds("", "size :under 1M", &big));
    assert!(!holds("", "size :over 1G", &big));
    let exact = SIMPLE.len();
    assert!(!holds("", &format!("size :over {exact}"), SIMPLE));
    assert!(!holds("", &format!("size :under {exact}"), SIMPLE));
    assert!(holds("", &format!("size :over {}", exact - 1), SIMPLE));
    assert!(holds("", &format!("size :under {}", exact + 1), SIMPLE));
}

#[test]
fn boolean_tests() {
    assert!(holds("", "true", SIMPLE));
    assert!(!holds("", "false", SIMPLE));
    assert!(holds("", "not false", SIMPLE));
    assert!(holds("", "allof (true, not false, exists \"to\")", SIMPLE));
    assert!(!holds("", "allof (true, false)", SIMPLE));
    assert!(holds("", "anyof (false, false, true)", SIMPLE));
    assert!(!holds("", "anyof (false, not true)", SIMPLE));
}

// ---- tests: address and envelope ----------------------------------------------------------

#[test]
fn address_parts_with_display_names_and_groups() {
    let cases = [
        ("address :is \"from\" \"alice@example.com\"", true),
        (
            "address :all :is :comparator \"i;octet\" \"from\" \"alice@example.com\"",
            false,
        ),
        ("address :is \"from\" \"Alice Example\"", false),
        ("address :localpart :is \"from\" \"alice\"", true),
        (
            "address :localpart :is :comparator \"i;octet\" \"from\" \"Alice\"",
            true,
        ),
        ("address :domain :is \"from\" \"example.com\"", true),
        ("address :domain :is \"from\" \"Example\"", false),
        ("address :domain :is \"to\" \"example.net\"", true),
        ("address :localpart :is \"to\" \"bob\"", true),
        ("address :is \"to\" \"Bob\"", false),
        ("address :domain :matches \"to\" \"*.org\"", true),
        ("address :contains \"to\" \"carol@\"", true),
        ("address :is \"bcc\" \"eve@team.test\"", true),
        ("address :localpart :is \"bcc\" \"dave\"", true),
        ("address :is \"bcc\" \"Team\"", false),
        ("address :contains \"cc\" \"\"", false),
        ("address :contains \"cc\" \"undisclosed\"", false),
        (
            "address :is [\"x-absent\", \"to\"] \"carol@example.net\"",
            true,
        ),
    ];
    for (test, expected) in cases {
        assert_eq!(holds("", test, SIMPLE), expected, "{test}");
    }
}

#[test]
fn address_without_at_only_matches_all() {
    let message = b"To: localonly\r\n\r\n";
    assert!(holds("", "address :all :is \"to\" \"localonly\"", message));
    assert!(!holds(
        "",
        "address :localpart :matches \"to\" \"*\"",
        message
    ));
    assert!(!holds("", "address :domain :matches \"to\" \"*\"", message));
}

#[test]
fn envelope_parts() {
    let envelope = Envelope {
        from: "<Bounce+123@Lists.Example.org>",
        to: "me@example.com",
    };
    let cases = [
        (
            "envelope :is \"from\" \"bounce+123@lists.example.org\"",
            true,
        ),
        ("envelope :domain :is \"from\" \"lists.example.org\"", true),
        ("envelope :localpart :matches \"from\" \"bounce+*\"", true),
        (
            "envelope :localpart :is :comparator \"i;octet\" \"from\" \"bounce+123\"",
            false,
        ),
        ("envelope :is \"to\" \"me@example.com\"", true),
        ("envelope :is \"TO\" \"sender@example.org\"", false),
        (
            "envelope :domain :is [\"from\", \"to\"] \"example.com\"",
            true,
        ),
        ("envelope :is \"from\" \"\"", false),
    ];
    for (test, expected) in cases {
        assert_eq!(
            holds_with(", \"envelope\"", test, SIMPLE, &envelope),
            expected,
            "{test}"
        );
    }
}

#[test]
fn null_reverse_path_is_the_empty_string_for_every_part() {
    let envelope = Envelope {
        from: "",
        to: "me@example.com",
    };
    for part in [":all", ":localpart", ":domain"] {
        let test = format!("envelope {part} :is \"from\" \"\"");
        assert!(
            holds_with(", \"envelope\"", &test, SIMPLE, &envelope),
            "{test}"
        );
    }
    assert!(!holds_with(
        ", \"envelope\"",
        "envelope :contains \"from\" \"@\"",
        SIMPLE,
        &envelope
    ));
    let envelope = Envelope {
        from: "<>",
        to: "me@example.com",
    };
    assert!(holds_with(
        ", \"envelope\"",
        "envelope :domain :is \"from\" \"\"",
        SIMPLE,
        &envelope
    ));
}

// ---- tests: body ---------------------------------------------------------------------------

#[test]
fn body_transforms_on_a_multipart_message() {
    let cases = [
        // :text (the default) decodes text parts; HTML is reduced to its text.
        ("body :contains \"zebra\"", true),
        ("body :text :contains \"The secret word is Zebra.\"", true),
        ("body :text :matches \"*Zebra.*\"", true),
        ("body :text :contains \"Caf\u{e9} & Giraffe\"", true),
        ("body :text :contains \"<b>\"", false),
        ("body :text :contains \"Payload\"", false),
        ("body :text :contains \"Okapi\"", true),
        ("body :text :contains \"prologue\"", false),
        (
            "body :text :contains :comparator \"i;octet\" \"zebra\"",
            false,
        ),
        // :raw is the undecoded body.
        ("body :raw :contains \"zebra\"", false),
        (
            "body :raw :contains \"VGhlIHNlY3JldCB3b3JkIGlzIFplYnJhLg0K\"",
            true,
        ),
        ("body :raw :contains \"Caf=C3=A9\"", true),
        ("body :raw :contains \"Subject: parts\"", false),
        // :content picks parts by type.
        (
            "body :content \"text/html\" :contains \"<b>Giraffe</b>\"",
            true,
        ),
        ("body :content \"text/html\" :contains \"Zebra\"", false),
        ("body :content \"text/plain\" :contains \"Zebra\"", true),
        ("body :content \"text\" :contains \"Zebra\"", true),
        (
            "body :content \"application\" :contains \"binary Payload\"",
            true,
        ),
        (
            "body :content [\"image\", \"application/octet-stream\"] :contains \"Payload\"",
            true,
        ),
        ("body :content \"image\" :contains \"\"", false),
        ("body :content \"\" :contains \"Payload\"", true),
        ("body :content \"text/\" :contains \"\"", false),
        (
            "body :content \"multipart\" :contains \"This is the prologue.\"",
            true,
        ),
        (
            "body :content \"multipart\" :contains \"Epilogue here.\"",
            true,
        ),
        ("body :content \"multipart\" :contains \"Zebra\"", false),
        (
            "body :content \"message/rfc822\" :contains \"Subject: inner message\"",
            true,
        ),
        (
            "body :content \"message/rfc822\" :contains \"Okapi\"",
            false,
        ),
    ];
    for (test, expected) in cases {
        assert_eq!(holds(", \"body\"", test, MULTIPART), expected, "{test}");
    }
}

#[test]
fn body_of_a_plain_message() {
    assert!(holds(
        ", \"body\"",
        "body :contains \"this is the BODY\"",
        SIMPLE
    ));
    assert!(holds(
        ", \"body\"",
        "body :raw :is \"Hello Bob,\r\nthis is the body.\r\n\"",
        SIMPLE
    ));
    assert!(holds(
        ", \"body\"",
        "body :content \"text/plain\" :contains \"Hello\"",
        SIMPLE
    ));
    assert!(!holds(", \"body\"", "body :contains \"Subject\"", SIMPLE));
    // Quoted-printable and a legacy charset are decoded for :text.
    let latin1 = b"Subject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSch=F6n und =\r\nwarm\r\n";
    assert!(holds(
        ", \"body\"",
        "body :contains \"Sch\u{f6}n und warm\"",
        latin1
    ));
    assert!(holds(
        ", \"body\"",
        "body :raw :contains \"Sch=F6n\"",
        latin1
    ));
}

// ---- RFC 5228 examples ---------------------------------------------------------------------

/// RFC 5228 section 9, verbatim apart from the Rust string.
const RFC5228_SECTION_9: &str = r#"#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
"#;

#[test]
fn rfc5228_section_9_example() {
    let cases: [(&[u8], &str); 5] = [
        (b"Sender: owner-ietf-mta-filters@imc.org\r\nFrom: x@imc.org\r\nTo: list@imc.org\r\n\r\nhi\r\n", "filter"),
        (b"From: Boss <boss@example.com>\r\nTo: someone@elsewhere.test\r\n\r\nhi\r\n", "INBOX"),
        (b"From: friend@friends.test\r\nTo: list@elsewhere.test\r\nSubject: hi\r\n\r\nhi\r\n", "spam"),
        (b"From: spammer@spam.test\r\nTo: list@elsewhere.test\r\nCc: Me <me@example.com>\r\nSubject: How to MAKE lots of money FAST\r\n\r\n", "spam"),
        (b"From: friend@friends.test\r\nCc: me@example.com\r\nSubject: dinner?\r\n\r\nhi\r\n", "personal"),
    ];
    let script = compile(RFC5228_SECTION_9);
    for (message, expected) in cases {
        let got = script
            .evaluate(message, &ENVELOPE)
            .map(|d| d.into_iter().map(|d| d.mailbox).collect::<Vec<_>>());
        assert_eq!(
            got,
            Ok(vec![expected.to_owned()]),
            "{}",
            String::from_utf8_lossy(message)
        );
    }
}

#[test]
fn rfc5228_inline_examples() {
    // Section 2.4.2 and 4.2 style: size with a quantifier and a comment after the brace.
    let source = "if size :over 100k { # this is a comment\n    discard;\n}";
    assert_eq!(mailboxes(source, SIMPLE), vec!["INBOX"]);
    let big = [SIMPLE, "x".repeat(100 * 1024).as_bytes()].concat();
    assert_eq!(mailboxes(source, &big), Vec::<String>::new());

    // Section 3.1.
    let source = r#"require "fileinto";
if header :contains "from" "coyote" {
   discard;
} elsif header :contains ["subject"] ["$$$"] {
   discard;
} else {
   fileinto "INBOX";
}"#;
    assert_eq!(
        mailboxes(source, b"From: Wile E. Coyote <coyote@acme.test>\r\n\r\n"),
        Vec::<String>::new()
    );
    assert_eq!(
        mailboxes(source, b"From: a@b.test\r\nSubject: win $$$ now\r\n\r\n"),
        Vec::<String>::new()
    );
    assert_eq!(mailboxes(source, SIMPLE), vec!["INBOX"]);

    // Section 4.1.
    let source = "require \"fileinto\";\nif header :contains [\"from\"] \"coyote\" {\n   fileinto \"INBOX.harassment\";\n}";
    assert_eq!(
        mailboxes(source, b"From: coyote@acme.test\r\n\r\n"),
        vec!["INBOX.harassment"]
    );

    // Section 5.3 and 5.4.
    let source = "if allof (header :contains \"From\" \"Cobb\", header :contains \"To\" \"Ty\") { discard; }";
    assert_eq!(
        mailboxes(
            source,
            b"From: Cobb <c@x.test>\r\nTo: Ty <t@x.test>\r\n\r\n"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        mailboxes(
            source,
            b"From: Cobb <c@x.test>\r\nTo: Al <a@x.test>\r\n\r\n"
        ),
        vec!["INBOX"]
    );
    let source = "require \"envelope\";\nif envelope :all :is \"from\" \"tim@example.com\" {\n   discard;\n}";
    let tim = Envelope {
        from: "tim@example.com",
        to: "me@example.com",
    };
    assert_eq!(run_with(source, SIMPLE, &tim), vec![]);
    assert_eq!(run(source, SIMPLE), vec![delivery("INBOX", &[])]);

    // Section 2.7.1: a `*` must be escaped to be literal.
    let source = "require \"fileinto\";\nif header :matches \"subject\" \"\\\\*urgent\\\\*\" { fileinto \"urgent\"; }";
    assert_eq!(
        mailboxes(source, b"Subject: *urgent*\r\n\r\n"),
        vec!["urgent"]
    );
    assert_eq!(
        mailboxes(source, b"Subject: xurgentx\r\n\r\n"),
        vec!["INBOX"]
    );
}

// ---- hostile input ------------------------------------------------------------------------

#[test]
fn huge_wildcard_patterns_finish() {
    let message = [
        b"Subject: ".as_slice(),
        "a".repeat(50_000).as_bytes(),
        b"\r\n\r\n",
    ]
    .concat();
    let pattern = format!("{}b", "*a".repeat(5_000));
    let source = format!(
        "require \"fileinto\";\nif header :matches \"subject\" \"{pattern}\" {{ fileinto \"x\"; }}"
    );
    let started = std::time::Instant::now();
    assert_eq!(mailboxes(&source, &message), vec!["INBOX"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn the_work_budget_turns_runaway_matching_into_a_runtime_error() {
    let message = [
        b"Subject: ".as_slice(),
        "a".repeat(20_000).as_bytes(),
        b"\r\n\r\n",
    ]
    .concat();
    let source = format!(
        "if header :matches \"subject\" \"*{}b\" {{ discard; }}",
        "a".repeat(2_000)
    );
    let script = compile(&source);
    let result = script.evaluate_with_budget(&message, &ENVELOPE, 1_000_000);
    assert!(
        matches!(result, Err(RuntimeError(ref m)) if m.contains("work limit")),
        "{result:?}"
    );
    // The same script within the default budget completes.
    assert_eq!(
        script.evaluate(&message, &ENVELOPE),
        Ok(vec![delivery("INBOX", &[])])
    );
}

#[test]
fn non_utf8_messages_are_matched_lossily() {
    let message =
        b"Subject: caf\xe9 \xff\xfe\r\nFrom: \xff\xfeuser@example.com\r\n\r\n\xff body \x80 text\r\n";
    assert!(holds(
        ", \"body\"",
        "header :contains \"subject\" \"caf\"",
        message
    ));
    assert!(holds(", \"body\"", "body :raw :contains \"body\"", message));
    assert!(holds(
        ", \"body\"",
        "body :text :contains \"text\"",
        message
    ));
    assert!(holds(
        ", \"body\"",
        "address :domain :is \"from\" \"example.com\"",
        message
    ));
    assert!(holds(", \"body\"", "size :over 10", message));
}

#[test]
fn garbage_messages_never_panic() {
    let script = compile(
        r#"require ["body", "envelope", "imap4flags", "fileinto"];
if anyof (header :matches "subject" "*a?b*", address :domain :contains ["from", "to", "cc"] "x",
          envelope :localpart :is "from" "x", body :text :contains "x", body :raw :contains "x",
          body :content "" :contains "x", exists "date", size :over 1, hasflag "x") { keep; }"#,
    );
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"ab:;<>@\"=?\r\n \t-boundary\\/()\xff\x00Content-Type: multipart/mixed;";
    for round in 0..300 {
        let len = (next() % 400) as usize;
        let mut message: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if round % 3 == 0 {
            message.splice(
                0..0,
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                    .iter()
                    .copied(),
            );
        }
        // Any result is fine; reaching the end without a panic is the point.
        let result = script.evaluate(&message, &Envelope { from: "<>", to: "" });
        assert!(result.is_ok(), "{result:?}");
    }
}

#[test]
fn mutated_scripts_never_panic() {
    let base = RFC5228_SECTION_9.as_bytes();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let inserts = [
        "\"", "{", "}", "(", ")", "[", "]", ",", ";", ":", "text:\n", "\\", "/*", "#", "1K", "if",
        "\n.\n",
    ];
    let mut compiled = 0;
    for _ in 0..500 {
        let mut source = String::from_utf8_lossy(base).into_owned();
        for _ in 0..(next() % 4 + 1) {
            let mut at = (next() as usize) % source.len();
            while !source.is_char_boundary(at) {
                at -= 1;
            }
            if next() % 2 == 0 {
                source.insert_str(at, inserts[(next() as usize) % inserts.len()]);
            } else {
                let end = (at + (next() as usize) % 8).min(source.len());
                if source.is_char_boundary(end) {
                    source.replace_range(at..end, "");
                }
            }
        }
        if let Ok(script) = Script::compile(&source) {
            compiled += 1;
            assert!(script.evaluate(SIMPLE, &ENVELOPE).is_ok());
        }
    }
    // Mutations must mostly break the script, or this test exercises little.
    assert!(compiled < 400, "{compiled} of 500 mutated scripts compiled");
}

#[test]
fn bare_lf_and_headerless_messages() {
    let lf = String::from_utf8_lossy(SIMPLE).replace("\r\n", "\n");
    assert!(holds(
        ", \"body\"",
        "header :is \"x-folded\" \"first part second part\"",
        lf.as_bytes()
    ));
    assert!(holds(
        ", \"body\"",
        "address :domain :is \"to\" \"example.net\"",
        lf.as_bytes()
    ));
    assert!(holds(
        ", \"body\"",
        "body :raw :is \"Hello Bob,\nthis is the body.\n\"",
        lf.as_bytes()
    ));
    let headerless = b"\r\njust a body\r\n";
    assert!(!holds(", \"body\"", "exists \"subject\"", headerless));
    assert!(holds(
        ", \"body\"",
        "body :raw :is \"just a body\r\n\"",
        headerless
    ));
    assert!(holds(
        ", \"body\"",
        "body :text :contains \"just a body\"",
        headerless
    ));
    assert_eq!(run("", b""), vec![delivery("INBOX", &[])]);
}

#[test]
fn many_tests_on_many_headers_hit_the_budget_not_the_clock() {
    let headers: String = (0..2_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let message = format!("{headers}\r\nbody\r\n");
    let tests = vec!["exists \"x-absent\""; 500].join(", ");
    let script = compile(&format!("if anyof ({tests}) {{ discard; }}"));
    assert_eq!(
        script.evaluate(message.as_bytes(), &ENVELOPE),
        Ok(vec![delivery("INBOX", &[])])
    );
    let result = script.evaluate_with_budget(message.as_bytes(), &ENVELOPE, 100_000);
    assert!(
        matches!(result, Err(RuntimeError(ref m)) if m.contains("work limit")),
        "{result:?}"
    );
}
