//! `mail-oidc bench`: measures the stack and the server on this machine, in one run, with
//! bounded loops. Numbers are printed, never asserted (timings do not belong in tests).

pub mod login_rate;
pub mod validation;

use std::time::{Duration, Instant};

use anyhow::Context;
use lettre::transport::smtp::authentication::Mechanism;

use crate::clients::imap::ImapClient;
use crate::clients::jmap::{Auth, JmapClient};
use crate::clients::smtp::{SmtpClient, submit_with_lettre};
use crate::idp::IdpClient;
use crate::stack::Stack;

/// Summary of one measured operation.
#[derive(Debug, Clone)]
pub struct Stats {
    pub name: String,
    pub runs: usize,
    pub median: Duration,
    pub p90: Duration,
    pub mean: Duration,
}

impl Stats {
    pub fn from_samples(name: &str, mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let runs = samples.len();
        let at = |q: f64| samples[((runs as f64 - 1.0) * q).round() as usize];
        let total: Duration = samples.iter().sum();
        Self {
            name: name.to_string(),
            runs,
            median: at(0.5),
            p90: at(0.9),
            mean: total / runs.max(1) as u32,
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<44} runs {:>4}  median {:>8.2} ms  p90 {:>8.2} ms  mean {:>8.2} ms",
            self.name,
            self.runs,
            ms(self.median),
            ms(self.p90),
            ms(self.mean)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Names of the two JMAP figures (their requests/s are derived from them).
const JMAP_DIRECT: &str = "JMAP Mailbox/get direct (Bearer)";
const JMAP_GATEWAY: &str = "JMAP Mailbox/get through the gateway";

/// Sessions of one IdP session the logout-latency runs end.
pub const LOGOUT_IMAP_SESSIONS: usize = 100;
pub const LOGOUT_WEBSOCKETS: usize = 10;
/// Logout-latency runs (at least 20, for a p99 worth the name).
pub const LOGOUT_RUNS: usize = 20;
/// Concurrent clients in the login-throughput runs.
pub const LOGIN_WORKERS: usize = 4;

/// Percentiles of the logout latency: IdP logout request sent -> the last of
/// [`LOGOUT_IMAP_SESSIONS`] IMAP IDLE sessions and [`LOGOUT_WEBSOCKETS`] WebSockets closed.
#[derive(Debug, Clone)]
pub struct LogoutLatency {
    pub runs: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// IMAP OAUTHBEARER logins per second with the deny-list in Redis (the check on every login
/// is a round trip) and in memory (an in-process lookup: the cost of no store at all).
#[derive(Debug, Clone)]
pub struct LoginThroughput {
    pub with_redis: f64,
    pub in_memory: f64,
}

/// Keycloak measured beside LemonLDAP::NG.
#[derive(Debug, Clone)]
pub struct KeycloakFigures {
    /// JVM start to `/health/ready` with a new database (first start of an instance).
    pub first_start: Duration,
    /// The same instance started again (its database exists).
    pub warm_start: Duration,
    pub password_grant: Stats,
}

/// Everything one bench run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub stack_start: Duration,
    pub keycloak: Option<KeycloakFigures>,
    pub logout: Option<LogoutLatency>,
    pub logins: Option<LoginThroughput>,
    /// Median JMAP call through the gateway divided by the median direct call.
    pub gateway_ratio: Option<f64>,
    pub stats: Vec<Stats>,
    /// Resident memory of the server process after the run, in KiB.
    pub server_rss_kib: Option<u64>,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "stack start (slapd, redis, LemonLDAP::NG, server): {:.0} ms",
            ms(self.stack_start)
        )?;
        for s in &self.stats {
            writeln!(f, "{s}")?;
        }
        if let Some(ratio) = self.gateway_ratio {
            writeln!(
                f,
                "JMAP through the gateway / direct (medians): {ratio:.2}x"
            )?;
        }
        let per_second = |name: &str| {
            self.stats
                .iter()
                .find(|s| s.name == name)
                .map(|s| 1.0 / s.mean.as_secs_f64().max(1e-9))
        };
        if let (Some(direct), Some(gateway)) = (per_second(JMAP_DIRECT), per_second(JMAP_GATEWAY)) {
            writeln!(
                f,
                "JMAP requests/s (one client, 1 / mean): direct {direct:.0}, through the gateway {gateway:.0}"
            )?;
        }
        if let Some(k) = &self.keycloak {
            writeln!(
                f,
                "Keycloak {} start (optimized build): first {:.1} s, warm {:.1} s",
                crate::stack::keycloak::VERSION,
                k.first_start.as_secs_f64(),
                k.warm_start.as_secs_f64()
            )?;
            writeln!(f, "{}", k.password_grant)?;
        }
        if let Some(l) = &self.logout {
            writeln!(
                f,
                "logout latency ({LOGOUT_IMAP_SESSIONS} IMAP IDLE + {LOGOUT_WEBSOCKETS} WebSockets of one sid, {} runs): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                l.runs,
                ms(l.p50),
                ms(l.p99),
                ms(l.max)
            )?;
        }
        if let Some(t) = &self.logins {
            writeln!(
                f,
                "IMAPS OAUTHBEARER logins/s ({LOGIN_WORKERS} clients): deny-list in Redis {:.0}, in memory {:.0} ({:+.1}%)",
                t.with_redis,
                t.in_memory,
                (t.with_redis / t.in_memory.max(1e-9) - 1.0) * 100.0
            )?;
        }
        if let Some(rss) = self.server_rss_kib {
            writeln!(f, "server RSS after the run: {} KiB", rss)?;
        }
        Ok(())
    }
}

async fn measure<F, Fut>(name: &str, runs: usize, mut op: F) -> anyhow::Result<Stats>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // One warm-up run: the first login also fetches discovery and the JWKS.
    op().await.with_context(|| format!("{name} (warm-up)"))?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        op().await.with_context(|| name.to_string())?;
        samples.push(start.elapsed());
    }
    Ok(Stats::from_samples(name, samples))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts a stack and measures logins and submissions `runs` times each.
pub async fn run(runs: usize) -> anyhow::Result<BenchReport> {
    let runs = runs.clamp(1, 10_000);
    let stack = Stack::builder().start().await?;
    let ep = stack.endpoints().clone();
    let user = stack.create_user("bench").await?;
    let idp = IdpClient::new(stack.idp_settings("mail-oidc"))?;
    let token = idp
        .password_grant(&user.mail, &user.password)
        .await?
        .access_token;
    let mut stats = Vec::new();

    stats.push(
        measure("IdP password grant (LemonLDAP::NG)", runs, || async {
            idp.password_grant(&user.mail, &user.password)
                .await
                .map(|_| ())
        })
        .await?,
    );
    stats.push(
        measure(
            "IMAPS connect + OAUTHBEARER (cached JWKS)",
            runs,
            || async {
                let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem).await?;
                let out = imap.oauthbearer(&user.mail, &token, true).await?;
                anyhow::ensure!(out.reply.tagged.starts_with("OK"), "login failed: {out:?}");
                Ok(())
            },
        )
        .await?,
    );
    stats.push(
        measure("IMAPS connect + PLAIN (LDAP bind)", runs, || async {
            let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem).await?;
            let reply = imap.plain(&user.mail, &user.password, true).await?;
            anyhow::ensure!(reply.tagged.starts_with("OK"), "login failed: {reply:?}");
            Ok(())
        })
        .await?,
    );
    let message = format!(
        "From: <{m}>\r\nTo: <{m}>\r\nSubject: bench\r\n\r\n{body}\r\n",
        m = user.mail,
        body = "0123456789".repeat(100)
    );
    stats.push(
        measure(
            "SMTP STARTTLS + XOAUTH2 + 1 KB message (lettre)",
            runs,
            || async {
                submit_with_lettre(
                    ep.submission,
                    &ep.ca_pem,
                    &user.mail,
                    &token,
                    Mechanism::Xoauth2,
                    &user.mail,
                    &[&user.mail],
                    message.as_bytes(),
                )
                .await
            },
        )
        .await?,
    );
    stats.push(
        measure(
            "SMTPS + XOAUTH2 + 1 KB message (raw client)",
            runs,
            || async {
                let mut smtp = SmtpClient::connect_tls(ep.submissions, &ep.ca_pem).await?;
                smtp.ehlo("bench.test").await?;
                let out = smtp.xoauth2(&user.mail, &token, true).await?;
                anyhow::ensure!(out.reply.code == 235, "auth failed: {out:?}");
                let reply = smtp
                    .send_mail(&user.mail, &[&user.mail], message.as_bytes())
                    .await?;
                anyhow::ensure!(reply.code == 250, "send failed: {reply:?}");
                smtp.quit().await?;
                Ok(())
            },
        )
        .await?,
    );
    // The same JMAP call direct (Bearer, validated by the server) and through the gateway
    // (validated by mod_oauth2, X-User to the server), on fresh sessions each run.
    let direct = JmapClient::new(ep.jmap_session.clone(), Auth::Bearer(token.clone()), &[])?;
    let via_gateway = JmapClient::new(
        format!("{}/oidc/.well-known/jmap", ep.gateway),
        Auth::Bearer(token.clone()),
        &[],
    )?
    .with_ca(&ep.ca_pem)?;
    let direct_api = direct.session().await?;
    let gateway_api = via_gateway.session().await?;
    let calls = |account: &str| serde_json::json!([["Mailbox/get", {"accountId": account, "ids": null}, "0"]]);
    let direct_stats = measure(JMAP_DIRECT, runs, || async {
        direct
            .call_at(&direct_api.api_url, calls(&direct_api.account_id))
            .await?;
        Ok(())
    })
    .await?;
    let gateway_stats = measure(JMAP_GATEWAY, runs, || async {
        via_gateway
            .call_at(&gateway_api.api_url, calls(&gateway_api.account_id))
            .await?;
        Ok(())
    })
    .await?;
    let gateway_ratio =
        gateway_stats.median.as_secs_f64() / direct_stats.median.as_secs_f64().max(1e-9);
    stats.push(direct_stats);
    stats.push(gateway_stats);
    let logins = Some(login_throughput(&stack, &user.mail, &token, runs).await?);
    let keycloak = match keycloak_figures(runs).await {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "Keycloak not measured");
            None
        }
    };
    let logout = Some(logout_latency(&stack).await?);
    let server_rss_kib = stack.server().and_then(|s| rss_kib(s.pid()));
    Ok(BenchReport {
        keycloak,
        logout,
        logins,
        gateway_ratio: Some(gateway_ratio),
        stack_start: stack.start_duration(),
        stats,
        server_rss_kib,
    })
}

/// Logins per second of [`LOGIN_WORKERS`] concurrent clients, `per_worker` logins each.
async fn logins_per_second(
    imaps: std::net::SocketAddr,
    ca_pem: &str,
    user: &str,
    token: &str,
    per_worker: usize,
) -> anyhow::Result<f64> {
    let login = || async {
        let mut imap = ImapClient::connect_tls(imaps, ca_pem).await?;
        let out = imap.oauthbearer(user, token, true).await?;
        anyhow::ensure!(out.reply.is_ok(), "login failed: {out:?}");
        anyhow::Ok(())
    };
    login().await.context("warm-up login")?;
    let started = Instant::now();
    let workers = (0..LOGIN_WORKERS).map(|_| async {
        for _ in 0..per_worker {
            login().await?;
        }
        anyhow::Ok(())
    });
    for result in futures_util::future::join_all(workers).await {
        result?;
    }
    Ok((LOGIN_WORKERS * per_worker) as f64 / started.elapsed().as_secs_f64())
}

/// The stack's server (deny-list in Redis) against a second server with the deny-list in
/// memory, same IdP, same token.
async fn login_throughput(
    stack: &Stack,
    user: &str,
    token: &str,
    runs: usize,
) -> anyhow::Result<LoginThroughput> {
    let ep = stack.endpoints();
    let memory = stack
        .start_server(|c| {
            c.revocation.store = mail_oidc_server::config::RevocationStoreKind::Memory;
            c.revocation.redis_url = None;
        })
        .await?;
    let memory_imaps = memory
        .addrs
        .imap_tls
        .context("the in-memory server has no IMAPS listener")?;
    let per_worker = runs.max(10);
    // Alternated, so drift on the machine hits both alike.
    let mut redis_rates = Vec::new();
    let mut memory_rates = Vec::new();
    for _ in 0..3 {
        redis_rates.push(logins_per_second(ep.imaps, &ep.ca_pem, user, token, per_worker).await?);
        memory_rates
            .push(logins_per_second(memory_imaps, &ep.ca_pem, user, token, per_worker).await?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    Ok(LoginThroughput {
        with_redis: median(redis_rates),
        in_memory: median(memory_rates),
    })
}

/// [`LOGOUT_RUNS`] times: one browser login, [`LOGOUT_IMAP_SESSIONS`] IMAP IDLE sessions and
/// [`LOGOUT_WEBSOCKETS`] WebSockets with its token, then the IdP logout; the time from sending
/// the logout request to the last session closed.
async fn logout_latency(stack: &Stack) -> anyhow::Result<LogoutLatency> {
    use crate::suites::live;

    let target = stack.mail_target();
    let idp = stack.idp_target();
    let mut samples = Vec::with_capacity(LOGOUT_RUNS);
    for run in 0..LOGOUT_RUNS {
        let user = stack.create_user("logout-bench").await?;
        let on = crate::suites::sso::sign_on(&idp, &user.account()).await?;
        let token = on.confidential.tokens.access_token.clone();
        let mut sessions = Vec::with_capacity(LOGOUT_IMAP_SESSIONS + LOGOUT_WEBSOCKETS);
        for _ in 0..LOGOUT_IMAP_SESSIONS {
            sessions.push(live::imap_idle(&target, &user.mail, &token).await?);
        }
        for _ in 0..LOGOUT_WEBSOCKETS {
            sessions.push(live::websocket_direct(&target, &token).await?);
        }
        let started = Instant::now();
        let waits = sessions.into_iter().map(|mut s| {
            tokio::spawn(async move {
                s.ended(crate::suites::END_DEADLINE).await?;
                anyhow::Ok(Instant::now())
            })
        });
        let waits: Vec<_> = waits.collect();
        IdpClient::new(idp.confidential.clone())?
            .browser_logout(&on.browser, &idp.logout_url)
            .await?;
        let mut last = started;
        for w in waits {
            let ended = w.await.context("session task")??;
            last = last.max(ended);
        }
        let took = last.duration_since(started);
        tracing::debug!(run, ?took, "logout latency");
        samples.push(took);
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Ok(LogoutLatency {
        runs: samples.len(),
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
    })
}

/// Keycloak's first and warm start (one instance, started twice), then its password grant in a
/// stack's realm.
async fn keycloak_figures(runs: usize) -> anyhow::Result<KeycloakFigures> {
    use crate::stack::keycloak::Keycloak;

    let http = reqwest::Client::builder().no_proxy().build()?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("keycloak.log");
    let mut first = Keycloak::start(dir.path(), &log, None, None, &http).await?;
    let first_start = first.start_duration();
    first.stop();
    let mut warm = Keycloak::start(dir.path(), &log, None, None, &http).await?;
    let warm_start = warm.start_duration();
    warm.stop();

    let stack = Stack::builder()
        .idp(crate::stack::Idp::Keycloak)
        .start()
        .await?;
    let user = stack.create_user("bench-kc").await?;
    let idp = IdpClient::new(stack.idp_settings("mail-oidc"))?;
    let password_grant = measure("IdP password grant (Keycloak)", runs, || async {
        idp.password_grant(&user.mail, &user.password)
            .await
            .map(|_| ())
    })
    .await?;
    Ok(KeycloakFigures {
        first_start,
        warm_start,
        password_grant,
    })
}
