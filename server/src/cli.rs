//! The command line of `mail-oidc-server`, in the library so a binary that adds its own SASL
//! mechanisms (see `server/examples/`) offers exactly the same one:
//! `--config FILE [--ready-file FILE] [--check]`, `scram-secret [--iterations N] < password`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::auth::directory::ScramSecret;
use crate::config::Config;
use crate::server::{self, Services};

#[derive(Parser)]
#[command(
    name = "mail-oidc-server",
    version,
    about = "Mail server with OpenID Connect logins",
    // `--config` is required to run the server, not to use a tool subcommand.
    subcommand_negates_reqs = true
)]
struct Args {
    /// The TOML configuration file (every key is documented in README.md).
    #[arg(long, short, required = true)]
    config: Option<PathBuf>,
    /// Once every listener is bound, write their addresses as JSON here (atomically).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Only load and validate the configuration, then exit.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Tool>,
}

#[derive(Subcommand)]
enum Tool {
    /// Reads a password (first line of stdin) and prints its RFC 5803 SCRAM-SHA-256 secret,
    /// for the static directory's `scram_sha256` field.
    ScramSecret {
        /// PBKDF2 iterations; RFC 7677 asks for at least 4096.
        #[arg(long, default_value_t = ScramSecret::MIN_ITERATIONS,
              value_parser = clap::value_parser!(u32).range(i64::from(ScramSecret::MIN_ITERATIONS)..))]
        iterations: u32,
    },
}

/// Runs the server's command line; `customize` may add to the services (extra SASL
/// mechanisms) before `--check` or the start.
pub async fn main(customize: impl FnOnce(Services) -> Services) -> ExitCode {
    let args = Args::parse();
    if let Some(Tool::ScramSecret { iterations }) = args.command {
        return scram_secret(iterations);
    }
    let Some(config_path) = args.config else {
        // clap already refuses this; kept so a change there cannot start a server without one.
        eprintln!("mail-oidc-server: --config is required");
        return ExitCode::from(2);
    };
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mail-oidc-server: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.server.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| crate::log_escape::EscapingWriter(std::io::stdout()))
        .init();
    let services = match server::build_services(&config) {
        Ok(services) => customize(services),
        Err(e) => {
            eprintln!("mail-oidc-server: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        if let Err(e) = server::check_with(&config, &services) {
            eprintln!("mail-oidc-server: {e}");
            return ExitCode::from(2);
        }
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    let running = match server::start_with(config, services).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mail-oidc-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.ready_file
        && let Err(e) = write_atomically(path, &running.addrs)
    {
        eprintln!(
            "mail-oidc-server: cannot write ready file {}: {e}",
            path.display()
        );
        return ExitCode::from(1);
    }
    // SIGTERM or Ctrl-C: every session gets its goodbye, then the grace period.
    running.serve_until(stop_signal()).await;
    ExitCode::SUCCESS
}

fn write_atomically(path: &std::path::Path, addrs: &server::BoundAddrs) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(addrs)?)?;
    std::fs::rename(tmp, path)
}

/// `scram-secret`: the password comes from stdin so it never shows in `ps` or shell history.
fn scram_secret(iterations: u32) -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (echoed): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if let Err(e) = stdin.lock().read_line(&mut line) {
        eprintln!("mail-oidc-server: cannot read the password from stdin: {e}");
        return ExitCode::from(2);
    }
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.is_empty() {
        eprintln!("mail-oidc-server: empty password on stdin");
        return ExitCode::from(2);
    }
    println!("{}", ScramSecret::generate(password, iterations));
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = term => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
