//! `mail-oidc bench --imap` against an in-process server: a brief run at two levels with each
//! mechanism, a refused token and `--hold`; `bench --validation` once. Only counts are asserted,
//! never timings.

use std::path::Path;
use std::time::Duration;

use mail_oidc_harness::bench::login_rate::{
    ImapBenchArgs, LoginRatePlan, Mechanism, Security, hold, login_rate,
};
use mail_oidc_harness::bench::validation::{loopback_issuer, validation_cost};
use mail_oidc_server::config::Config;
use mail_oidc_server::server::{self, RunningServer};

const USER: &str = "alice@example.com";

/// A server with plain IMAP, OAUTHBEARER and XOAUTH2 allowed before TLS, keys from `jwks`.
async fn start_server(dir: &Path, jwks: std::net::SocketAddr) -> RunningServer {
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        format!("[[user]]\nname = \"{USER}\"\npassword = \"pw\"\n"),
    )
    .expect("users");
    let text = format!(
        "[directory]\nkind = \"static\"\npath = \"{}\"\n\
         [imap]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_auth = true\n\
         [oidc]\nissuer = \"http://{jwks}\"\njwks_url = \"http://{jwks}/jwks\"\naudience = [\"mail\"]\n",
        users.display()
    );
    let config = Config::parse(&text, &dir.join("server.toml")).expect("config");
    server::start(config).await.expect("server starts")
}

fn plan(addr: std::net::SocketAddr, mechanism: Mechanism, token: &str) -> LoginRatePlan {
    LoginRatePlan {
        host: addr.ip().to_string(),
        port: addr.port(),
        security: Security::Plain,
        tls: None,
        tls_name: "localhost".into(),
        mechanism,
        user: USER.into(),
        token: token.into(),
        concurrency: vec![1, 2],
        duration: Duration::from_millis(300),
        warmup: Duration::ZERO,
        hold: None,
        server_pid: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_imap_measures_logins_of_an_in_process_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (forge, jwks) = loopback_issuer().await.expect("issuer");
    let server = start_server(dir.path(), jwks).await;
    let imap = server.addrs.imap.expect("IMAP listener");
    let token = forge.mint(&forge.claims_for(USER, "sub-alice"));

    for mechanism in [Mechanism::Oauthbearer, Mechanism::Xoauth2] {
        let levels = login_rate(&plan(imap, mechanism, &token))
            .await
            .expect("bench runs");
        assert_eq!(
            levels.iter().map(|l| l.concurrency).collect::<Vec<_>>(),
            vec![1, 2]
        );
        for level in &levels {
            assert!(level.logins > 0, "{mechanism:?}: {level}");
            assert_eq!(level.failures, 0, "{mechanism:?}: {level}");
            assert!(level.p50 <= level.p99 && level.p99 <= level.max, "{level}");
        }
    }

    // A token the server refuses stops the run at the first login, with the server's reply.
    let wrong = forge.mint(&forge.claims_for("nobody@example.com", "sub-nobody"));
    let err = login_rate(&plan(imap, Mechanism::Oauthbearer, &wrong))
        .await
        .expect_err("refused");
    assert!(
        format!("{err:#}").contains("NO [AUTHENTICATIONFAILED]"),
        "{err:#}"
    );

    // --hold: the connections stay authenticated until dropped; the RSS is read from /proc.
    let mut held = plan(imap, Mechanism::Oauthbearer, &token);
    held.server_pid = Some(std::process::id());
    let report = hold(&held, 20).await.expect("hold");
    assert_eq!(report.connections, 20);
    assert!(
        report
            .rss_kib
            .is_some_and(|(before, after)| before > 0 && after > 0)
    );
    assert!(
        report.to_string().contains("KiB per connection"),
        "{report}"
    );

    // The CLI options make the same plan.
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ImapBenchArgs,
    }
    let cli = Cli::try_parse_from([
        "bench",
        "--imap",
        &imap.to_string(),
        "--user",
        USER,
        "--token",
        &token,
        "--concurrency",
        "1",
        "--duration",
        "0.2",
        "--warmup",
        "0",
    ])
    .expect("parses");
    let levels = login_rate(&cli.args.plan(None).expect("plan"))
        .await
        .expect("bench runs");
    assert!(
        levels[0].logins > 0 && levels[0].failures == 0,
        "{}",
        levels[0]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bench_validation_runs_the_server_validator_cached_and_uncached() {
    let cost = validation_cost(3).await.expect("validation bench runs");
    assert_eq!(cost.iterations, 3);
    let text = cost.to_string();
    for line in ["token cache off", "token cache on", "ring", "rust_crypto"] {
        assert!(text.contains(line), "{text}");
    }
}
