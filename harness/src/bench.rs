//! `mail-oidc bench`: measures the stack and the server on this machine, in one run, with
//! bounded loops. Numbers are printed, never asserted (timings do not belong in tests).

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

/// Everything one bench run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub stack_start: Duration,
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
    let direct_stats = measure("JMAP Mailbox/get direct (Bearer)", runs, || async {
        direct
            .call_at(&direct_api.api_url, calls(&direct_api.account_id))
            .await?;
        Ok(())
    })
    .await?;
    let gateway_stats = measure("JMAP Mailbox/get through the gateway", runs, || async {
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
    let server_rss_kib = stack.server().and_then(|s| rss_kib(s.pid()));
    Ok(BenchReport {
        gateway_ratio: Some(gateway_ratio),
        stack_start: stack.start_duration(),
        stats,
        server_rss_kib,
    })
}
