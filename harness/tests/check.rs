//! `mail-oidc check` against our own server on the native stack (LemonLDAP::NG): every MUST
//! passes the strict profile, and the JSON and JUnit files are written and parse; endpoints
//! left out give skips with their reason and exit 0.

mod common;

use clap::Parser;
use mail_oidc_harness::check::render::xml;
use mail_oidc_harness::check::{CheckArgs, command};
use mail_oidc_harness::stack::Stack;
use serde_json::Value;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CheckArgs,
}

/// The IdP, the CA and a fresh user of `stack` as `check` arguments.
async fn base_args(stack: &Stack) -> Vec<String> {
    let ep = stack.endpoints();
    let settings = stack.idp_settings("mail-oidc");
    let user = stack.create_user("check").await.expect("user");
    vec![
        "--issuer".into(),
        ep.issuer.clone(),
        "--client-id".into(),
        settings.client_id.clone(),
        "--client-secret".into(),
        settings.client_secret.clone().unwrap_or_default(),
        "--user".into(),
        user.mail,
        "--password".into(),
        user.password,
        "--ca".into(),
        ep.ca_cert.display().to_string(),
    ]
}

fn parse(argv: &[String]) -> CheckArgs {
    Cli::try_parse_from(std::iter::once("check".to_string()).chain(argv.iter().cloned()))
        .expect("arguments parse")
        .args
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[tokio::test]
async fn our_server_passes_the_strict_profile() {
    let stack = common::stack().await;
    let ep = stack.endpoints();
    let dir = tempfile::tempdir().expect("temp dir");
    let forge = stack.forge();
    let key = dir.path().join("signing.pem");
    std::fs::write(&key, &forge.private_pem).expect("key file");
    let bystander = stack.create_user("bystander").await.expect("bystander");
    let json_path = dir.path().join("report.json");
    let junit_path = dir.path().join("report.xml");
    let mut argv = base_args(&stack).await;
    for (flag, value) in [
        ("--imap", ep.imap.to_string()),
        ("--imaps", ep.imaps.to_string()),
        ("--submission", ep.submission.to_string()),
        ("--submissions", ep.submissions.to_string()),
        ("--pop3", ep.pop3.to_string()),
        ("--pop3s", ep.pop3s.to_string()),
        ("--sieve", ep.sieve.to_string()),
        ("--jmap", ep.jmap_session.clone()),
        ("--backchannel-logout", ep.backchannel_logout_url.clone()),
        ("--bystander", bystander.mail.clone()),
        ("--bystander-password", bystander.password.clone()),
        ("--signing-key", key.display().to_string()),
        ("--signing-kid", forge.kid.clone()),
        // The stack's server closes a connection after three failed logins (its default).
        ("--failure-limit", "3".into()),
        ("--profile", "strict".into()),
        ("--json", json_path.display().to_string()),
        ("--junit", junit_path.display().to_string()),
    ] {
        argv.extend([flag.to_string(), value]);
    }
    if !ep.gateway.is_empty() {
        argv.extend([
            "--gateway".to_string(),
            format!("{}/oidc/.well-known/jmap", ep.gateway),
        ]);
    }
    let mut err = Vec::new();
    let code = command(&parse(&argv), &no_env, &mut err).await;
    let table = String::from_utf8_lossy(&err).into_owned();
    // The table as a user sees it, in the test's output.
    eprintln!("{table}");
    assert_eq!(code, 0, "{table}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("JSON written"))
            .expect("JSON parses");
    assert_eq!(report["profile"], "strict");
    assert_eq!(report["exit_code"], 0);
    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.len() > 100, "{} checks only", checks.len());
    for c in checks.iter().filter(|c| c["level"] == "MUST") {
        assert_eq!(c["verdict"], "pass", "{c}\n{table}");
    }
    for protocol in ["imap", "smtp", "pop3", "sieve", "jmap", "backchannel"] {
        assert!(
            checks
                .iter()
                .any(|c| c["protocol"] == protocol && c["verdict"] == "pass"),
            "nothing passed on {protocol}\n{table}"
        );
    }
    // The keyed forgeries ran (the key was given).
    assert!(
        checks
            .iter()
            .any(|c| c["id"] == "sasl.imap.oauthbearer.hostile-token.expired"
                && c["verdict"] == "pass"),
        "{table}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c["id"] == "backchannel.bystander-untouched" && c["verdict"] == "pass"),
        "{table}"
    );

    let junit = std::fs::read_to_string(&junit_path).expect("JUnit written");
    let root = xml::parse(&junit).unwrap_or_else(|e| panic!("JUnit does not parse: {e}"));
    assert_eq!(root.name, "testsuites");
    let cases: usize = root
        .all("testsuite")
        .iter()
        .map(|s| s.all("testcase").len())
        .sum();
    assert_eq!(cases, checks.len());
    assert_eq!(root.attr("failures"), Some("0"), "{junit}");
    // No secret reached the files.
    for text in [&junit, &report.to_string(), &table] {
        assert!(!text.contains(&forge.private_pem[40..80]), "the key leaked");
    }
}

#[tokio::test]
async fn endpoints_left_out_are_skipped_with_their_reason() {
    let stack = common::stack().await;
    let ep = stack.endpoints();
    let mut argv = base_args(&stack).await;
    argv.extend(["--imaps".to_string(), ep.imaps.to_string()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("report.json");
    argv.extend(["--json".to_string(), json_path.display().to_string()]);
    let mut err = Vec::new();
    let code = command(&parse(&argv), &no_env, &mut err).await;
    let table = String::from_utf8_lossy(&err).into_owned();
    assert_eq!(code, 0, "{table}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("JSON written"))
            .expect("JSON parses");
    let checks = report["checks"].as_array().expect("checks");
    let reason_of = |id: &str| {
        checks
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| (c["verdict"].clone(), c["reason"].clone()))
    };
    for (id, reason) in [
        ("sasl.smtp.abort", "no --submissions given"),
        ("sasl.pop3.abort", "no --pop3s given"),
        ("sasl.sieve.abort", "no --sieve given"),
        ("jmap.bearer.accepted", "no --jmap given"),
        ("gateway.bearer.accepted", "no --gateway given"),
        (
            "backchannel.hostile-logout-tokens",
            "no --backchannel-logout given",
        ),
        (
            "sasl.imap.oauthbearer.authzid-other-user",
            "no --bystander given",
        ),
    ] {
        assert_eq!(
            reason_of(id),
            Some((Value::from("skip"), Value::from(reason))),
            "{id}\n{table}"
        );
    }
    // Without the IdP's key: the keyless forgeries run, the validly signed ones are skipped.
    let (verdict, reason) =
        reason_of("sasl.imap.oauthbearer.hostile-token.expired").expect("listed");
    assert_eq!(verdict, "skip");
    assert!(
        reason.as_str().unwrap_or("").contains("signing key"),
        "{reason}"
    );
    assert_eq!(
        reason_of("sasl.imap.oauthbearer.hostile-token.alg-none").map(|r| r.0),
        Some(Value::from("pass")),
        "{table}"
    );
    assert!(table.contains("skipped: no --pop3s given"), "{table}");
}
