//! `mail-oidc-server scram-secret` turns a password on stdin into a `scram_sha256` value, and
//! a static directory carrying such values passes `--check`.

use std::io::Write;
use std::process::{Command, Stdio};

use mail_oidc_server::auth::directory::ScramSecret;

/// Runs the binary with `args` and `stdin`; returns (success, stdout, stderr).
fn run(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mail-oidc-server"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mail-oidc-server");
    // A refused command line may exit before reading stdin: a broken pipe is then expected.
    if let Err(e) = child.stdin.take().expect("stdin").write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn secret(stdout: &str) -> ScramSecret {
    let line = stdout.trim_end_matches('\n');
    assert!(!line.contains('\n'), "one line: {stdout:?}");
    line.parse().expect("an RFC 5803 secret")
}

#[test]
fn prints_a_secret_for_the_password_on_stdin() {
    let (ok, out, err) = run(&["scram-secret"], b"pencil\n");
    assert!(ok, "{err}");
    assert!(out.starts_with("SCRAM-SHA-256$4096:"), "{out}");
    let first = secret(&out);
    assert_eq!(first.salt.len(), 16);
    assert!(first.verify_password("pencil"));
    assert!(!first.verify_password("pencil\n"));
    // A fresh salt every time; CRLF and a missing newline are fine too.
    let (ok, out, _) = run(&["scram-secret"], b"pencil\r\n");
    assert!(ok);
    let second = secret(&out);
    assert_ne!(first.salt, second.salt);
    assert!(second.verify_password("pencil"));
    let (ok, out, _) = run(&["scram-secret"], b"pencil");
    assert!(ok && secret(&out).verify_password("pencil"));
}

#[test]
fn iterations_can_be_raised_not_lowered() {
    let (ok, out, err) = run(&["scram-secret", "--iterations", "5000"], b"pencil\n");
    assert!(ok, "{err}");
    let s = secret(&out);
    assert_eq!(s.iterations, 5000);
    assert!(s.verify_password("pencil"));
    let (ok, _, err) = run(&["scram-secret", "--iterations", "4095"], b"pencil\n");
    assert!(!ok);
    assert!(err.contains("4095"), "{err}");
}

#[test]
fn empty_password_is_refused() {
    for stdin in [&b""[..], b"\n"] {
        let (ok, out, err) = run(&["scram-secret"], stdin);
        assert!(!ok, "{out}");
        assert!(err.contains("empty password"), "{err}");
    }
}

#[test]
fn the_server_still_needs_a_config() {
    let (ok, _, err) = run(&[], b"");
    assert!(!ok);
    assert!(err.contains("--config"), "{err}");
}

fn check_with_users(users: &str, mechanisms: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let users_path = dir.path().join("users.toml");
    std::fs::write(&users_path, users).expect("write users");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[directory]\nkind = \"static\"\npath = {:?}\n[imap]\nlisten = \"127.0.0.1:0\"\n[imap.auth]\nmechanisms = {mechanisms}\n",
            users_path.display().to_string()
        ),
    )
    .expect("write config");
    let config = config.display().to_string();
    let (ok, out, err) = run(&["--config", &config, "--check"], b"");
    (ok, format!("{out}{err}"))
}

#[test]
fn generated_secret_passes_check_and_bad_ones_name_the_user() {
    let (_, out, _) = run(&["scram-secret"], b"pencil\n");
    let good = out.trim_end();
    let (ok, text) = check_with_users(
        &format!("[[user]]\nname = \"carol@example.com\"\nscram_sha256 = \"{good}\"\n"),
        r#"["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"]"#,
    );
    assert!(ok, "must pass: {text}");

    let (ok, text) = check_with_users(
        "[[user]]\nname = \"carol@example.com\"\nscram_sha256 = \"SCRAM-SHA-256$4096:AAAA$x:y\"\n",
        r#"["PLAIN"]"#,
    );
    assert!(!ok, "must fail: {text}");
    assert!(
        text.contains("directory.path") && text.contains("carol@example.com"),
        "{text}"
    );
}
