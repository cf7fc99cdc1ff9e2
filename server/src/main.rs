//! `mail-oidc-server --config FILE [--ready-file FILE] [--check]`
//! `mail-oidc-server scram-secret [--iterations N] < password`

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    mail_oidc_server::cli::main(|services| services).await
}
