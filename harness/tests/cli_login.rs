//! `mail-oidc login`, `logout` and `revoke` driven as a user would: the built binary, an env
//! file written from a real stack's endpoints, a cookie jar on disk, and an IMAP session that
//! the logout or revocation must end.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use mail_oidc_harness::clients::imap::ImapClient;
use mail_oidc_harness::cookies::CookieJar;
use mail_oidc_harness::envfile;
use mail_oidc_harness::realm::WEB_CLIENT;
use mail_oidc_harness::stack::{Idp, Stack, TestUser};
use mail_oidc_harness::tokens::decode_unverified;
use serde_json::Value;

/// How long the server may take to end a session after a logout or revocation.
const END_DEADLINE: Duration = Duration::from_secs(15);

/// The env file `mail-oidc up` would write for `stack`, with `edits` applied (an empty value
/// drops the key).
fn write_env(stack: &Stack, dir: &Path, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    // What `up` writes (for nobody in particular), with this test's edits on top.
    let mut lines = envfile::entries(stack, &stack.idp_settings("mail-oidc"), "", "", "");
    for (key, value) in edits {
        lines.retain(|(k, _)| k != key);
        if !value.is_empty() {
            lines.push((key, value.to_string()));
        }
    }
    let path = dir.join(name);
    std::fs::write(&path, envfile::render(&lines)).expect("write env file");
    path
}

/// `mail-oidc login --user --password --cookie-jar` with the default (web) client.
async fn password_login(env: &Path, user: &TestUser, jar: &str) -> Output {
    cli(
        env,
        &[
            "login",
            "--user",
            &user.mail,
            "--password",
            &user.password,
            "--cookie-jar",
            jar,
        ],
    )
    .await
}

/// Runs `mail-oidc <args> --env-file <env>` with no MAIL_OIDC_* variable of ours leaking in and
/// no state file to fall back on.
async fn cli(env_file: &Path, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mail-oidc"));
    cmd.args(args).arg("--env-file").arg(env_file);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAIL_OIDC_") {
            cmd.env_remove(key);
        }
    }
    let state_dir = env_file.parent().expect("env file dir").join("runtime");
    std::fs::create_dir_all(&state_dir).expect("runtime dir");
    cmd.env("XDG_RUNTIME_DIR", &state_dir)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("mail-oidc {args:?} did not finish in 60 s"))
        .expect("run mail-oidc");
    eprintln!(
        "$ mail-oidc {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .expect("utf8")
        .trim()
        .to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// The access token's claims; its client (`client_id`, else `azp`, else `aud`) must be
/// `client`.
fn assert_token_of(token: &str, client: &str, user: &TestUser) -> Value {
    let (_, claims) = decode_unverified(token).unwrap_or_else(|e| panic!("{e:#}: {token}"));
    let names_client = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s == client,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(client)),
        _ => false,
    };
    let by = claims
        .get("client_id")
        .or_else(|| claims.get("azp"))
        .or_else(|| claims.get("aud"));
    assert!(names_client(by), "a token of {client}: {claims:#}");
    assert!(
        names_client(claims.get("aud")),
        "audience {client}: {claims:#}"
    );
    let sub_or_mail = [claims.get("email"), claims.get("sub")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|v| v == user.mail || v == user.uid);
    assert!(sub_or_mail, "a token of {}: {claims:#}", user.mail);
    claims
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// An authenticated IMAPS session on `token`.
async fn imap_session(stack: &Stack, user: &TestUser, token: &str) -> ImapClient {
    let ep = stack.endpoints();
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let outcome = imap
        .oauthbearer(&user.mail, token, true)
        .await
        .expect("auth");
    assert!(outcome.reply.is_ok(), "{outcome:?}");
    imap
}

/// Reads until the server's `* BYE`; fails if the connection ends without one or the
/// deadline passes.
async fn wait_for_bye(imap: &mut ImapClient) -> String {
    let deadline = Instant::now() + END_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no * BYE within {END_DEADLINE:?}");
        match imap.read_line_within(left).await {
            Ok(line) if line.starts_with("* BYE") => return line,
            Ok(_) => {}
            Err(e) => panic!("the session ended without * BYE: {e}"),
        }
    }
}

/// Password login as the web client, then single sign-on from the same jar (for the
/// confidential client too, and `--json`), then `mail-oidc logout` ends the IMAP session opened
/// with the first token and the next single sign-on wants the password.
#[rstest::rstest]
#[tokio::test]
async fn login_sso_and_logout(#[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp) {
    let stack = common::stack_with(idp).await;
    let user = stack.create_user("cli").await.expect("user");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = write_env(&stack, dir.path(), "up.env", &[]);
    let jar = dir.path().join("jar.txt");
    let jar_arg = path_str(&jar);

    // Password login: the web client's JWT on stdout, the SSO cookie in a curl jar.
    let out = password_login(&env, &user, jar_arg).await;
    let web_token = stdout(&out);
    assert_eq!(web_token.split('.').count(), 3, "a JWT: {web_token}");
    assert_token_of(&web_token, WEB_CLIENT, &user);

    let text = std::fs::read_to_string(&jar).expect("jar written");
    assert!(text.starts_with("# Netscape HTTP Cookie File\n"), "{text}");
    assert_eq!(mode(&jar), 0o600, "the jar holds an SSO session");
    // LemonLDAP::NG's SSO cookie is `lemonldap` for the whole domain; Keycloak's is
    // `KEYCLOAK_IDENTITY`, host-only, under the realm's path.
    let (cookie, line_start) = match idp {
        Idp::LemonLdap => ("lemonldap", "#HttpOnly_.localhost\tTRUE\t/\t"),
        Idp::Keycloak => ("KEYCLOAK_IDENTITY", "#HttpOnly_localhost\tFALSE\t/realms/"),
    };
    let sso = CookieJar::load(&jar)
        .expect("the jar parses")
        .get(cookie)
        .unwrap_or_else(|| panic!("no {cookie} cookie in:\n{text}"));
    assert_eq!(sso.domain, "localhost", "{sso:?}");
    assert!(sso.http_only && !sso.value.is_empty(), "{sso:?}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(line_start) && l.contains(&format!("\t{cookie}\t"))),
        "curl's shape for the SSO cookie:\n{text}"
    );
    let id_token_file = dir.path().join("jar.txt.id_token");
    assert_eq!(mode(&id_token_file), 0o600);
    let id_token = std::fs::read_to_string(&id_token_file).expect("id token kept");
    assert_eq!(id_token.split('.').count(), 3, "an ID token: {id_token}");

    // Single sign-on from the jar, for the confidential client: no password, no form.
    let out = cli(
        &env,
        &["login", "--client", "mail-oidc", "--cookie-jar", jar_arg],
    )
    .await;
    let main_token = stdout(&out);
    assert_token_of(&main_token, "mail-oidc", &user);

    // And `--json` prints the whole token set.
    let out = cli(&env, &["login", "--cookie-jar", jar_arg, "--json"]).await;
    let set: Value = serde_json::from_str(&stdout(&out)).expect("JSON token set");
    for key in ["access_token", "id_token", "refresh_token", "expires_in"] {
        assert!(set.get(key).is_some(), "{key} in {set:#}");
    }
    let access = set["access_token"].as_str().expect("access_token");
    assert_token_of(access, WEB_CLIENT, &user);
    assert!(set["expires_in"].as_u64().is_some_and(|s| s > 0), "{set:#}");

    // Logout at the IdP: the back-channel logout ends the session opened with the first token.
    let mut imap = imap_session(&stack, &user, &web_token).await;
    let stale = dir.path().join("stale-jar.txt");
    std::fs::copy(&jar, &stale).expect("copy of the jar from before the logout");
    let out = cli(&env, &["logout", "--cookie-jar", jar_arg]).await;
    let said = stdout(&out);
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    assert!(said.starts_with("Logged out"), "{said}");
    let bye = wait_for_bye(&mut imap).await;
    eprintln!("IMAP: {bye}");
    assert!(
        !id_token_file.exists(),
        "the ID token goes with the session"
    );
    assert_eq!(mode(&jar), 0o600, "the jar is saved after the logout");

    // The IdP wants the password again.
    let out = cli(&env, &["login", "--cookie-jar", jar_arg]).await;
    assert!(!out.status.success(), "SSO after logout must fail");
    let err = stderr(&out);
    // LemonLDAP::NG's logout clears its cookie (no IdP session in the jar); Keycloak leaves
    // other cookies, and its login form comes back: either way the message asks for the password.
    assert!(
        err.contains("--password")
            && (err.contains("no IdP session") || err.contains("login form")),
        "a clear error: {err}"
    );
    // A copy of the jar from before the logout still has the cookie, but the IdP shows its
    // login form for it.
    let out = cli(&env, &["login", "--cookie-jar", path_str(&stale)]).await;
    assert!(!out.status.success(), "SSO on an ended session must fail");
    let err = stderr(&out);
    assert!(
        err.contains("--password") && err.contains("login form"),
        "a clear error: {err}"
    );
}

/// The walkthrough `up` prints: the CLI's jar goes to curl for the logout (curl reads and
/// rewrites it), and the session ends the same way.
#[tokio::test]
async fn curl_logs_out_with_the_cli_jar() {
    let stack = common::stack().await;
    let user = stack.create_user("curl").await.expect("user");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = write_env(&stack, dir.path(), "up.env", &[]);
    let jar = dir.path().join("jar.txt");
    let jar_arg = path_str(&jar);
    let out = password_login(&env, &user, jar_arg).await;
    let token = stdout(&out);
    let mut imap = imap_session(&stack, &user, &token).await;

    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-b",
            jar_arg,
            "-c",
            jar_arg,
        ])
        .arg(&stack.endpoints().logout_url)
        .output()
        .await
        .expect("curl is installed");
    assert!(out.status.success(), "curl: {out:?}");
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        code.starts_with('2') || code.starts_with('3'),
        "HTTP {code}"
    );
    wait_for_bye(&mut imap).await;

    // curl rewrote the jar; the CLI still reads it, and the IdP wants the password again.
    let text = std::fs::read_to_string(&jar).expect("jar");
    CookieJar::load(&jar).expect("curl's jar parses");
    let out = cli(&env, &["login", "--cookie-jar", jar_arg]).await;
    assert!(!out.status.success(), "SSO after logout must fail:\n{text}");
    assert!(stderr(&out).contains("--password"), "{}", stderr(&out));
}

/// Without MAIL_OIDC_LOGOUT_URL, `logout` is RP-initiated with the ID token kept beside the
/// jar (what Keycloak needs); the session ends all the same.
#[rstest::rstest]
#[tokio::test]
async fn logout_without_portal_url_uses_the_id_token(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = common::stack_with(idp).await;
    let user = stack.create_user("rp").await.expect("user");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = write_env(
        &stack,
        dir.path(),
        "up.env",
        &[("MAIL_OIDC_LOGOUT_URL", "")],
    );
    let jar = dir.path().join("jar.txt");
    let jar_arg = path_str(&jar);
    let out = cli(
        &env,
        &[
            "login",
            "--user",
            &user.mail,
            "--password",
            &user.password,
            "--client",
            "mail-oidc",
            "--cookie-jar",
            jar_arg,
        ],
    )
    .await;
    let token = stdout(&out);
    assert_token_of(&token, "mail-oidc", &user);
    let mut imap = imap_session(&stack, &user, &token).await;
    let out = cli(&env, &["logout", "--cookie-jar", jar_arg]).await;
    assert!(stdout(&out).starts_with("Logged out"));
    wait_for_bye(&mut imap).await;
    let out = cli(&env, &["login", "--cookie-jar", jar_arg]).await;
    assert!(!out.status.success(), "SSO after logout must fail");
    // Nothing left to log out with.
    let out = cli(&env, &["logout", "--cookie-jar", jar_arg]).await;
    assert!(!out.status.success(), "no ID token left");
}

/// `revoke` as the realm's admin answers the server's JSON and ends the user's session; with a
/// non-admin's credentials it fails with the server's reason.
#[tokio::test]
async fn revoke_as_admin_and_refused_otherwise() {
    let stack = common::stack().await;
    let user = stack.create_user("rev").await.expect("user");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = write_env(&stack, dir.path(), "up.env", &[]);
    let jar = dir.path().join("jar.txt");
    let out = cli(
        &env,
        &[
            "login",
            "--user",
            &user.mail,
            "--password",
            &user.password,
            "--cookie-jar",
            path_str(&jar),
        ],
    )
    .await;
    let token = stdout(&out);
    let mut imap = imap_session(&stack, &user, &token).await;

    let out = cli(&env, &["revoke", "--user", &user.mail]).await;
    let answer: Value = serde_json::from_str(&stdout(&out)).expect("JSON answer");
    let revoked = answer["revoked"].as_array().expect("revoked list");
    assert!(!revoked.is_empty(), "{answer:#}");
    // `ended` counts what the request itself ended; the Redis notice of the same revocation
    // may have ended the session first, so the BYE is the proof, not the count.
    assert!(answer["ended"].is_u64(), "{answer:#}");
    wait_for_bye(&mut imap).await;

    // By session, with the issuer named.
    let (_, claims) = decode_unverified(&token).expect("claims");
    if let Some(sid) = claims.get("sid").and_then(Value::as_str) {
        let out = cli(
            &env,
            &["revoke", "--sid", sid, "--iss", &stack.endpoints().issuer],
        )
        .await;
        let answer: Value = serde_json::from_str(&stdout(&out)).expect("JSON answer");
        assert!(answer["revoked"].is_array(), "{answer:#}");
    }

    // A user who is not in server.admins (another one: a password login in the very second
    // of the user's revocation is covered by it, like a token issued then).
    let other = stack.create_user("nonadmin").await.expect("user");
    let not_admin = write_env(
        &stack,
        dir.path(),
        "user.env",
        &[
            ("MAIL_OIDC_ADMIN_USER", &other.mail),
            ("MAIL_OIDC_ADMIN_PASSWORD", &other.password),
        ],
    );
    let out = cli(&not_admin, &["revoke", "--user", &user.mail]).await;
    assert!(!out.status.success(), "a non-admin cannot revoke");
    let err = stderr(&out);
    assert!(
        err.contains("403") && err.contains("not an administrator"),
        "the server's reason: {err}"
    );
}
