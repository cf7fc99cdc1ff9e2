//! `mail-oidc`: the harness CLI.
//! - `mail-oidc up [--env-file F]`: starts the demo environment, prints how to use it, writes the
//!   env file once everything answers, and runs until Ctrl-C.
//! - `mail-oidc token --user U --password P [--env-file F]`: prints an access token.
//! - `mail-oidc login [--user U --password P] [--client ID] --cookie-jar F [--json]`: browser
//!   login (authorization code + PKCE) keeping the IdP's SSO cookie in F, a curl cookie file;
//!   without a password it is single sign-on from that cookie.
//! - `mail-oidc logout --cookie-jar F`: logs out at the IdP as a browser would (single log-out).
//! - `mail-oidc revoke (--user U | --sub S | --sid S) [--iss I]`: the server's admin revocation.
//! - `mail-oidc check --imaps H:P ... --ca F`: the conformance checks against any mail server.
//!
//! Every command but `up` and `bench` reads the environment written by `up`: `--env-file F`,
//! else environment variables, else the state file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use mail_oidc_harness::clients::jmap::{Auth, JmapClient};
use mail_oidc_harness::cookies::write_private_atomically;
use mail_oidc_harness::envfile;
use mail_oidc_harness::idp::{BrowserSession, IdpClient, IdpSettings};
use mail_oidc_harness::private;
use mail_oidc_harness::realm::Realm;
use mail_oidc_harness::stack::{Backend, Idp, Stack};
use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;

/// The client the demo environment's token and commands use.
const DEMO_CLIENT: &str = "mail-oidc";
const DEMO_USER: &str = "demo";
/// Deadline of the `revoke` request.
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// Start the demo environment (the IdP, slapd, redis, mail-oidc-server, the gateway) until
    /// Ctrl-C.
    Up {
        /// Also write the environment (MAIL_OIDC_* lines) here, atomically, once everything
        /// answers. It is always written to the state path (see `token`).
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// The identity provider: `lemonldap` (LemonLDAP::NG 2.21) or `keycloak` (Keycloak 26,
        /// its realm imported at start).
        #[arg(long, default_value = "lemonldap")]
        idp: Idp,
    },
    /// Write the compose deployment's generated files (keycloak-realm/realm.json,
    /// compose/server.toml, compose/ldap/slapd.conf, compose/apisix/*.yaml) under ROOT.
    ComposeFiles {
        /// The repository's root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Start a private stack, measure logins and submissions, print the figures, stop. With
    /// --imap HOST:PORT: the IMAP login rate of that server (any IMAP server) instead.
    Bench {
        /// Measured runs per operation (after one warm-up run).
        #[arg(long, default_value_t = 50, conflicts_with = "imap")]
        runs: usize,
        /// Only time one bearer-token validation in the server's validator (token cache off
        /// and on, and the bare signature check), in process, `runs` times each.
        #[arg(long, conflicts_with = "imap")]
        validation: bool,
        #[command(flatten)]
        imap: mail_oidc_harness::bench::login_rate::ImapBenchArgs,
    },
    /// Print an access token from the running environment's IdP (password grant).
    Token {
        #[arg(long)]
        user: String,
        #[arg(long)]
        password: String,
        /// Environment file written by `up`; default: environment variables, then the state
        /// path ($XDG_RUNTIME_DIR/mail-oidc/up.env, else <temp dir>/mail-oidc-<uid>/up.env).
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Log in as a browser does (authorization code + PKCE) and print the access token. The
    /// IdP's SSO cookie is kept in the cookie jar (curl's cookie-file format); without
    /// --password the login is single sign-on from that cookie.
    Login(LoginArgs),
    /// Log out at the IdP as a browser does (GET MAIL_OIDC_LOGOUT_URL with the SSO cookie):
    /// the IdP ends the session and sends every client's back-channel logout.
    Logout {
        /// Cookie jar written by `login` (or by curl -c); saved back after the logout.
        #[arg(long, value_name = "FILE")]
        cookie_jar: PathBuf,
        /// Environment file written by `up` (see `token`).
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Revoke a user, subject or session at the server (POST /admin/revoke as
    /// MAIL_OIDC_ADMIN_USER) and print its answer.
    Revoke {
        #[command(flatten)]
        target: RevokeTarget,
        /// Issuer of --sub or --sid (default: the server's configured issuer).
        #[arg(long, conflicts_with = "user")]
        iss: Option<String>,
        /// Environment file written by `up` (see `token`).
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Run the OIDC conformance checks against a mail server given by its endpoints (any
    /// server: ours, Dovecot, James, ...). The IdP is the `up` environment's, or --issuer
    /// --client-id --client-secret. Exit 0: every MUST passes; 1: a MUST fails; 2: the target
    /// cannot be reached or the arguments are wrong.
    Check(Box<mail_oidc_harness::check::CheckArgs>),
}

#[derive(Args)]
struct LoginArgs {
    /// The user to log in as; without --user and --password: single sign-on from the jar.
    #[arg(long, requires = "password")]
    user: Option<String>,
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// OIDC client (default: MAIL_OIDC_WEB_CLIENT_ID, else MAIL_OIDC_CLIENT_ID). Its secret is
    /// MAIL_OIDC_CLIENT_SECRET when it is MAIL_OIDC_CLIENT_ID; any other client is public.
    #[arg(long, value_name = "ID")]
    client: Option<String>,
    /// Redirect URI registered for the client (default: from the environment, else the demo
    /// realm's).
    #[arg(long)]
    redirect_uri: Option<String>,
    /// Cookie jar (Netscape format, as curl -b/-c use), read and written back (mode 0600).
    /// The ID token is kept beside it in FILE.id_token for a later logout.
    #[arg(long, value_name = "FILE")]
    cookie_jar: PathBuf,
    /// Print the whole token response as JSON (access_token, id_token, refresh_token,
    /// expires_in) instead of the access token.
    #[arg(long)]
    json: bool,
    /// Environment file written by `up` (see `token`).
    #[arg(long)]
    env_file: Option<PathBuf>,
}

/// Exactly one of user, subject or session.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct RevokeTarget {
    /// Every session of a directory user (mail or uid).
    #[arg(long)]
    user: Option<String>,
    /// Every token of this subject issued before now.
    #[arg(long)]
    sub: Option<String>,
    /// One IdP session (the `sid` claim).
    #[arg(long)]
    sid: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `check` prints its own table: the suites' log lines would repeat every failure.
    let default_filter = if matches!(cli.command, Command::Check(_)) {
        "error"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    mail_oidc_server::tls::install_crypto_provider();
    let result = match cli.command {
        Command::Up { env_file, idp } => up(env_file, idp).await,
        Command::ComposeFiles { root } => {
            mail_oidc_harness::compose::write_files(&root).map(|written| {
                for path in written {
                    println!("wrote {}", root.join(path).display());
                }
            })
        }
        Command::Bench { imap, .. } if imap.imap.is_some() => bench_imap(&imap).await,
        Command::Bench {
            runs,
            validation: true,
            ..
        } => mail_oidc_harness::bench::validation::validation_cost(runs)
            .await
            .map(|cost| println!("{cost}")),
        Command::Bench { runs, .. } => mail_oidc_harness::bench::run(runs)
            .await
            .map(|report| print!("{report}")),
        Command::Token {
            user,
            password,
            env_file,
        } => token(&user, &password, env_file.as_deref()).await,
        Command::Login(args) => login(args).await,
        Command::Logout {
            cookie_jar,
            env_file,
        } => logout(&cookie_jar, env_file.as_deref()).await,
        Command::Revoke {
            target,
            iss,
            env_file,
        } => revoke(&target, iss.as_deref(), env_file.as_deref()).await,
        // Its own exit codes (1: a MUST fails, 2: unreachable or bad arguments).
        Command::Check(args) => return ExitCode::from(check(&args).await),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mail-oidc: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `check`: the IdP and the user from the `up` environment unless given; its own exit codes.
async fn check(args: &mail_oidc_harness::check::CheckArgs) -> u8 {
    // An outside IdP with its user needs no environment at all.
    let env = if args.issuer.is_some() && args.user.is_some() {
        None
    } else {
        match UpEnv::load(args.env_file.as_deref()) {
            Ok(env) => Some(env),
            Err(e) => {
                eprintln!("mail-oidc check: bad arguments: {e:#}");
                return 2;
            }
        }
    };
    let lookup = |key: &str| env.as_ref().and_then(|e| e.opt(key));
    mail_oidc_harness::check::command(args, &lookup, &mut std::io::stderr()).await
}

/// `bench --imap`: user, token and CA from the options, else from the env file (`--env-file`,
/// else the state file when it exists).
async fn bench_imap(
    args: &mail_oidc_harness::bench::login_rate::ImapBenchArgs,
) -> anyhow::Result<()> {
    use mail_oidc_harness::bench::login_rate;

    let env_path = args
        .env_file
        .clone()
        .or_else(|| Some(state_env_path()).filter(|p| p.is_file()));
    let env = match &env_path {
        Some(path) => Some(envfile::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )),
        None => None,
    };
    let plan = args.plan(env.as_ref())?;
    if plan.tls == Some(login_rate::TlsTrust::Insecure) {
        eprintln!(
            "mail-oidc: WARNING: --insecure-skip-tls-verify: the server's certificate is not checked"
        );
    }
    let what = format!(
        "IMAP {} ({:?}, {}) against {}:{}",
        plan.mechanism.name(),
        plan.security,
        plan.user,
        plan.host,
        plan.port
    );
    if let Some(n) = plan.hold {
        println!("{what}: {n} connections held");
        println!("{}", login_rate::hold(&plan, n).await?);
        return Ok(());
    }
    println!(
        "{what}: whole logins, {:.1} s per level",
        plan.duration.as_secs_f64()
    );
    for level in login_rate::login_rate(&plan).await? {
        println!("{level}");
    }
    Ok(())
}

/// `$XDG_RUNTIME_DIR/mail-oidc/up.env`, else `<temp dir>/mail-oidc-<uid>/up.env`: a directory of
/// this user's own (the file holds the demo password and a token), never one shared path.
fn state_env_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
    {
        Some(runtime) => runtime.join("mail-oidc"),
        // SAFETY: plain syscall without arguments.
        None => std::env::temp_dir().join(format!("mail-oidc-{}", unsafe { libc::geteuid() })),
    }
    .join("up.env")
}

/// Where the demo keeps its mail between runs: `$XDG_STATE_HOME/mail-oidc/mail`, else
/// `~/.local/state/mail-oidc/mail`, else beside the state file. Owner-only.
fn demo_mail_dir() -> PathBuf {
    let state_home = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".local/state"))
        });
    match state_home {
        Some(dir) => dir.join("mail-oidc"),
        None => state_env_path()
            .parent()
            .map_or_else(std::env::temp_dir, Path::to_path_buf),
    }
    .join("mail")
}

/// The demo's stack: its own IdP, mail on disk in `store_path`, and the demo's server settings
/// (the documented defaults, not the test stacks' relaxed ones).
fn demo_stack(idp: Idp, store_path: PathBuf) -> mail_oidc_harness::stack::StackBuilder {
    Stack::builder()
        .backend(Backend::Auto)
        .idp(idp)
        .dedicated_idp()
        .demo()
        .server_config(move |c| {
            c.store.kind = mail_oidc_server::config::StoreKind::Disk;
            c.store.path = Some(store_path);
        })
}

async fn up(env_file: Option<PathBuf>, idp: Idp) -> anyhow::Result<()> {
    // The demo's mail survives a restart: the disk store in a directory of this user's own.
    let mail_dir = demo_mail_dir();
    private::private_dir(&mail_dir)?;
    let store_path = mail_dir.clone();
    let mut env_paths = vec![state_env_path()];
    env_paths.extend(env_file);
    // A script waiting for the file must not see the previous run's.
    for path in &env_paths {
        let _ = std::fs::remove_file(path);
    }
    let stack = demo_stack(idp, store_path).start().await?;
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
        "mail-oidc demo environment is up with {} (started in {:.1?}).\n",
        stack.idp().title(),
        stack.start_duration()
    );
    let web_client = realm
        .web_client()
        .map(|c| format!("{} (public: auth code + PKCE)", c.client_id))
        .unwrap_or_else(|| "(none)".into());
    let admin = realm
        .admin()
        .map(|a| format!("{} / {}  (POST /admin/revoke)", a.mail, a.password))
        .unwrap_or_else(|| "(none)".into());
    let rows = [
        ("IMAP (STARTTLS)", ep.imap.to_string()),
        ("IMAPS", ep.imaps.to_string()),
        ("Submission (STARTTLS)", ep.submission.to_string()),
        ("Submissions (TLS)", ep.submissions.to_string()),
        ("SMTP (inbound)", ep.smtp.to_string()),
        ("POP3 (STLS)", ep.pop3.to_string()),
        ("POP3S", ep.pop3s.to_string()),
        ("ManageSieve (STARTTLS)", ep.sieve.to_string()),
        ("Server HTTP", format!("http://{}", ep.http)),
        ("JMAP session", ep.jmap_session.clone()),
        (
            "OIDC gateway",
            format!(
                "{}  (HTTPS, CA below; token-checked under /oidc/, pass-through at /)",
                ep.gateway
            ),
        ),
        ("OIDC issuer", ep.issuer.clone()),
        ("Discovery", ep.discovery_url.clone()),
        ("Authorization", ep.authorization_endpoint.clone()),
        ("Token endpoint", ep.token_endpoint.clone()),
        ("JWKS", ep.jwks_uri.clone()),
        ("IdP logout (browser)", ep.logout_url.clone()),
        ("Back-channel logout", ep.backchannel_logout_url.clone()),
        (
            "LDAP",
            format!(
                "{}  (admin {} / {})",
                ep.ldap_url, realm.admin_dn, realm.admin_password
            ),
        ),
        (
            "Redis",
            format!(
                "{}  (no anonymous access; ACL users' passwords in {}/*.pass)",
                ep.redis_url,
                stack.dir().join("redis").display()
            ),
        ),
        ("CA certificate", ca.to_string()),
        (
            "OIDC client",
            format!(
                "{} / {}",
                settings.client_id,
                settings.client_secret.as_deref().unwrap_or("(public)")
            ),
        ),
        ("Web client", web_client),
        ("Demo user", format!("{} / {}", demo.mail, demo.password)),
        ("Administrator", admin),
        ("Logs", stack.dir().join("logs").display().to_string()),
        ("Mail store (kept)", mail_dir.display().to_string()),
    ];
    for (name, value) in rows {
        println!("  {name:<22} {value}");
    }
    println!(
        "\nAccess token for {} (valid {} min):\n{access_token}\n",
        demo.mail,
        mail_oidc_harness::realm::DEFAULT_TOKEN_SECONDS / 60
    );
    println!("Try it:");
    println!("  export TOKEN='{access_token}'");
    println!(
        "  curl --cacert {ca} imaps://127.0.0.1:{}/INBOX --login-options AUTH=OAUTHBEARER \
         --oauth2-bearer \"$TOKEN\" -u {}",
        ep.imaps.port(),
        demo.mail
    );
    // curl picks OAUTHBEARER or XOAUTH2 from CAPA; `user:` (empty password) names the user.
    println!(
        "  curl --cacert {ca} pop3s://127.0.0.1:{}/ --oauth2-bearer \"$TOKEN\" -u {}:",
        ep.pop3s.port(),
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
    print_sieve_example(ep.sieve.port(), &ca.to_string(), &demo.mail, &demo.password);
    println!(
        "  mail-oidc token --user {} --password {}",
        demo.mail, demo.password
    );
    if !ep.gateway.is_empty() {
        print_jmap_examples(&ep.gateway, &ep.ca_pem, &ep.ca_cert, &access_token).await;
    }
    print_slo_walkthrough(&stack, &demo.mail, &demo.password);

    let mut entries =
        envfile::entries(&stack, &settings, &demo.mail, &demo.password, &access_token);
    // The IdP's signing key, for `check`'s validly signed hostile tokens: owner-only, in the
    // stack's own directory (gone with the stack).
    let forge = stack.forge();
    let key_path = stack.dir().join("idp-signing-key.pem");
    private::write_atomically(&key_path, forge.private_pem.as_bytes())
        .with_context(|| format!("writing {}", key_path.display()))?;
    entries.push(("MAIL_OIDC_SIGNING_KEY", key_path.display().to_string()));
    entries.push(("MAIL_OIDC_SIGNING_KID", forge.kid));
    let env = envfile::render(&entries);
    for path in &env_paths {
        write_env_file(path, path == &env_paths[0], &env)?;
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

/// A Sieve script uploaded and activated with Debian's `sieve-connect` (the lines the
/// end-to-end test runs).
fn print_sieve_example(port: u16, ca: &str, user: &str, password: &str) {
    let sc = mail_oidc_harness::clients::sieve_connect::SieveConnect {
        port,
        ca_file: ca.into(),
        user: user.to_string(),
        password: password.to_string(),
    };
    println!(
        "  printf 'require \"fileinto\";\\nif header :contains \"subject\" \"spam\" \
         {{ fileinto \"Junk\"; }}\\n' > filter.sieve"
    );
    let file = std::path::Path::new("filter.sieve");
    for args in [sc.upload(file, "filter"), sc.activate("filter"), sc.list()] {
        println!("  {}", sc.shell_line(&args));
    }
}

/// Single log-out by hand: a browser login, an IMAP session on its token, the IdP logout, and
/// the session's end.
fn print_slo_walkthrough(stack: &Stack, user: &str, password: &str) {
    let ep = stack.endpoints();
    let ca = ep.ca_cert.display();
    println!("\nSingle log-out (two terminals):");
    println!(
        "  export WEB_TOKEN=$(mail-oidc login --user {user} --password {password} \
         --cookie-jar jar.txt)"
    );
    println!(
        "  {{ printf 'a AUTHENTICATE OAUTHBEARER %s\\r\\nb IDLE\\r\\n' \"$(printf \
         'n,a=%s,\\001auth=Bearer %s\\001\\001' {user} \"$WEB_TOKEN\" | base64 -w0)\"; cat; }} \
         | openssl s_client -quiet -CAfile {ca} -connect 127.0.0.1:{}",
        ep.imaps.port()
    );
    println!(
        "  # second terminal: log out at the IdP with the browser's SSO cookie \
         (MAIL_OIDC_LOGOUT_URL):"
    );
    println!("  curl -b jar.txt -c jar.txt '{}'", ep.logout_url);
    println!("  # or: mail-oidc logout --cookie-jar jar.txt");
    println!(
        "  # the IMAP session ends with `* BYE` (back-channel logout to {}); \
         `mail-oidc login --cookie-jar jar.txt` now wants the password again.",
        ep.backchannel_logout_url
    );
    if let Some(admin) = stack.realm().admin() {
        println!(
            "  # revoke by hand instead (as {}): mail-oidc revoke --user {user}",
            admin.mail
        );
    }
}

/// curl commands for JMAP through the gateway (HTTPS: curl trusts the stack's CA with
/// `--cacert`). The account id comes from the session (fetched here through the gateway);
/// without it the Mailbox/get line names where to find it.
async fn print_jmap_examples(gateway: &str, ca_pem: &str, ca_path: &Path, access_token: &str) {
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
    let ca = ca_path.display();
    println!("  export GATEWAY={gateway}");
    println!(
        "  curl --cacert {ca} -H \"Authorization: Bearer $TOKEN\" $GATEWAY/oidc/.well-known/jmap"
    );
    println!(
        "  curl --cacert {ca} -H \"Authorization: Bearer $TOKEN\" \
         -H 'Content-Type: application/json' -d '{body}' $GATEWAY/oidc/jmap"
    );
}

/// Writes an env file owner-only (0600) and atomically. The state file's directory must be
/// this user's alone (created 0700); a directory named with `--env-file` is created if missing.
fn write_env_file(path: &Path, is_state: bool, content: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if is_state {
            private::private_dir(dir)?;
        } else {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    private::write_atomically(path, content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
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

/// Where a command reads the environment written by `up`: an explicit `--env-file`, else the
/// process environment, else the state file.
struct UpEnv {
    explicit: Option<HashMap<String, String>>,
    state: Option<HashMap<String, String>>,
    state_path: PathBuf,
}

impl UpEnv {
    fn load(env_file: Option<&Path>) -> anyhow::Result<Self> {
        let read = |p: &Path| -> anyhow::Result<HashMap<String, String>> {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(envfile::parse(&text))
        };
        let explicit = env_file.map(read).transpose()?;
        let state_path = state_env_path();
        let state = if explicit.is_none() && state_path.is_file() {
            // Only from a directory of this user's own: another account could plant endpoints.
            if let Some(dir) = state_path.parent() {
                private::check_private(dir)?;
            }
            Some(read(&state_path)?)
        } else {
            None
        };
        Ok(Self {
            explicit,
            state,
            state_path,
        })
    }

    /// The value of `key`; an empty value counts as unset.
    fn opt(&self, key: &str) -> Option<String> {
        lookup(self.explicit.as_ref(), self.state.as_ref(), key).filter(|v| !v.is_empty())
    }

    fn get(&self, key: &str) -> anyhow::Result<String> {
        self.opt(key).with_context(|| {
            format!(
                "{key} not set: run `mail-oidc up` first, pass --env-file, or export {key} \
                 (state file: {})",
                self.state_path.display()
            )
        })
    }
}

async fn token(user: &str, password: &str, env_file: Option<&Path>) -> anyhow::Result<()> {
    let env = UpEnv::load(env_file)?;
    let settings = IdpSettings {
        issuer: env.get("MAIL_OIDC_ISSUER")?,
        client_id: env.get("MAIL_OIDC_CLIENT_ID")?,
        client_secret: Some(env.get("MAIL_OIDC_CLIENT_SECRET")?),
        redirect_uri: String::new(),
    };
    // The token endpoint is required too, so a stale or partial file is reported early.
    let token_endpoint = env.get("MAIL_OIDC_TOKEN_ENDPOINT")?;
    tracing::debug!(%token_endpoint, issuer = %settings.issuer, "requesting a token");
    let tokens = IdpClient::new(settings)?
        .password_grant(user, password)
        .await
        .context("password grant")?;
    println!("{}", tokens.access_token);
    Ok(())
}

/// `FILE.id_token`: the last ID token of a `login` with that jar (an `id_token_hint` for
/// RP-initiated logout).
fn id_token_path(cookie_jar: &Path) -> PathBuf {
    let mut p = cookie_jar.as_os_str().to_owned();
    p.push(".id_token");
    PathBuf::from(p)
}

/// The client `login` acts as: `--client`, else the web client, else the main client. Only the
/// main client has a secret (MAIL_OIDC_CLIENT_SECRET).
fn login_settings(
    env: &UpEnv,
    client: Option<String>,
    redirect_uri: Option<String>,
) -> anyhow::Result<IdpSettings> {
    let main_client = env.opt("MAIL_OIDC_CLIENT_ID");
    let web_client = env.opt("MAIL_OIDC_WEB_CLIENT_ID");
    let client_id = client
        .or_else(|| web_client.clone())
        .or_else(|| main_client.clone())
        .context(
            "no OIDC client: pass --client, or set MAIL_OIDC_WEB_CLIENT_ID or \
             MAIL_OIDC_CLIENT_ID (run `mail-oidc up` first, or pass --env-file)",
        )?;
    let is_main = main_client.as_deref() == Some(client_id.as_str());
    let is_web = web_client.as_deref() == Some(client_id.as_str());
    let client_secret = if is_main {
        env.opt("MAIL_OIDC_CLIENT_SECRET")
    } else {
        None
    };
    let redirect_uri = redirect_uri
        .or_else(|| is_main.then(|| env.opt("MAIL_OIDC_REDIRECT_URI")).flatten())
        .or_else(|| {
            is_web
                .then(|| env.opt("MAIL_OIDC_WEB_REDIRECT_URI"))
                .flatten()
        })
        .or_else(|| {
            Realm::demo()
                .client(&client_id)
                .and_then(|c| c.redirect_uris.first().cloned())
        })
        .with_context(|| {
            format!("no redirect URI known for the client {client_id:?}: pass --redirect-uri")
        })?;
    Ok(IdpSettings {
        issuer: env.get("MAIL_OIDC_ISSUER")?,
        client_id,
        client_secret,
        redirect_uri,
    })
}

async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let env = UpEnv::load(args.env_file.as_deref())?;
    let settings = login_settings(&env, args.client, args.redirect_uri)?;
    let jar = &args.cookie_jar;
    let browser = BrowserSession::with_cookie_file(jar)?;
    let idp = IdpClient::new(settings)?;
    let credentials = args.user.as_deref().zip(args.password.as_deref());
    if credentials.is_none() {
        // Without a cookie for the IdP there is nothing to sign on with.
        let authorize = match env.opt("MAIL_OIDC_AUTHORIZATION_ENDPOINT") {
            Some(url) => url,
            None => idp.discovery().await?.authorization_endpoint,
        };
        if browser.cookies_for(&authorize).is_none() {
            bail!(
                "no IdP session in {} (no cookie for {authorize}): the IdP wants the password; \
                 log in with --user and --password",
                jar.display()
            );
        }
    }
    let outcome = idp
        .auth_code_login(&browser, credentials)
        .await
        .with_context(|| match credentials {
            Some((user, _)) => format!("browser login of {user} as {}", idp.settings.client_id),
            None => format!(
                "single sign-on as {} from the IdP session in {} failed (if the IdP showed its \
                 login form, the session has ended: log in again with --user and --password)",
                idp.settings.client_id,
                jar.display()
            ),
        })?;
    browser.save()?;
    let id_token_file = id_token_path(jar);
    match &outcome.tokens.id_token {
        Some(id_token) => write_private_atomically(&id_token_file, id_token.as_bytes())
            .with_context(|| format!("writing {}", id_token_file.display()))?,
        None => {
            let _ = std::fs::remove_file(&id_token_file);
        }
    }
    tracing::debug!(
        client = %idp.settings.client_id,
        sso = !outcome.login_form_shown,
        "logged in"
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.tokens)?);
    } else {
        println!("{}", outcome.tokens.access_token);
    }
    Ok(())
}

async fn logout(cookie_jar: &Path, env_file: Option<&Path>) -> anyhow::Result<()> {
    let env = UpEnv::load(env_file)?;
    let browser = BrowserSession::with_cookie_file(cookie_jar)?;
    let id_token_file = id_token_path(cookie_jar);
    let how = match env.opt("MAIL_OIDC_LOGOUT_URL") {
        Some(logout_url) => {
            if browser.cookies_for(&logout_url).is_none() {
                bail!(
                    "no IdP session in {} (no cookie for {logout_url}): nothing to log out",
                    cookie_jar.display()
                );
            }
            let idp = IdpClient::new(IdpSettings {
                issuer: env.opt("MAIL_OIDC_ISSUER").unwrap_or_default(),
                client_id: String::new(),
                client_secret: None,
                redirect_uri: String::new(),
            })?;
            let status = idp.browser_logout(&browser, &logout_url).await?;
            format!("GET {logout_url}: HTTP {status}")
        }
        // Without the portal's logout URL: RP-initiated logout with the saved ID token.
        None => {
            let id_token = std::fs::read_to_string(&id_token_file).with_context(|| {
                format!(
                    "MAIL_OIDC_LOGOUT_URL is not set and there is no ID token for an \
                     RP-initiated logout in {}",
                    id_token_file.display()
                )
            })?;
            let idp = IdpClient::new(IdpSettings {
                issuer: env.get("MAIL_OIDC_ISSUER")?,
                client_id: String::new(),
                client_secret: None,
                redirect_uri: String::new(),
            })?;
            let outcome = idp.logout(&browser, id_token.trim()).await?;
            format!("end_session_endpoint: HTTP {}", outcome.status)
        }
    };
    browser.save()?;
    let _ = std::fs::remove_file(&id_token_file);
    println!(
        "Logged out at the IdP ({how}); its clients got their back-channel logout, and {} \
         holds no session any more.",
        cookie_jar.display()
    );
    Ok(())
}

/// The `/admin/revoke` body for a target.
fn revoke_body(target: &RevokeTarget, iss: Option<&str>) -> Value {
    let mut body = serde_json::Map::new();
    for (key, value) in [
        ("user", &target.user),
        ("sub", &target.sub),
        ("sid", &target.sid),
    ] {
        if let Some(v) = value {
            body.insert(key.into(), json!(v));
        }
    }
    if let Some(iss) = iss {
        body.insert("iss".into(), json!(iss));
    }
    Value::Object(body)
}

async fn revoke(
    target: &RevokeTarget,
    iss: Option<&str>,
    env_file: Option<&Path>,
) -> anyhow::Result<()> {
    let env = UpEnv::load(env_file)?;
    let url = format!(
        "{}/admin/revoke",
        env.get("MAIL_OIDC_HTTP")?.trim_end_matches('/')
    );
    let admin = env.get("MAIL_OIDC_ADMIN_USER")?;
    let password = env.get("MAIL_OIDC_ADMIN_PASSWORD")?;
    let http = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let resp = http
        .post(&url)
        .basic_auth(&admin, Some(&password))
        .json(&revoke_body(target, iss))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    let body = serde_json::from_str::<Value>(&text).ok();
    if !status.is_success() {
        // RFC 7807: the detail says why.
        let detail = body
            .as_ref()
            .and_then(|b| b.get("detail"))
            .and_then(Value::as_str)
            .map_or_else(|| text.trim().to_string(), str::to_string);
        bail!("POST {url} as {admin} answered HTTP {status}: {detail}");
    }
    match body {
        Some(json) => println!("{}", serde_json::to_string_pretty(&json)?),
        None => println!("{}", text.trim()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `up` runs the demo's server settings (their meaning is tested in `stack::server`).
    #[test]
    fn up_runs_the_demo_profile_not_the_test_one() {
        let builder = demo_stack(Idp::LemonLdap, PathBuf::from("/tmp/mail"));
        assert_eq!(
            builder.profile(),
            mail_oidc_harness::stack::server::Profile::Demo
        );
    }

    #[test]
    fn parses_env_files() {
        let env = envfile::parse(
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

    fn env_of(pairs: &[(&str, &str)]) -> UpEnv {
        UpEnv {
            explicit: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            state: None,
            state_path: PathBuf::from("/nonexistent/up.env"),
        }
    }

    #[test]
    fn login_picks_the_web_client_and_keeps_the_secret_for_the_main_client() {
        let env = env_of(&[
            ("MAIL_OIDC_ISSUER", "http://localhost:1"),
            ("MAIL_OIDC_CLIENT_ID", "mail-oidc"),
            ("MAIL_OIDC_CLIENT_SECRET", "s3cret"),
            ("MAIL_OIDC_REDIRECT_URI", "http://localhost/main/cb"),
            ("MAIL_OIDC_WEB_CLIENT_ID", "webmail"),
            ("MAIL_OIDC_WEB_REDIRECT_URI", "http://localhost/web/cb"),
        ]);
        let web = login_settings(&env, None, None).expect("web client");
        assert_eq!(web.client_id, "webmail");
        assert_eq!(web.client_secret, None);
        assert_eq!(web.redirect_uri, "http://localhost/web/cb");
        let main = login_settings(&env, Some("mail-oidc".into()), None).expect("main client");
        assert_eq!(main.client_secret.as_deref(), Some("s3cret"));
        assert_eq!(main.redirect_uri, "http://localhost/main/cb");
        // Another client is public; its redirect URI comes from the demo realm or the flag.
        let other = login_settings(&env, Some("elsewhere".into()), Some("http://x/cb".into()))
            .expect("explicit redirect");
        assert_eq!(
            (other.client_secret, other.redirect_uri.as_str()),
            (None, "http://x/cb")
        );
        assert!(login_settings(&env, Some("elsewhere".into()), None).is_err());

        // Without a web client the main client is the default; the demo realm knows its URI.
        let env = env_of(&[
            ("MAIL_OIDC_ISSUER", "http://localhost:1"),
            ("MAIL_OIDC_CLIENT_ID", "mail-oidc"),
            ("MAIL_OIDC_CLIENT_SECRET", "s3cret"),
            ("MAIL_OIDC_WEB_CLIENT_ID", ""),
        ]);
        let main = login_settings(&env, None, None).expect("main client");
        assert_eq!(main.client_id, "mail-oidc");
        assert_eq!(main.redirect_uri, "http://localhost/mail-oidc/callback");
    }

    #[test]
    fn cli_usage() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let parse = |args: &[&str]| Cli::try_parse_from(["mail-oidc"].iter().chain(args));
        assert!(parse(&["login", "--cookie-jar", "j"]).is_ok(), "SSO form");
        assert!(parse(&["login", "--user", "u", "--cookie-jar", "j"]).is_err());
        assert!(parse(&["login", "--user", "u", "--password", "p"]).is_err());
        assert!(parse(&["revoke"]).is_err(), "a target is required");
        assert!(parse(&["revoke", "--user", "u", "--sub", "s"]).is_err());
        assert!(parse(&["revoke", "--user", "u", "--iss", "i"]).is_err());
        assert!(parse(&["revoke", "--sid", "s", "--iss", "i"]).is_ok());
        assert!(parse(&["logout", "--cookie-jar", "j"]).is_ok());
    }

    #[test]
    fn revoke_bodies() {
        let target = |user: Option<&str>, sub: Option<&str>, sid: Option<&str>| RevokeTarget {
            user: user.map(str::to_string),
            sub: sub.map(str::to_string),
            sid: sid.map(str::to_string),
        };
        assert_eq!(
            revoke_body(&target(Some("demo@example.com"), None, None), None),
            json!({"user": "demo@example.com"})
        );
        assert_eq!(
            revoke_body(&target(None, None, Some("s1")), Some("http://idp")),
            json!({"sid": "s1", "iss": "http://idp"})
        );
        assert_eq!(
            id_token_path(Path::new("d/jar.txt")),
            Path::new("d/jar.txt.id_token")
        );
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/up.env");
        write_env_file(&path, true, "A=1\n").expect("write");
        write_env_file(&path, true, "A=2\n").expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "A=2\n");
        let leftovers = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .count();
        assert_eq!(leftovers, 1, "no temp file left");
    }
}
