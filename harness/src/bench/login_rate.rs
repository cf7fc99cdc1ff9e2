//! `mail-oidc bench --imap HOST:PORT`: the IMAP login rate of any server (ours, Dovecot, ...)
//! with one tool and one token. Each login is a whole connection: connect (TLS or STARTTLS if
//! asked), `AUTHENTICATE` OAUTHBEARER or XOAUTH2 with the initial response, `LOGOUT`. Workers
//! loop for a fixed time at each concurrency level; logins/s and latency percentiles are printed,
//! never asserted. `--hold N` instead keeps N authenticated connections open and reports the
//! server's resident memory per connection (`--server-pid`).
//!
//! The client is a lean one of its own (no parser, one buffer, a shared TLS config) so that on a
//! small machine the load generator costs as little CPU as possible.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::clients::{oauthbearer_payload, xoauth2_payload};

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Security {
    /// Plain IMAP (port 143), no TLS.
    Plain,
    /// Plain IMAP, then `STARTTLS` before authenticating.
    Starttls,
    /// Implicit TLS (IMAPS, port 993).
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mechanism {
    Oauthbearer,
    Xoauth2,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Oauthbearer => "OAUTHBEARER",
            Mechanism::Xoauth2 => "XOAUTH2",
        }
    }
}

/// The options of `mail-oidc bench --imap`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImapBenchArgs {
    /// Measure the IMAP login rate of the server at HOST:PORT (any IMAP server) instead of
    /// starting a stack.
    #[arg(long, value_name = "HOST:PORT")]
    pub imap: Option<String>,
    /// Concurrent clients, one level after another.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,8,32",
        requires = "imap"
    )]
    pub concurrency: Vec<usize>,
    /// Measured seconds per level.
    #[arg(
        long,
        default_value_t = 10.0,
        value_name = "SECONDS",
        requires = "imap"
    )]
    pub duration: f64,
    /// Unmeasured seconds before each level.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS", requires = "imap")]
    pub warmup: f64,
    /// `plain`, `starttls` or `tls` (implicit).
    #[arg(long, value_enum, default_value = "plain", requires = "imap")]
    pub security: Security,
    /// PEM CA certificate(s) to trust for the server's TLS (the only roots trusted).
    #[arg(long, value_name = "FILE", requires = "imap")]
    pub tls_ca: Option<PathBuf>,
    /// Accept ANY server certificate (no verification at all): for a throwaway server only.
    #[arg(long, requires = "imap", conflicts_with = "tls_ca")]
    pub insecure_skip_tls_verify: bool,
    /// Name the certificate must carry (default: HOST).
    #[arg(long, value_name = "NAME", requires = "imap")]
    pub tls_name: Option<String>,
    #[arg(long, value_enum, default_value = "oauthbearer", requires = "imap")]
    pub mechanism: Mechanism,
    /// The user (authzid / XOAUTH2 user); default: MAIL_OIDC_USER of the env file.
    #[arg(long, requires = "imap")]
    pub user: Option<String>,
    /// The access token; default: --token-file, else MAIL_OIDC_ACCESS_TOKEN of the env file.
    #[arg(long, requires = "imap", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// File holding the access token (surrounding whitespace ignored).
    #[arg(long, value_name = "FILE", requires = "imap")]
    pub token_file: Option<PathBuf>,
    /// Environment file written by `mail-oidc up` (user, token, CA when not given).
    #[arg(long, value_name = "FILE", requires = "imap")]
    pub env_file: Option<PathBuf>,
    /// Instead of the login rate: open N authenticated connections, keep them idle, and
    /// report the server's memory per connection (with --server-pid).
    #[arg(long, value_name = "N", requires = "imap")]
    pub hold: Option<usize>,
    /// The server's process id, to read its resident memory (/proc/PID/status) around --hold.
    #[arg(long, value_name = "PID", requires = "hold")]
    pub server_pid: Option<u32>,
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct LoginRatePlan {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub tls: Option<TlsTrust>,
    pub tls_name: String,
    pub mechanism: Mechanism,
    pub user: String,
    pub token: String,
    pub concurrency: Vec<usize>,
    pub duration: Duration,
    pub warmup: Duration,
    pub hold: Option<usize>,
    pub server_pid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// PEM text of the CA(s).
    Ca(String),
    Insecure,
}

/// `host:port`, `[v6]:port`.
pub fn split_host_port(target: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = target
        .rsplit_once(':')
        .with_context(|| format!("{target:?} is not HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("{target:?} has no host");
    }
    let port = port
        .parse()
        .with_context(|| format!("{target:?}: port {port:?} is not a number"))?;
    Ok((host.to_string(), port))
}

fn seconds(name: &str, value: f64, min: f64) -> anyhow::Result<Duration> {
    if !value.is_finite() || value < min || value > 3600.0 {
        bail!("--{name} must be between {min} and 3600 seconds, not {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

impl ImapBenchArgs {
    /// Checks the options and gathers user, token and CA (from the env file where not given).
    /// `env` is the parsed env file, when there is one.
    pub fn plan(
        &self,
        env: Option<&std::collections::HashMap<String, String>>,
    ) -> anyhow::Result<LoginRatePlan> {
        let target = self
            .imap
            .as_deref()
            .context("--imap HOST:PORT is required")?;
        let (host, port) = split_host_port(target)?;
        if self.concurrency.is_empty() || self.concurrency.iter().any(|&c| c == 0 || c > 10_000) {
            bail!("--concurrency takes numbers from 1 to 10000, e.g. 1,8,32");
        }
        let from_env = |key: &str| env.and_then(|e| e.get(key)).cloned();
        let user = self
            .user
            .clone()
            .or_else(|| from_env("MAIL_OIDC_USER"))
            .context("give --user (or --env-file with MAIL_OIDC_USER)")?;
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => t.trim().to_string(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .with_context(|| format!("reading the token from {}", file.display()))?
                .trim()
                .to_string(),
            (None, None) => from_env("MAIL_OIDC_ACCESS_TOKEN").context(
                "give --token or --token-file (or --env-file with MAIL_OIDC_ACCESS_TOKEN)",
            )?,
        };
        if token.is_empty() {
            bail!("the token is empty");
        }
        let tls = match self.security {
            Security::Plain => None,
            Security::Starttls | Security::Tls if self.insecure_skip_tls_verify => {
                Some(TlsTrust::Insecure)
            }
            Security::Starttls | Security::Tls => {
                let ca = self
                    .tls_ca
                    .clone()
                    .or_else(|| from_env("MAIL_OIDC_CA_CERT").map(PathBuf::from))
                    .context(
                        "with --security starttls or tls give --tls-ca FILE \
                         (or --insecure-skip-tls-verify for a throwaway server)",
                    )?;
                Some(TlsTrust::Ca(read_ca(&ca)?))
            }
        };
        Ok(LoginRatePlan {
            tls_name: self.tls_name.clone().unwrap_or_else(|| host.clone()),
            host,
            port,
            security: self.security,
            tls,
            mechanism: self.mechanism,
            user,
            token,
            concurrency: self.concurrency.clone(),
            duration: seconds("duration", self.duration, 0.1)?,
            warmup: seconds("warmup", self.warmup, 0.0)?,
            hold: self.hold,
            server_pid: self.server_pid,
        })
    }
}

fn read_ca(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the CA {}", path.display()))
}

/// Figures of one concurrency level.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelReport {
    pub concurrency: usize,
    pub logins: usize,
    pub failures: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// The last failure's reason, if any.
    pub last_failure: Option<String>,
}

impl LevelReport {
    /// `latencies` of the successful logins, in any order.
    pub fn new(
        concurrency: usize,
        elapsed: Duration,
        mut latencies: Vec<Duration>,
        failures: usize,
        last_failure: Option<String>,
    ) -> Self {
        latencies.sort_unstable();
        Self {
            concurrency,
            logins: latencies.len(),
            failures,
            elapsed,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
            last_failure,
        }
    }

    pub fn per_second(&self) -> f64 {
        self.logins as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Nearest-rank percentile of sorted samples (zero for none).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl std::fmt::Display for LevelReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "concurrency {:>5}: {:>9.1} logins/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} logins in {:.1} s, {} failed)",
            self.concurrency,
            self.per_second(),
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.logins,
            self.elapsed.as_secs_f64(),
            self.failures
        )?;
        if let Some(why) = &self.last_failure {
            write!(f, "; last failure: {why}")?;
        }
        Ok(())
    }
}

/// Connection details shared by every worker.
struct Target {
    addr: String,
    security: Security,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// `TAG AUTHENTICATE MECH <base64>` without the tag.
    authenticate: String,
    /// What to answer an error challenge with (RFC 7628 dummy `AQ==`; XOAUTH2: empty).
    error_reply: &'static str,
}

/// Deadline of one whole login (connect to LOGOUT) and of opening one held connection.
const LOGIN_DEADLINE: Duration = Duration::from_secs(30);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Stream = BufReader<Box<dyn Io>>;

impl Target {
    fn new(plan: &LoginRatePlan) -> anyhow::Result<Self> {
        let tls = match &plan.tls {
            None => None,
            Some(trust) => {
                let config = match trust {
                    TlsTrust::Ca(pem) => crate::clients::tls::client_config(pem)?,
                    TlsTrust::Insecure => insecure::config(),
                };
                let name = ServerName::try_from(plan.tls_name.clone())
                    .with_context(|| format!("TLS name {:?}", plan.tls_name))?;
                Some((TlsConnector::from(config), name))
            }
        };
        let payload = match plan.mechanism {
            Mechanism::Oauthbearer => {
                oauthbearer_payload(Some(&plan.user), &plan.host, plan.port, &plan.token)
            }
            Mechanism::Xoauth2 => xoauth2_payload(&plan.user, &plan.token),
        };
        Ok(Self {
            addr: format!("{}:{}", plan.host, plan.port),
            security: plan.security,
            tls,
            authenticate: format!(
                "AUTHENTICATE {} {}",
                plan.mechanism.name(),
                STANDARD.encode(payload)
            ),
            error_reply: match plan.mechanism {
                Mechanism::Oauthbearer => "AQ==",
                Mechanism::Xoauth2 => "",
            },
        })
    }

    async fn handshake<S: Io + 'static>(&self, stream: S) -> anyhow::Result<Stream> {
        let (connector, name) = self.tls.as_ref().context("TLS is not configured")?;
        let tls = connector
            .connect(name.clone(), stream)
            .await
            .context("TLS handshake")?;
        Ok(BufReader::new(Box::new(tls)))
    }

    /// Connected, greeted, secured as asked and authenticated.
    async fn open(&self) -> anyhow::Result<Stream> {
        let tcp = TcpStream::connect(&self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        let mut stream = match self.security {
            Security::Tls => self.handshake(tcp).await?,
            Security::Plain => BufReader::new(Box::new(tcp) as Box<dyn Io>),
            Security::Starttls => {
                let mut plain = BufReader::new(tcp);
                expect_greeting(&mut plain).await?;
                plain.get_mut().write_all(b"s STARTTLS\r\n").await?;
                let reply = tagged(&mut plain, "s", "").await?;
                if !reply.starts_with("OK") {
                    bail!("STARTTLS refused: {reply}");
                }
                // Anything buffered now came in plaintext after OK: never carry it into TLS.
                if !plain.buffer().is_empty() {
                    bail!("the server sent data after its STARTTLS OK");
                }
                self.handshake(plain.into_inner()).await?
            }
        };
        if self.security != Security::Starttls {
            expect_greeting(&mut stream).await?;
        }
        let command = format!("a {}\r\n", self.authenticate);
        stream.get_mut().write_all(command.as_bytes()).await?;
        let reply = tagged(&mut stream, "a", self.error_reply).await?;
        if !reply.starts_with("OK") {
            bail!("authentication refused: a {reply}");
        }
        Ok(stream)
    }

    /// One whole login: [`Target::open`], then `LOGOUT`.
    async fn login(&self) -> anyhow::Result<()> {
        let mut stream = self.open().await?;
        stream.get_mut().write_all(b"z LOGOUT\r\n").await?;
        // The server may close right after `* BYE`: its close or the tagged reply ends the login.
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 || line.starts_with("z ") {
                return Ok(());
            }
        }
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    stream: &mut R,
    line: &mut String,
) -> anyhow::Result<()> {
    line.clear();
    if stream.read_line(line).await? == 0 {
        bail!("the server closed the connection");
    }
    Ok(())
}

async fn expect_greeting<R: tokio::io::AsyncBufRead + Unpin>(stream: &mut R) -> anyhow::Result<()> {
    let mut line = String::new();
    read_line(stream, &mut line).await?;
    if !line.starts_with("* OK") {
        bail!("unexpected greeting: {}", line.trim_end());
    }
    Ok(())
}

/// Reads until the line tagged `tag` and returns what follows the tag. A continuation
/// request (an error challenge) is answered with `challenge_reply`.
async fn tagged<R: tokio::io::AsyncBufRead + AsyncWrite + Unpin>(
    stream: &mut R,
    tag: &str,
    challenge_reply: &str,
) -> anyhow::Result<String> {
    let mut line = String::new();
    loop {
        read_line(stream, &mut line).await?;
        if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
            return Ok(rest.trim_end().to_string());
        }
        if line.starts_with('+') {
            stream
                .write_all(format!("{challenge_reply}\r\n").as_bytes())
                .await?;
        }
    }
}

/// Raises this process's open-file limit to its hard limit (holding many connections).
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Runs `concurrency` workers looping on logins until `until`.
async fn workers(
    target: &Arc<Target>,
    concurrency: usize,
    until: Instant,
) -> (Vec<Duration>, usize, Option<String>) {
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0;
                let mut last = None;
                while Instant::now() < until {
                    let started = Instant::now();
                    match tokio::time::timeout(LOGIN_DEADLINE, target.login()).await {
                        Ok(Ok(())) => latencies.push(started.elapsed()),
                        Ok(Err(e)) => {
                            failures += 1;
                            last = Some(format!("{e:#}"));
                        }
                        Err(_) => {
                            failures += 1;
                            last = Some(format!("no answer within {LOGIN_DEADLINE:?}"));
                        }
                    }
                }
                (latencies, failures, last)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut failures = 0;
    let mut last = None;
    for task in tasks {
        match task.await {
            Ok((l, f, why)) => {
                all.extend(l);
                failures += f;
                last = why.or(last);
            }
            Err(e) => {
                failures += 1;
                last = Some(format!("worker: {e}"));
            }
        }
    }
    (all, failures, last)
}

/// The login rate at each level of `plan.concurrency`.
pub async fn login_rate(plan: &LoginRatePlan) -> anyhow::Result<Vec<LevelReport>> {
    let target = Arc::new(Target::new(plan)?);
    // One login first: a wrong token or address fails here, with the server's words.
    tokio::time::timeout(LOGIN_DEADLINE, target.login())
        .await
        .context("first login: no answer")?
        .context("first login")?;
    if plan.concurrency.iter().any(|&c| c > 500) {
        raise_open_files_limit();
    }
    let mut reports = Vec::new();
    for &concurrency in &plan.concurrency {
        if !plan.warmup.is_zero() {
            workers(&target, concurrency, Instant::now() + plan.warmup).await;
        }
        let started = Instant::now();
        let (latencies, failures, last) =
            workers(&target, concurrency, started + plan.duration).await;
        // Until the last login ended: the tail past the deadline is part of the work.
        let report = LevelReport::new(concurrency, started.elapsed(), latencies, failures, last);
        tracing::debug!(%report, "level done");
        reports.push(report);
    }
    Ok(reports)
}

/// Memory of `--hold`.
#[derive(Debug, Clone)]
pub struct HoldReport {
    pub connections: usize,
    pub open_took: Duration,
    /// Server VmRSS before and after, KiB (with `--server-pid`).
    pub rss_kib: Option<(u64, u64)>,
}

impl std::fmt::Display for HoldReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} idle authenticated connections opened in {:.1} s",
            self.connections,
            self.open_took.as_secs_f64()
        )?;
        if let Some((before, after)) = self.rss_kib {
            let per = after.saturating_sub(before) as f64 / self.connections.max(1) as f64;
            write!(
                f,
                "; server RSS {before} KiB -> {after} KiB: {per:.1} KiB per connection"
            )?;
        }
        Ok(())
    }
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Opens `n` authenticated connections (64 at a time), reads the server's memory, closes them.
pub async fn hold(plan: &LoginRatePlan, n: usize) -> anyhow::Result<HoldReport> {
    let target = Arc::new(Target::new(plan)?);
    let limit = raise_open_files_limit();
    if (limit as usize) < n + 64 {
        bail!("open-file limit {limit} is too low for {n} connections (raise `ulimit -n`)");
    }
    let before = plan.server_pid.and_then(rss_kib);
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(64));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let target = target.clone();
            let semaphore = semaphore.clone();
            tokio::spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                tokio::time::timeout(LOGIN_DEADLINE, target.open())
                    .await
                    .context("no answer")?
            })
        })
        .collect();
    let mut held = Vec::with_capacity(n);
    for task in tasks {
        held.push(task.await.context("opening task")??);
    }
    let open_took = started.elapsed();
    let after = plan.server_pid.and_then(rss_kib);
    let report = HoldReport {
        connections: held.len(),
        open_took,
        rss_kib: before.zip(after),
    };
    drop(held);
    Ok(report)
}

/// `--insecure-skip-tls-verify`: a verifier that accepts every certificate.
pub(crate) mod insecure {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    struct AcceptAnything;

    impl ServerCertVerifier for AcceptAnything {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    pub fn config() -> Arc<rustls::ClientConfig> {
        mail_oidc_server::tls::install_crypto_provider();
        Arc::new(
            rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything))
                .with_no_client_auth(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ImapBenchArgs,
    }

    fn parse(args: &[&str]) -> Result<ImapBenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.args)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_and_lists_parse() {
        let a = parse(&["--imap", "127.0.0.1:143", "--user", "u", "--token", "t"]).expect("parses");
        let plan = a.plan(None).expect("plan");
        assert_eq!(plan.concurrency, vec![1, 8, 32]);
        assert_eq!(plan.duration, Duration::from_secs(10));
        assert_eq!(plan.security, Security::Plain);
        assert_eq!(plan.mechanism, Mechanism::Oauthbearer);
        assert_eq!((plan.host.as_str(), plan.port), ("127.0.0.1", 143));
        assert_eq!(plan.tls, None);

        let a = parse(&[
            "--imap",
            "[::1]:993",
            "--concurrency",
            "2,4",
            "--duration",
            "0.5",
            "--security",
            "tls",
            "--insecure-skip-tls-verify",
            "--mechanism",
            "xoauth2",
            "--user",
            "u",
            "--token",
            " t \n",
        ])
        .expect("parses");
        let plan = a.plan(None).expect("plan");
        assert_eq!(plan.concurrency, vec![2, 4]);
        assert_eq!(plan.duration, ms(500));
        assert_eq!((plan.host.as_str(), plan.port), ("::1", 993));
        assert_eq!(plan.tls, Some(TlsTrust::Insecure));
        assert_eq!(plan.mechanism, Mechanism::Xoauth2);
        assert_eq!(plan.token, "t");
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        // Options of the login-rate run only make sense with --imap.
        assert!(parse(&["--concurrency", "4"]).is_err());
        assert!(parse(&["--imap", "h:1", "--token", "a", "--token-file", "f"]).is_err());
        assert!(
            parse(&[
                "--imap",
                "h:1",
                "--tls-ca",
                "f",
                "--insecure-skip-tls-verify"
            ])
            .is_err()
        );
        let refused = |args: &[&str], why: &str| {
            let err = parse(args)
                .expect("parses")
                .plan(None)
                .expect_err("refused");
            assert!(format!("{err:#}").contains(why), "{args:?}: {err:#}");
        };
        refused(
            &["--imap", "nohost", "--user", "u", "--token", "t"],
            "HOST:PORT",
        );
        refused(
            &["--imap", "h:x", "--user", "u", "--token", "t"],
            "not a number",
        );
        refused(&["--imap", "h:1", "--token", "t"], "--user");
        refused(&["--imap", "h:1", "--user", "u"], "--token");
        refused(
            &[
                "--imap",
                "h:1",
                "--user",
                "u",
                "--token",
                "t",
                "--concurrency",
                "0",
            ],
            "--concurrency",
        );
        refused(
            &[
                "--imap",
                "h:1",
                "--user",
                "u",
                "--token",
                "t",
                "--duration",
                "0",
            ],
            "--duration",
        );
        // TLS without a trust anchor is refused, never silently unverified.
        refused(
            &[
                "--imap",
                "h:1",
                "--user",
                "u",
                "--token",
                "t",
                "--security",
                "starttls",
            ],
            "--tls-ca",
        );
    }

    #[test]
    fn user_token_and_ca_come_from_the_env_file_when_not_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "PEM").expect("write");
        let env: HashMap<String, String> = [
            ("MAIL_OIDC_USER", "demo@example.com"),
            ("MAIL_OIDC_ACCESS_TOKEN", "env-token"),
            ("MAIL_OIDC_CA_CERT", ca.to_str().expect("utf-8")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let plan = parse(&["--imap", "h:1", "--security", "starttls"])
            .expect("parses")
            .plan(Some(&env))
            .expect("plan");
        assert_eq!(plan.user, "demo@example.com");
        assert_eq!(plan.token, "env-token");
        assert_eq!(plan.tls, Some(TlsTrust::Ca("PEM".into())));
        // Given options win; a token file is read and trimmed.
        let file = dir.path().join("token");
        std::fs::write(&file, "file-token\n").expect("write");
        let plan = parse(&[
            "--imap",
            "h:1",
            "--user",
            "other",
            "--token-file",
            file.to_str().expect("utf-8"),
        ])
        .expect("parses")
        .plan(Some(&env))
        .expect("plan");
        assert_eq!(
            (plan.user.as_str(), plan.token.as_str()),
            ("other", "file-token")
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&samples, 0.5), ms(50));
        assert_eq!(percentile(&samples, 0.99), ms(99));
        assert_eq!(percentile(&samples, 1.0), ms(100));
        assert_eq!(percentile(&[ms(7)], 0.99), ms(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn level_report_counts_and_rates() {
        let latencies = vec![ms(30), ms(10), ms(20), ms(40)];
        let r = LevelReport::new(8, Duration::from_secs(2), latencies, 1, Some("NO".into()));
        assert_eq!(r.logins, 4);
        assert_eq!(r.failures, 1);
        assert_eq!(r.per_second(), 2.0);
        assert_eq!((r.p50, r.p99, r.max), (ms(20), ms(40), ms(40)));
        let line = r.to_string();
        assert!(line.contains("concurrency     8"), "{line}");
        assert!(line.contains("2.0 logins/s"), "{line}");
        assert!(line.contains("last failure: NO"), "{line}");
    }
}
