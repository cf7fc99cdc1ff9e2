//! Debian's `sieve-connect` (a real ManageSieve client) as a user runs it: the command lines
//! `mail-oidc up` prints are the ones the end-to-end test runs.
//!
//! What it needs: `--nosrv` (no DNS SRV lookup for the server name), `--server 127.0.0.1` with
//! `--tlshostname localhost` (the stack listens on IPv4 loopback, its certificate names
//! `localhost`), `--tlscafile` (the stack's CA; verification stays on, so STARTTLS is
//! mandatory), `--authmech PLAIN` and the password on standard input (`--passwordfd 0`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;

pub const BINARY: &str = "sieve-connect";

/// Who logs in where.
#[derive(Debug, Clone)]
pub struct SieveConnect {
    pub port: u16,
    pub ca_file: PathBuf,
    pub user: String,
    pub password: String,
}

/// What one run printed.
#[derive(Debug, Clone)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl SieveConnect {
    /// Options every run shares (connection, TLS, login).
    fn common(&self) -> Vec<String> {
        [
            "--nosrv",
            "--server",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--tlshostname",
            "localhost",
            "--tlscafile",
            &self.ca_file.to_string_lossy(),
            "--user",
            &self.user,
            "--authmech",
            "PLAIN",
            "--passwordfd",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Uploads `local` as script `remote`.
    pub fn upload(&self, local: &Path, remote: &str) -> Vec<String> {
        let mut args = self.common();
        args.extend([
            "--upload".into(),
            "--localsieve".into(),
            local.to_string_lossy().into_owned(),
            "--remotesieve".into(),
            remote.into(),
        ]);
        args
    }

    /// Makes `remote` the active script.
    pub fn activate(&self, remote: &str) -> Vec<String> {
        let mut args = self.common();
        args.extend(["--activate".into(), "--remotesieve".into(), remote.into()]);
        args
    }

    /// Lists the scripts (`"name" ACTIVE` lines).
    pub fn list(&self) -> Vec<String> {
        let mut args = self.common();
        args.push("--list".into());
        args
    }

    /// The shell line for `args`: the password piped in on standard input.
    pub fn shell_line(&self, args: &[String]) -> String {
        let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        format!(
            "printf '%s' {} | {BINARY} {}",
            shell_quote(&self.password),
            args.join(" ")
        )
    }

    /// Runs `sieve-connect` with `args` in `dir`, the password on standard input, within
    /// `limit` (killed after it).
    pub async fn run(&self, args: &[String], dir: &Path, limit: Duration) -> anyhow::Result<Run> {
        let mut child = tokio::process::Command::new(BINARY)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {BINARY} (apt-get install sieve-connect)"))?;
        let mut stdin = child.stdin.take().context("stdin piped")?;
        stdin.write_all(self.password.as_bytes()).await?;
        drop(stdin);
        let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(out) => out?,
            Err(_) => bail!("{BINARY} did not finish within {limit:?}"),
        };
        Ok(Run {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_lines_quote_what_needs_it() {
        let sc = SieveConnect {
            port: 4190,
            ca_file: "/tmp/ca dir/ca.pem".into(),
            user: "demo@example.com".into(),
            password: "it's".into(),
        };
        assert_eq!(
            sc.shell_line(&sc.activate("filter")),
            "printf '%s' 'it'\\''s' | sieve-connect --nosrv --server 127.0.0.1 --port 4190 \
             --tlshostname localhost --tlscafile '/tmp/ca dir/ca.pem' --user demo@example.com \
             --authmech PLAIN --passwordfd 0 --activate --remotesieve filter"
        );
    }
}
