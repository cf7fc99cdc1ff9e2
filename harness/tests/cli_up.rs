//! `mail-oidc up --env-file F` as a script would use it: wait for the file, read the endpoints,
//! get a token with `mail-oidc token`, log in; then stop it and see everything gone.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mail_oidc_harness::clients::imap::ImapClient;
use mail_oidc_harness::clients::pop3::Pop3Client;
use mail_oidc_harness::clients::smtp::SmtpClient;

/// Kills the `up` process if the test fails before stopping it.
struct Up(std::process::Child);
impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SIGTERM lets `up` stop its own children; SIGKILL would leave that to PDEATHSIG.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Every file below `dir` is owner-only (0600 or tighter) and no directory is listable or
/// writable by others. Exceptions, none holding a secret: the gateway's Lua hook, which httpd's
/// unprivileged workers load (0644; its directories traversable, 0711, not listable), and pid
/// files, which the daemons write themselves.
fn assert_owner_only(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut checked = 0;
    let mut open = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let meta = std::fs::symlink_metadata(&d).expect("stat dir");
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o066 != 0 {
            open.push(format!("{} {mode:o}", d.display()));
        }
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let mode = meta.permissions().mode() & 0o777;
                let public = path.extension().is_some_and(|e| e == "lua" || e == "pid");
                let allowed = if public { 0o044 } else { 0 };
                if mode & 0o077 & !allowed != 0 {
                    open.push(format!("{} {mode:o}", path.display()));
                }
                checked += 1;
            }
        }
    }
    assert!(open.is_empty(), "open to other users: {open:#?}");
    assert!(checked > 10, "only {checked} files below {}", dir.display());
}

fn parse_env(text: &str) -> HashMap<String, String> {
    mail_oidc_harness::envfile::parse(text)
}

#[tokio::test]
async fn up_writes_env_file_and_token_logs_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env_file = dir.path().join("demo.env");
    let child = Command::new(env!("CARGO_BIN_EXE_mail-oidc"))
        .args(["up", "--env-file"])
        .arg(&env_file)
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mail-oidc up");
    let mut up = Up(child);

    // The file appears only once every service answers, whole (temp file + rename).
    let deadline = Instant::now() + Duration::from_secs(90);
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&env_file) {
            break text;
        }
        assert!(Instant::now() < deadline, "env file not written in time");
        assert!(
            up.0.try_wait().expect("wait").is_none(),
            "mail-oidc up exited early"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let env = parse_env(&text);
    // Nothing the demo wrote is readable by another local account.
    let env_mode = std::fs::metadata(&env_file)
        .expect("env file")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&env_mode) & 0o777,
        0o600,
        "the env file holds the demo password and a token"
    );
    let state = dir.path().join("mail-oidc");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&state).expect("state dir").permissions()
        ) & 0o777,
        0o700
    );
    // The demo's mail lives in the disk store, in an owner-only directory it names.
    let mail_dir = dir.path().join("state/mail-oidc/mail");
    assert!(
        mail_dir.join("mail.redb").is_file(),
        "no disk store in {}",
        mail_dir.display()
    );
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&mail_dir)
                .expect("mail dir")
                .permissions()
        ) & 0o777,
        0o700
    );
    let stack_dir = std::path::Path::new(&env["MAIL_OIDC_CA_CERT"])
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the CA lives in <stack>/pki/");
    assert_owner_only(stack_dir);
    for key in [
        "MAIL_OIDC_IMAP",
        "MAIL_OIDC_IMAPS",
        "MAIL_OIDC_SUBMISSION",
        "MAIL_OIDC_SMTP",
        "MAIL_OIDC_POP3",
        "MAIL_OIDC_POP3S",
        "MAIL_OIDC_SIEVE",
        "MAIL_OIDC_ISSUER",
        "MAIL_OIDC_TOKEN_ENDPOINT",
        "MAIL_OIDC_CLIENT_ID",
        "MAIL_OIDC_CLIENT_SECRET",
        "MAIL_OIDC_USER",
        "MAIL_OIDC_PASSWORD",
        "MAIL_OIDC_CA_CERT",
        "MAIL_OIDC_HTTP",
        "MAIL_OIDC_GATEWAY",
        "MAIL_OIDC_AUTHORIZATION_ENDPOINT",
        "MAIL_OIDC_LOGOUT_URL",
        "MAIL_OIDC_BACKCHANNEL_LOGOUT_URL",
        "MAIL_OIDC_REDIRECT_URI",
        "MAIL_OIDC_WEB_CLIENT_ID",
        "MAIL_OIDC_WEB_REDIRECT_URI",
        "MAIL_OIDC_ADMIN_USER",
        "MAIL_OIDC_ADMIN_PASSWORD",
    ] {
        assert!(
            env.get(key).is_some_and(|v| !v.is_empty()),
            "{key} missing in:\n{text}"
        );
    }
    assert_eq!(env["MAIL_OIDC_WEB_CLIENT_ID"], "webmail", "{text}");
    // The IdP's signing key for `check`: a private key, owner-only, and the kid it is under.
    let key_path = std::path::Path::new(&env["MAIL_OIDC_SIGNING_KEY"]);
    let key = std::fs::read_to_string(key_path).expect("signing key file");
    assert!(key.contains("PRIVATE KEY-----"), "not a private key PEM");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key_path)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the signing key is open to others: {mode:o}"
        );
    }
    assert!(!env["MAIL_OIDC_SIGNING_KID"].is_empty(), "{text}");
    assert_eq!(
        env["MAIL_OIDC_ADMIN_USER"], "mailadmin@example.com",
        "{text}"
    );
    assert!(
        env["MAIL_OIDC_HTTP"].starts_with("http://127.0.0.1:"),
        "{text}"
    );
    assert!(env["MAIL_OIDC_GATEWAY"].starts_with("https://"), "{text}");
    assert!(
        env["MAIL_OIDC_LOGOUT_URL"].ends_with("/?logout=1"),
        "{text}"
    );
    assert!(
        env["MAIL_OIDC_BACKCHANNEL_LOGOUT_URL"].starts_with(&format!("{}/", env["MAIL_OIDC_HTTP"])),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_mail-oidc"))
        .args(["token", "--user", &env["MAIL_OIDC_USER"], "--password"])
        .arg(&env["MAIL_OIDC_PASSWORD"])
        .arg("--env-file")
        .arg(&env_file)
        .output()
        .expect("run mail-oidc token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let ca = std::fs::read_to_string(&env["MAIL_OIDC_CA_CERT"]).expect("CA file");
    let imaps = env["MAIL_OIDC_IMAPS"].parse().expect("host:port");
    let user = env["MAIL_OIDC_USER"].clone();
    let mut imap = ImapClient::connect_tls(imaps, &ca).await.expect("imaps");
    let outcome = imap.oauthbearer(&user, &token, true).await.expect("auth");
    assert!(outcome.reply.tagged.starts_with("OK"), "{outcome:?}");
    let mut smtp = SmtpClient::connect(env["MAIL_OIDC_SUBMISSION"].parse().expect("addr"))
        .await
        .expect("submission");
    smtp.ehlo("cli.test").await.expect("ehlo");
    smtp.starttls(&ca).await.expect("starttls");
    smtp.ehlo("cli.test").await.expect("ehlo");
    let outcome = smtp.xoauth2(&user, &token, true).await.expect("auth");
    assert_eq!(outcome.reply.code, 235, "{outcome:?}");
    let mut pop3 = Pop3Client::connect_tls(env["MAIL_OIDC_POP3S"].parse().expect("addr"), &ca)
        .await
        .expect("pop3s");
    let outcome = pop3.oauthbearer(&user, &token, true).await.expect("auth");
    assert!(outcome.reply.is_ok(), "{outcome:?}");
    pop3.quit().await.expect("quit");

    // The file is all `login` and `revoke` need: once named, once as the state file.
    let jar = dir.path().join("jar.txt");
    let cli = |args: &[&str], env_file: Option<&std::path::Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mail-oidc"));
        cmd.args(args).env("XDG_RUNTIME_DIR", dir.path());
        if let Some(f) = env_file {
            cmd.arg("--env-file").arg(f);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MAIL_OIDC_") {
                cmd.env_remove(key);
            }
        }
        let out = cmd.output().expect("run mail-oidc");
        assert!(
            out.status.success(),
            "mail-oidc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    };
    let jar_arg = jar.to_str().expect("utf8 path");
    let web_token = cli(
        &[
            "login",
            "--user",
            &user,
            "--password",
            &env["MAIL_OIDC_PASSWORD"],
            "--cookie-jar",
            jar_arg,
        ],
        Some(&env_file),
    );
    assert_eq!(web_token.trim().split('.').count(), 3, "a JWT: {web_token}");
    let sso_token = cli(&["login", "--cookie-jar", jar_arg], None);
    assert_eq!(sso_token.trim().split('.').count(), 3, "a JWT: {sso_token}");
    let revoked = cli(&["revoke", "--user", &user], None);
    assert!(revoked.contains("\"revoked\""), "{revoked}");

    // Stopping `up` stops every service.
    unsafe { libc::kill(up.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = up.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "mail-oidc up did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit: {status:?}");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut up.0.stdout.take().expect("stdout piped"), &mut printed)
        .expect("read what up printed");
    // The gateway is HTTPS: every curl line for it trusts the stack's CA.
    let ca_arg = format!("--cacert {}", env["MAIL_OIDC_CA_CERT"]);
    for line in printed.lines().filter(|l| l.contains("$GATEWAY/")) {
        assert!(line.contains(&ca_arg), "no {ca_arg} in: {line}");
    }
    // The single log-out walkthrough.
    for expected in [
        "mail-oidc login --user demo@example.com --password demo-password --cookie-jar jar.txt",
        "openssl s_client",
        &format!(
            "curl -b jar.txt -c jar.txt '{}'",
            env["MAIL_OIDC_LOGOUT_URL"]
        ),
        "mail-oidc logout --cookie-jar jar.txt",
        &format!(
            "pop3s://{}/ --oauth2-bearer \"$TOKEN\" -u {user}:",
            env["MAIL_OIDC_POP3S"]
        ),
        // The sieve-connect lines name the ManageSieve port and trust the stack's CA.
        &format!(
            "sieve-connect --nosrv --server 127.0.0.1 --port {} --tlshostname localhost \
             --tlscafile {}",
            env["MAIL_OIDC_SIEVE"]
                .rsplit(':')
                .next()
                .unwrap_or_default(),
            env["MAIL_OIDC_CA_CERT"]
        ),
    ] {
        assert!(
            printed.contains(expected),
            "{expected:?} not in:\n{printed}"
        );
    }
    assert!(
        tokio::net::TcpStream::connect(imaps).await.is_err(),
        "IMAP listener gone after up stopped"
    );
}
