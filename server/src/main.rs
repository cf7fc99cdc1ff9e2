//! `mail-oidc-server --config FILE [--ready-file FILE] [--check]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mail_oidc_server::config::Config;
use mail_oidc_server::server;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "mail-oidc-server",
    version,
    about = "Mail server with OpenID Connect logins"
)]
struct Args {
    /// The TOML configuration file (every key is documented in README.md).
    #[arg(long, short)]
    config: PathBuf,
    /// Once every listener is bound, write their addresses as JSON here (atomically).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Only load and validate the configuration, then exit.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args.config) {
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
        .init();
    if args.check {
        if let Err(e) = server::check(&config) {
            eprintln!("mail-oidc-server: {e}");
            return ExitCode::from(2);
        }
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    let running = match server::start(config).await {
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
    running.wait().await;
    ExitCode::SUCCESS
}

fn write_atomically(path: &std::path::Path, addrs: &server::BoundAddrs) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(addrs)?)?;
    std::fs::rename(tmp, path)
}
