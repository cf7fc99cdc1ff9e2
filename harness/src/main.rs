//! `mail-oidc`: the harness CLI.
//! - `mail-oidc up [--env-file F]`: starts the demo environment, prints how to use it, writes the
//!   env file once everything answers, and runs until Ctrl-C.
//! - `mail-oidc token --user U --password P [--env-file F]`: prints an access token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mail_oidc_harness::clients::jmap::{Auth, JmapClient};
use mail_oidc_harness::idp::{IdpClient, IdpSettings};
use mail_oidc_harness::stack::{Backend, Stack};
use tracing_subscriber::EnvFilter;

/// The client the demo environment's token and commands use.
const DEMO_CLIENT: &str = "mail-oidc";
const DEMO_USER: &str = "demo";

#[derive(Parser)]
#[command(
    name = "mail-oidc",
    version,
    about = "End-to-end harness for the mail-oidc server: IdP, LDAP, Redis and the server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the demo environment (LemonLDAP::NG, slapd, redis, mail-oidc-server) until Ctrl-C.
    Up {
        /// Also write the environment (MAIL_OIDC_* lines) here, atomically, once everything
        /// answers. It is always written to the state path (see `token`).
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Start a private stack, measure logins and submissions, print the figures, stop.
    Bench {
        /// Measured runs per operation (after one warm-up run).
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
    /// Print an access token from the running environment's IdP (password grant).
    Token {
        #[arg(long)]
        user: String,
        #[arg(long)]
        password: String,
        /// Environment file written by `up`; default: environment variables, then the state
        /// path ($XDG_RUNTIME_DIR or the temp dir, /mail-oidc/up.env).
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    mail_oidc_server::tls::install_crypto_provider();
    let result = match cli.command {
        Command::Up { env_file } => up(env_file).await,
        Command::Bench { runs } => mail_oidc_harness::bench::run(runs)
            .await
            .map(|report| print!("{report}")),
        Command::Token {
            user,
            password,
            env_file,
        } => token(&user, &password, env_file.as_deref()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mail-oidc: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `$XDG_RUNTIME_DIR/mail-oidc/up.env`, else `<temp dir>/mail-oidc/up.env`.
fn state_env_path() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir)
        .join("mail-oidc")
        .join("up.env")
}

async fn up(env_file: Option<PathBuf>) -> anyhow::Result<()> {
    let mut env_paths = vec![state_env_path()];
    env_paths.extend(env_file);
    // A script waiting for the file must not see the previous run's.
    for path in &env_paths {
        let _ = std::fs::remove_file(path);
    }
    let stack = Stack::builder().backend(Backend::Auto).start().await?;
    let realm = stack.realm();
    let demo = realm
        .user(DEMO_USER)
        .context("the demo realm has no demo user")?
        .clone();
    let settings = stack.idp_settings(DEMO_CLIENT);
    let access_token = IdpClient::new(settings.clone())?
        .password_grant(&demo.mail, &demo.password)
        .await
        .context("password grant for the demo user")?
        .access_token;

    let ep = stack.endpoints();
    let ca = ep.ca_cert.display();
    println!(
        "mail-oidc demo environment is up (started in {:.1?}).\n",
        stack.start_duration()
    );
    let rows = [
        ("IMAP (STARTTLS)", ep.imap.to_string()),
        ("IMAPS", ep.imaps.to_string()),
        ("Submission (STARTTLS)", ep.submission.to_string()),
        ("Submissions (TLS)", ep.submissions.to_string()),
        ("SMTP (inbound)", ep.smtp.to_string()),
        ("JMAP session", ep.jmap_session.clone()),
        (
            "OIDC gateway",
            format!(
                "{}  (token-checked under /oidc/, pass-through at /)",
                ep.gateway
            ),
        ),
        ("OIDC issuer", ep.issuer.clone()),
        ("Discovery", ep.discovery_url.clone()),
        ("Token endpoint", ep.token_endpoint.clone()),
        ("JWKS", ep.jwks_uri.clone()),
        (
            "LDAP",
            format!(
                "{}  (admin {} / {})",
                ep.ldap_url, realm.admin_dn, realm.admin_password
            ),
        ),
        ("Redis", ep.redis_url.clone()),
        ("CA certificate", ca.to_string()),
        (
            "OIDC client",
            format!(
                "{} / {}",
                settings.client_id,
                settings.client_secret.as_deref().unwrap_or("(public)")
            ),
        ),
        ("Demo user", format!("{} / {}", demo.mail, demo.password)),
        ("Logs", stack.dir().join("logs").display().to_string()),
    ];
    for (name, value) in rows {
        println!("  {name:<22} {value}");
    }
    println!(
        "\nAccess token for {} (valid 1 h):\n{access_token}\n",
        demo.mail
    );
    println!("Try it:");
    println!("  export TOKEN='{access_token}'");
    println!(
        "  curl --cacert {ca} imaps://127.0.0.1:{}/INBOX --login-options AUTH=OAUTHBEARER \
         --oauth2-bearer \"$TOKEN\" -u {}",
        ep.imaps.port(),
        demo.mail
    );
    let rcpt = realm
        .users
        .iter()
        .find(|u| u.uid != demo.uid)
        .map(|u| u.mail.clone())
        .unwrap_or_else(|| demo.mail.clone());
    println!(
        "  printf 'Subject: hello\\r\\n\\r\\nHello from mail-oidc\\r\\n' | curl --cacert {ca} \
         smtps://127.0.0.1:{} --login-options AUTH=OAUTHBEARER --oauth2-bearer \"$TOKEN\" \
         -u {} --mail-from {} --mail-rcpt {rcpt} -T -",
        ep.submissions.port(),
        demo.mail,
        demo.mail
    );
    println!(
        "  mail-oidc token --user {} --password {}",
        demo.mail, demo.password
    );
    if !ep.gateway.is_empty() {
        print_jmap_examples(&ep.gateway, &ep.ca_pem, &access_token).await;
    }

    let env = render_env(&stack, &settings, &demo.mail, &demo.password, &access_token);
    for path in &env_paths {
        write_atomically(path, &env).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "\nEnvironment written to {}. Press Ctrl-C to stop.",
        env_paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    );

    wait_for_shutdown().await?;
    eprintln!("mail-oidc: stopping");
    for path in &env_paths {
        let _ = std::fs::remove_file(path);
    }
    drop(stack);
    Ok(())
}

fn render_env(
    stack: &Stack,
    settings: &IdpSettings,
    user: &str,
    password: &str,
    access_token: &str,
) -> String {
    let ep = stack.endpoints();
    let lines = [
        ("MAIL_OIDC_IMAP", ep.imap.to_string()),
        ("MAIL_OIDC_IMAPS", ep.imaps.to_string()),
        ("MAIL_OIDC_SUBMISSION", ep.submission.to_string()),
        ("MAIL_OIDC_SUBMISSIONS", ep.submissions.to_string()),
        ("MAIL_OIDC_SMTP", ep.smtp.to_string()),
        ("MAIL_OIDC_JMAP", ep.jmap_session.clone()),
        ("MAIL_OIDC_GATEWAY", ep.gateway.clone()),
        ("MAIL_OIDC_ISSUER", ep.issuer.clone()),
        ("MAIL_OIDC_DISCOVERY_URL", ep.discovery_url.clone()),
        ("MAIL_OIDC_TOKEN_ENDPOINT", ep.token_endpoint.clone()),
        ("MAIL_OIDC_CLIENT_ID", settings.client_id.clone()),
        (
            "MAIL_OIDC_CLIENT_SECRET",
            settings.client_secret.clone().unwrap_or_default(),
        ),
        ("MAIL_OIDC_USER", user.to_string()),
        ("MAIL_OIDC_PASSWORD", password.to_string()),
        ("MAIL_OIDC_CA_CERT", ep.ca_cert.display().to_string()),
        ("MAIL_OIDC_LDAP_URL", ep.ldap_url.clone()),
        ("MAIL_OIDC_REDIS_URL", ep.redis_url.clone()),
        ("MAIL_OIDC_ACCESS_TOKEN", access_token.to_string()),
    ];
    lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// curl commands for JMAP through the gateway. The account id comes from the session (fetched
/// here through the gateway); without it the Mailbox/get line names where to find it.
async fn print_jmap_examples(gateway: &str, ca_pem: &str, access_token: &str) {
    let session_url = format!("{gateway}/oidc/.well-known/jmap");
    let session = match JmapClient::new(&session_url, Auth::Bearer(access_token.into()), &[])
        .and_then(|c| c.with_ca(ca_pem))
    {
        Ok(client) => client.session().await,
        Err(e) => Err(e),
    };
    let account = match session {
        Ok(s) => s.account_id,
        Err(e) => {
            tracing::warn!(error = %e, "no JMAP session through the gateway");
            "<primaryAccounts[urn:ietf:params:jmap:mail] of the session>".to_string()
        }
    };
    // Written out so `using` comes first, as in the RFC's examples.
    let body = format!(
        r#"{{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],"methodCalls":[["Mailbox/get",{{"accountId":{}}},"0"]]}}"#,
        serde_json::Value::String(account)
    );
    println!("  export GATEWAY={gateway}");
    println!("  curl -H \"Authorization: Bearer $TOKEN\" $GATEWAY/oidc/.well-known/jmap");
    println!(
        "  curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \
         -d '{body}' $GATEWAY/oidc/jmap"
    );
}

/// Temp file in the same directory, then rename: readers see nothing or the whole file.
fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// `KEY=VALUE` lines; blank lines and `#` comments skipped, optional quotes removed.
fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let unquoted = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                .unwrap_or(v);
            (
                k.trim().trim_start_matches("export ").trim().to_string(),
                unquoted.to_string(),
            )
        })
        .collect()
}

/// An explicit `--env-file` wins over the environment; the environment wins over the state file.
fn lookup(
    explicit: Option<&HashMap<String, String>>,
    state: Option<&HashMap<String, String>>,
    key: &str,
) -> Option<String> {
    explicit
        .and_then(|m| m.get(key).cloned())
        .or_else(|| std::env::var(key).ok())
        .or_else(|| state.and_then(|m| m.get(key).cloned()))
}

async fn token(user: &str, password: &str, env_file: Option<&Path>) -> anyhow::Result<()> {
    let read = |p: &Path| -> anyhow::Result<HashMap<String, String>> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        Ok(parse_env(&text))
    };
    let explicit = env_file.map(read).transpose()?;
    let state_path = state_env_path();
    let state = if explicit.is_none() && state_path.is_file() {
        Some(read(&state_path)?)
    } else {
        None
    };
    let get = |key: &str| {
        lookup(explicit.as_ref(), state.as_ref(), key).with_context(|| {
            format!(
                "{key} not set: run `mail-oidc up` first, pass --env-file, or export {key} \
                 (state file: {})",
                state_path.display()
            )
        })
    };
    let settings = IdpSettings {
        issuer: get("MAIL_OIDC_ISSUER")?,
        client_id: get("MAIL_OIDC_CLIENT_ID")?,
        client_secret: Some(get("MAIL_OIDC_CLIENT_SECRET")?),
        redirect_uri: String::new(),
    };
    // The token endpoint is required too, so a stale or partial file is reported early.
    let token_endpoint = get("MAIL_OIDC_TOKEN_ENDPOINT")?;
    tracing::debug!(%token_endpoint, issuer = %settings.issuer, "requesting a token");
    let tokens = IdpClient::new(settings)?
        .password_grant(user, password)
        .await
        .context("password grant")?;
    println!("{}", tokens.access_token);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_files() {
        let env = parse_env(
            "# comment\nMAIL_OIDC_ISSUER=http://localhost:1\n\nexport A='x y'\nB=\"q\"\nC=a=b\n",
        );
        assert_eq!(env["MAIL_OIDC_ISSUER"], "http://localhost:1");
        assert_eq!(env["A"], "x y");
        assert_eq!(env["B"], "q");
        assert_eq!(env["C"], "a=b");
    }

    #[test]
    fn explicit_file_wins_then_environment_then_state() {
        let explicit: HashMap<String, String> = [("K1".to_string(), "file".to_string())].into();
        let state: HashMap<String, String> = [
            ("K1".to_string(), "state".to_string()),
            (
                "MAIL_OIDC_TEST_ONLY_IN_STATE".to_string(),
                "state".to_string(),
            ),
        ]
        .into();
        assert_eq!(
            lookup(Some(&explicit), Some(&state), "K1").as_deref(),
            Some("file")
        );
        assert_eq!(
            lookup(None, Some(&state), "MAIL_OIDC_TEST_ONLY_IN_STATE").as_deref(),
            Some("state")
        );
        assert_eq!(lookup(None, None, "MAIL_OIDC_TEST_UNSET_KEY"), None);
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/up.env");
        write_atomically(&path, "A=1\n").expect("write");
        write_atomically(&path, "A=2\n").expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "A=2\n");
        let leftovers = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .count();
        assert_eq!(leftovers, 1, "no temp file left");
    }
}
