//! `mail-oidc check`: the server-agnostic suites run against any mail server given by its
//! endpoints, every check with an id, its spec section, MUST or SHOULD, and a verdict. Every
//! endpoint left out skips its checks with the reason; nothing is assumed.

pub mod profile;
pub mod redact;
pub mod render;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::clients::tls::INSECURE_SKIP_TLS_VERIFY;
use crate::idp::{IdpClient, IdpSettings};
use crate::keys::RsaKeyPair;
use crate::suites::access::{self, Path};
use crate::suites::sasl::{
    self, ImapEndpoint, Pop3Endpoint, SaslCredentials, SaslEndpoint, SieveEndpoint, SmtpEndpoint,
};
use crate::suites::{Account, Check, MailTarget, Report, Spec, Verdict, revocation};
use crate::tokens::{Hostile, TokenForge, decode_unverified};
use profile::{Profile, ProfileName};

/// How long the reachability probe of one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The arguments of `mail-oidc check`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CheckArgs {
    /// IMAP with STARTTLS (HOST:PORT): only "no plaintext mechanism before TLS" uses it.
    #[arg(long, value_name = "HOST:PORT")]
    pub imap: Option<String>,
    /// IMAP over implicit TLS (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub imaps: Option<String>,
    /// Submission with STARTTLS (HOST:PORT): only the before-TLS check uses it.
    #[arg(long, value_name = "HOST:PORT")]
    pub submission: Option<String>,
    /// Submission over implicit TLS (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub submissions: Option<String>,
    /// POP3 with STLS (HOST:PORT): only the before-TLS check uses it.
    #[arg(long, value_name = "HOST:PORT")]
    pub pop3: Option<String>,
    /// POP3 over implicit TLS (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub pop3s: Option<String>,
    /// ManageSieve (HOST:PORT, STARTTLS).
    #[arg(long, value_name = "HOST:PORT")]
    pub sieve: Option<String>,
    /// The server's JMAP session URL (bearer tokens sent directly).
    #[arg(long, value_name = "URL")]
    pub jmap: Option<String>,
    /// The JMAP session URL through an OIDC gateway in front of the server.
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,
    /// The server's OpenID Connect back-channel logout receiver.
    #[arg(long, value_name = "URL")]
    pub backchannel_logout: Option<String>,
    /// PEM file of the CA that signed the server's certificates (the name checked is
    /// `localhost`).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure_skip_tls_verify")]
    pub ca: Option<PathBuf>,
    /// Do not check the server's certificates at all (warns; for a first look only).
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// The user under test (default: MAIL_OIDC_USER of the `up` environment).
    #[arg(long, requires = "password")]
    pub user: Option<String>,
    #[arg(long, requires = "user")]
    pub password: Option<String>,
    /// A second user whose identity the user under test must not take (and, later, whose
    /// sessions must survive the user's logout).
    #[arg(long, requires = "bystander_password")]
    pub bystander: Option<String>,
    #[arg(long, requires = "bystander")]
    pub bystander_password: Option<String>,
    /// Environment file written by `mail-oidc up` (the IdP of the run); default: environment
    /// variables, then the state path.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// An existing IdP instead of the `up` environment's.
    #[arg(long, requires_all = ["client_id", "client_secret"])]
    pub issuer: Option<String>,
    #[arg(long, requires = "issuer")]
    pub client_id: Option<String>,
    #[arg(long, requires = "issuer")]
    pub client_secret: Option<String>,
    /// The IdP's signing key (PEM), for the validly signed hostile tokens; without it those
    /// checks are skipped.
    #[arg(long, value_name = "FILE", requires = "signing_kid")]
    pub signing_key: Option<PathBuf>,
    /// The `kid` the IdP publishes for --signing-key.
    #[arg(long, requires = "signing_key")]
    pub signing_kid: Option<String>,
    /// Failed logins after which the server closes the connection (checked when given).
    #[arg(long)]
    pub failure_limit: Option<u32>,
    /// Which known deviations are accepted.
    #[arg(long, value_enum, default_value = "strict")]
    pub profile: ProfileName,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the report as JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// Why a run could not judge the server: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("bad arguments: {0}")]
    BadArguments(String),
    #[error("unreachable: {0}")]
    Unreachable(String),
}

impl CheckError {
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// The identity provider of the run.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// What the RFC 7628 error challenge must name.
    pub discovery_url: String,
}

/// Everything a run needs, resolved from the arguments and the environment.
#[derive(Debug, Clone)]
pub struct Plan {
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub submissions: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub sieve: Option<SocketAddr>,
    pub jmap: Option<String>,
    pub gateway: Option<String>,
    pub backchannel_logout: Option<String>,
    /// The CA PEM, or [`INSECURE_SKIP_TLS_VERIFY`].
    pub ca_pem: String,
    pub user: Account,
    pub bystander: Option<Account>,
    pub idp: IdpConfig,
    /// Signs validly signed hostile tokens, when the IdP's key is known.
    pub forge: Option<TokenForge>,
    pub failure_limit: Option<u32>,
    pub profile: Profile,
    pub json: Option<PathBuf>,
    pub junit: Option<PathBuf>,
}

fn addr(flag: &str, value: &Option<String>) -> Result<Option<SocketAddr>, CheckError> {
    let Some(v) = value else { return Ok(None) };
    v.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(Some)
        .ok_or_else(|| CheckError::BadArguments(format!("--{flag} {v}: not a HOST:PORT")))
}

fn url(flag: &str, value: &Option<String>) -> Result<Option<String>, CheckError> {
    let Some(v) = value else { return Ok(None) };
    match url::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(Some(v.clone()))
        }
        _ => Err(CheckError::BadArguments(format!(
            "--{flag} {v}: not an http(s) URL"
        ))),
    }
}

impl Plan {
    /// Resolves the arguments; `env` looks up `MAIL_OIDC_*` keys of the `up` environment.
    pub fn resolve(
        args: &CheckArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, CheckError> {
        let bad = |m: String| CheckError::BadArguments(m);
        let plan_addrs = [
            addr("imap", &args.imap)?,
            addr("imaps", &args.imaps)?,
            addr("submission", &args.submission)?,
            addr("submissions", &args.submissions)?,
            addr("pop3", &args.pop3)?,
            addr("pop3s", &args.pop3s)?,
            addr("sieve", &args.sieve)?,
        ];
        let jmap = url("jmap", &args.jmap)?;
        let gateway = url("gateway", &args.gateway)?;
        let backchannel_logout = url("backchannel-logout", &args.backchannel_logout)?;
        if plan_addrs.iter().all(Option::is_none) && jmap.is_none() && gateway.is_none() {
            return Err(bad(
                "no endpoint of the server under test: give at least one of --imaps, \
                 --submissions, --pop3s, --sieve, --jmap, --gateway"
                    .into(),
            ));
        }
        let ca_pem = match (&args.ca, args.insecure_skip_tls_verify) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|e| bad(format!("--ca {}: {e}", path.display())))?,
            (None, true) => INSECURE_SKIP_TLS_VERIFY.to_string(),
            (None, false) => {
                return Err(bad(
                    "no --ca FILE: the server's certificates are checked against it \
                     (or pass --insecure-skip-tls-verify)"
                        .into(),
                ));
            }
        };
        let get = |flag: &Option<String>, key: &str, what: &str| {
            flag.clone()
                .or_else(|| env(key))
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    bad(format!(
                        "no {what}: pass it, or run `mail-oidc up` (or --env-file) for {key}"
                    ))
                })
        };
        let user = Account {
            mail: get(&args.user, "MAIL_OIDC_USER", "--user")?,
            password: get(&args.password, "MAIL_OIDC_PASSWORD", "--password")?,
        };
        let bystander = match (&args.bystander, &args.bystander_password) {
            (Some(mail), Some(password)) => Some(Account {
                mail: mail.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        let issuer = get(&args.issuer, "MAIL_OIDC_ISSUER", "--issuer")?;
        // The env's discovery URL belongs to the env's issuer only.
        let discovery_url = args
            .issuer
            .is_none()
            .then(|| env("MAIL_OIDC_DISCOVERY_URL"))
            .flatten()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                )
            });
        let idp = IdpConfig {
            client_id: get(&args.client_id, "MAIL_OIDC_CLIENT_ID", "--client-id")?,
            client_secret: get(
                &args.client_secret,
                "MAIL_OIDC_CLIENT_SECRET",
                "--client-secret",
            )?,
            issuer,
            discovery_url,
        };
        // The `up` environment's key belongs to the `up` environment's IdP only.
        let from_env = || {
            args.issuer
                .is_none()
                .then(|| {
                    Some((
                        PathBuf::from(env("MAIL_OIDC_SIGNING_KEY")?),
                        env("MAIL_OIDC_SIGNING_KID")?,
                    ))
                })
                .flatten()
                .filter(|(p, k)| !p.as_os_str().is_empty() && !k.is_empty())
        };
        let key = match (&args.signing_key, &args.signing_kid) {
            (Some(path), Some(kid)) => Some((path.clone(), kid.clone())),
            _ => from_env(),
        };
        let forge = match key {
            Some((path, kid)) => {
                let pem = std::fs::read_to_string(&path)
                    .map_err(|e| bad(format!("--signing-key {}: {e}", path.display())))?;
                let keys = RsaKeyPair::from_private_pem(&pem)
                    .map_err(|e| bad(format!("--signing-key {}: {e:#}", path.display())))?;
                Some(TokenForge {
                    private_pem: keys.private_pem,
                    public_pem: keys.public_pem,
                    kid,
                    issuer: idp.issuer.clone(),
                    audience: idp.client_id.clone(),
                })
            }
            _ => None,
        };
        let [imap, imaps, submission, submissions, pop3, pop3s, sieve] = plan_addrs;
        Ok(Plan {
            imap,
            imaps,
            submission,
            submissions,
            pop3,
            pop3s,
            sieve,
            jmap,
            gateway,
            backchannel_logout,
            ca_pem,
            user,
            bystander,
            idp,
            forge,
            failure_limit: args.failure_limit,
            profile: Profile::named(args.profile),
            json: args.json.clone(),
            junit: args.junit.clone(),
        })
    }

    /// The suites' view of the server under test.
    pub fn mail_target(&self) -> MailTarget {
        MailTarget {
            imaps: self.imaps,
            submissions: self.submissions,
            pop3s: self.pop3s,
            sieve: self.sieve,
            jmap_session: self.jmap.clone(),
            gateway_jmap_session: self.gateway.clone(),
            ca_pem: self.ca_pem.clone(),
        }
    }

    /// Secrets that must not appear in any evidence.
    fn secrets(&self) -> Vec<String> {
        let mut s = vec![self.user.password.clone(), self.idp.client_secret.clone()];
        s.extend(self.bystander.iter().map(|b| b.password.clone()));
        s
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub checks: Vec<Check>,
    pub profile: &'static str,
}

impl Outcome {
    /// 0: every MUST passes or is a listed deviation; 1: a MUST fails.
    pub fn exit_code(&self) -> u8 {
        u8::from(render::tally(&self.checks).must_fail > 0)
    }
}

/// TCP connect to every endpoint given, so a typo is exit 2, not a page of failures.
async fn probe(plan: &Plan) -> Result<(), CheckError> {
    let mut targets: Vec<(String, String)> = [
        ("imap", plan.imap),
        ("imaps", plan.imaps),
        ("submission", plan.submission),
        ("submissions", plan.submissions),
        ("pop3", plan.pop3),
        ("pop3s", plan.pop3s),
        ("sieve", plan.sieve),
    ]
    .into_iter()
    .filter_map(|(f, a)| a.map(|a| (f.to_string(), a.to_string())))
    .collect();
    for (flag, u) in [
        ("jmap", &plan.jmap),
        ("gateway", &plan.gateway),
        ("backchannel-logout", &plan.backchannel_logout),
    ] {
        if let Some(u) = u.as_deref().and_then(|u| url::Url::parse(u).ok())
            && let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default())
        {
            targets.push((flag.to_string(), format!("{host}:{port}")));
        }
    }
    for (flag, target) in targets {
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&target)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(CheckError::Unreachable(format!("--{flag} {target}: {e}")));
            }
            Err(_) => {
                return Err(CheckError::Unreachable(format!(
                    "--{flag} {target}: no answer within {CONNECT_TIMEOUT:?}"
                )));
            }
        }
    }
    Ok(())
}

/// The hostile tokens of the run: the forgeries that need no key always, the validly signed
/// ones when the IdP's key is known. The rest by name, with why they are left out.
fn hostile_tokens(
    forge: &TokenForge,
    keyed: bool,
    mail: &str,
    sub: &str,
) -> anyhow::Result<HostileSet> {
    let mut made = Vec::new();
    let mut left_out = Vec::new();
    for kind in Hostile::ALL {
        let keyless = matches!(
            kind,
            Hostile::AlgNone | Hostile::Garbage | Hostile::BadSignature
        );
        if keyed || keyless {
            made.push((format!("{kind:?}"), forge.try_hostile(kind, mail, sub)?));
        } else {
            left_out.push(format!("{kind:?}"));
        }
    }
    Ok(HostileSet { made, left_out })
}

/// Hostile tokens by name, and the names left out for want of the IdP's key.
struct HostileSet {
    made: Vec<(String, String)>,
    left_out: Vec<String>,
}

/// The `kid` the IdP publishes first (the keyless forgeries name it, so the server looks up
/// the real key and must still refuse).
async fn published_kid(idp: &IdpClient) -> anyhow::Result<String> {
    let jwks_uri = idp.discovery().await?.jwks_uri;
    let jwks: serde_json::Value = reqwest::Client::builder()
        .timeout(CONNECT_TIMEOUT)
        .build()?
        .get(&jwks_uri)
        .send()
        .await
        .with_context(|| format!("GET {jwks_uri}"))?
        .json()
        .await
        .with_context(|| format!("the JWKS at {jwks_uri}"))?;
    Ok(jwks
        .pointer("/keys/0/kid")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown")
        .to_string())
}

/// `open an IMAP session` -> `open-an-imap-session`.
fn slug(name: &str) -> String {
    name.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Gives every check of a flow written before ids existed an id under `prefix` (from its
/// name), a protocol and a section.
fn adopt(report: &mut Report, prefix: &str, protocol: &str, section: &str) {
    for c in report.checks.iter_mut().filter(|c| c.spec.is_none()) {
        c.spec = Some(Spec::must(
            format!("{prefix}.{}", slug(&c.name)),
            c.name.clone(),
            protocol,
            section,
        ));
    }
}

/// What a run reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A flow starts (it may take a while: every check opens connections).
    Started(&'a str),
    /// A flow's checks.
    Finished(&'a [Check]),
}

/// Runs every check the plan allows, calling `progress` as each flow starts and finishes.
pub async fn run(
    plan: &Plan,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Outcome, CheckError> {
    probe(plan).await?;
    let idp = IdpClient::new(IdpSettings {
        issuer: plan.idp.issuer.clone(),
        client_id: plan.idp.client_id.clone(),
        client_secret: Some(plan.idp.client_secret.clone()),
        redirect_uri: String::new(),
    })
    .map_err(|e| CheckError::Unreachable(format!("the IdP: {e:#}")))?;
    let token = idp
        .password_grant(&plan.user.mail, &plan.user.password)
        .await
        .map_err(|e| {
            CheckError::Unreachable(format!(
                "no token for {} from {}: {e:#}",
                plan.user.mail, plan.idp.issuer
            ))
        })?
        .access_token;
    let sub = decode_unverified(&token)
        .ok()
        .and_then(|(_, c)| c.get("sub").and_then(|s| s.as_str()).map(str::to_string))
        .ok_or_else(|| {
            CheckError::Unreachable("the IdP's access token is no JWT with a sub".into())
        })?;
    let forge = match &plan.forge {
        Some(f) => f.clone(),
        None => TokenForge {
            private_pem: String::new(),
            public_pem: String::new(),
            kid: published_kid(&idp)
                .await
                .map_err(|e| CheckError::Unreachable(format!("the IdP's JWKS: {e:#}")))?,
            issuer: plan.idp.issuer.clone(),
            audience: plan.idp.client_id.clone(),
        },
    };
    let HostileSet {
        made: hostile,
        left_out,
    } = hostile_tokens(&forge, plan.forge.is_some(), &plan.user.mail, &sub)
        .map_err(|e| CheckError::BadArguments(format!("forging tokens: {e:#}")))?;
    let no_key = "needs the IdP's signing key (--signing-key/--signing-kid)";
    let creds = SaslCredentials {
        account: plan.user.clone(),
        token: token.clone(),
        other: plan.bystander.clone().unwrap_or_else(|| Account {
            mail: "bystander-not-given@invalid".into(),
            password: String::new(),
        }),
        hostile: hostile.clone(),
        discovery_url: plan.idp.discovery_url.clone(),
        failure_limit: plan.failure_limit,
    };
    let mut checks: Vec<Check> = Vec::new();

    let ca = plan.ca_pem.clone();
    let sasl_runs: [(&str, Option<&str>); 4] = [
        ("imap", plan.imaps.is_none().then_some("no --imaps given")),
        (
            "smtp",
            plan.submissions
                .is_none()
                .then_some("no --submissions given"),
        ),
        ("pop3", plan.pop3s.is_none().then_some("no --pop3s given")),
        ("sieve", plan.sieve.is_none().then_some("no --sieve given")),
    ];
    for (p, missing) in sasl_runs {
        if missing.is_none() {
            progress(Progress::Started(p));
        }
        let mut report = match missing {
            Some(reason) => {
                let names: Vec<String> = hostile.iter().map(|(n, _)| n.clone()).collect();
                sasl::skipped(p, &names, plan.failure_limit, reason)
            }
            None => match p {
                "imap" => {
                    sasl_run(
                        &ImapEndpoint {
                            tls: plan.imaps.unwrap_or(UNUSED),
                            cleartext: plan.imap,
                            ca_pem: ca.clone(),
                        },
                        &creds,
                    )
                    .await
                }
                "smtp" => {
                    sasl_run(
                        &SmtpEndpoint {
                            tls: plan.submissions.unwrap_or(UNUSED),
                            cleartext: plan.submission,
                            ca_pem: ca.clone(),
                        },
                        &creds,
                    )
                    .await
                }
                "pop3" => {
                    sasl_run(
                        &Pop3Endpoint {
                            tls: plan.pop3s.unwrap_or(UNUSED),
                            cleartext: plan.pop3,
                            ca_pem: ca.clone(),
                        },
                        &creds,
                    )
                    .await
                }
                _ => {
                    sasl_run(
                        &SieveEndpoint {
                            addr: plan.sieve.unwrap_or(UNUSED),
                            ca_pem: ca.clone(),
                        },
                        &creds,
                    )
                    .await
                }
            },
        };
        // Checks that pass vacuously without their input are skips here, with the reason.
        let cleartext_flag = match p {
            "imap" => plan
                .imap
                .is_none()
                .then_some("no --imap (STARTTLS port) given"),
            "smtp" => plan
                .submission
                .is_none()
                .then_some("no --submission (STARTTLS port) given"),
            "pop3" => plan.pop3.is_none().then_some("no --pop3 (STLS port) given"),
            _ => None,
        };
        let vacuous = [
            (
                format!("sasl.{p}.oauthbearer.authzid-other-user"),
                plan.bystander.is_none().then_some("no --bystander given"),
            ),
            (format!("sasl.{p}.no-plaintext-before-tls"), cleartext_flag),
        ];
        for (id, reason) in vacuous {
            let Some(reason) = reason else { continue };
            for c in report.checks.iter_mut().filter(|c| c.id() == id) {
                if matches!(c.verdict, Verdict::Skip { .. }) {
                    continue;
                }
                c.result = Ok(());
                c.evidence = None;
                c.verdict = Verdict::Skip {
                    reason: reason.into(),
                };
            }
        }
        if plan.failure_limit.is_none() {
            report.skip(
                Spec::should(
                    format!("sasl.{p}.failure-limit"),
                    "failed logins close the connection after the server's limit",
                    p,
                    "RFC 4422 §3.8; RFC 4954 §4",
                ),
                "failure limit",
                "the server's limit is not known: pass --failure-limit N",
            );
        }
        for mech in ["OAUTHBEARER", "XOAUTH2"] {
            for name in &left_out {
                report.skip(sasl::hostile_spec(p, mech, name), name.clone(), no_key);
            }
        }
        emit(report, &mut checks, progress);
    }

    let target = plan.mail_target();
    for (path, protocol, missing) in [
        (
            Path::JmapDirect,
            "jmap",
            plan.jmap.is_none().then_some("no --jmap given"),
        ),
        (
            Path::JmapGateway,
            "gateway",
            plan.gateway.is_none().then_some("no --gateway given"),
        ),
    ] {
        if missing.is_none() {
            progress(Progress::Started(protocol));
        }
        let mut report = Report::new("http");
        let accepted = Spec::must(
            format!("{protocol}.bearer.accepted"),
            "a real token opens the JMAP session, as its user",
            protocol,
            "RFC 6750 §2.1; RFC 8620 §2",
        );
        let specs: Vec<(Spec, &str)> = hostile
            .iter()
            .map(|(name, tok)| {
                (
                    Spec::must(
                        format!("{protocol}.hostile-token.{}", sasl::kebab(name)),
                        format!("a hostile token ({name}): 401, Bearer error=\"invalid_token\""),
                        protocol,
                        "RFC 6750 §3, §3.1; RFC 8725 §3.1",
                    ),
                    tok.as_str(),
                )
            })
            .collect();
        match missing {
            Some(reason) => {
                report.skip(accepted, "accepted", reason);
                for (spec, _) in specs {
                    report.skip(spec, "hostile", reason);
                }
            }
            None => {
                report.check_spec(
                    accepted,
                    "accepted",
                    access::accepted(&target, path, &plan.user.mail, &token).await,
                );
                for (spec, tok) in specs {
                    let result = access::refused(&target, path, &plan.user.mail, tok, None).await;
                    report.check_spec(spec, "hostile", result);
                }
            }
        }
        for name in &left_out {
            report.skip(
                Spec::must(
                    format!("{protocol}.hostile-token.{}", sasl::kebab(name)),
                    format!("a hostile token ({name}): 401, Bearer error=\"invalid_token\""),
                    protocol,
                    "RFC 6750 §3, §3.1; RFC 8725 §3.1",
                ),
                "hostile",
                no_key,
            );
        }
        emit(report, &mut checks, progress);
    }

    // Last: a valid logout token ends the user's IdP session.
    if plan.backchannel_logout.is_some() {
        progress(Progress::Started("backchannel"));
    }
    let mut report = match (&plan.backchannel_logout, &plan.forge, plan.imaps) {
        (Some(url), Some(forge), Some(_)) => {
            let mut r =
                revocation::hostile_logout_tokens(&target, url, forge, &plan.user, &token).await;
            // Its set-up steps (the session to end, the valid token) have no spec of their own.
            adopt(
                &mut r,
                "backchannel.setup",
                "backchannel",
                "OpenID Connect Back-Channel Logout 1.0 §2.6",
            );
            r
        }
        (url, forge, imaps) => {
            let reason = if url.is_none() {
                "no --backchannel-logout given"
            } else if forge.is_none() {
                "logout tokens must be signed: needs the IdP's signing key (--signing-key/--signing-kid)"
            } else if imaps.is_none() {
                "the victim session is IMAP: no --imaps given"
            } else {
                "not run"
            };
            let mut r = Report::new("hostile logout tokens");
            r.skip(
                Spec::must(
                    "backchannel.hostile-logout-tokens",
                    "hostile logout tokens get 400 and end nothing; a valid one ends the \
                     session; a replay is refused",
                    "backchannel",
                    "OpenID Connect Back-Channel Logout 1.0 §2.6",
                ),
                "hostile logout tokens",
                reason,
            );
            r
        }
    };
    if let Some(by) = &plan.bystander
        && plan.imaps.is_some()
        && plan.backchannel_logout.is_some()
        && plan.forge.is_some()
    {
        let spec = Spec::must(
            "backchannel.bystander-untouched",
            "after the user's logout, the bystander still logs in",
            "backchannel",
            "OpenID Connect Back-Channel Logout 1.0 §2.7",
        );
        let result = async {
            let t = idp
                .password_grant(&by.mail, &by.password)
                .await
                .context("no token for the bystander")?
                .access_token;
            access::accepted(&target, Path::Imap, &by.mail, &t).await
        }
        .await;
        report.check_spec(spec, "bystander", result);
    }
    emit(report, &mut checks, progress);

    let secrets = plan.secrets();
    let secrets: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .chain([token.as_str()])
        .collect();
    for c in &mut checks {
        if let Err(e) = &c.result {
            c.evidence = Some(redact::evidence(e, &secrets));
        }
    }
    plan.profile.apply(&mut checks);
    Ok(Outcome {
        checks,
        profile: plan.profile.name,
    })
}

/// Reports a finished flow and keeps its checks.
fn emit(mut report: Report, checks: &mut Vec<Check>, progress: &mut dyn FnMut(Progress<'_>)) {
    progress(Progress::Finished(&report.checks));
    checks.append(&mut report.checks);
}

/// Never dialled: the endpoint structs want an address, and only given ones are built.
const UNUSED: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

async fn sasl_run<E: SaslEndpoint>(endpoint: &E, creds: &SaslCredentials) -> Report {
    sasl::matrix(endpoint, creds).await
}

/// Writes the JSON and JUnit files the plan asks for.
pub fn write_reports(plan: &Plan, outcome: &Outcome) -> anyhow::Result<()> {
    let code = outcome.exit_code();
    if let Some(path) = &plan.json {
        let text =
            serde_json::to_string_pretty(&render::json(&outcome.checks, outcome.profile, code))?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &plan.junit {
        std::fs::write(path, render::junit(&outcome.checks, outcome.profile))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The whole command: resolve, warn, run with a live table on `err`, write the files. The exit
/// code: 0 every MUST passes (or is a listed deviation), 1 a MUST fails, 2 unreachable target
/// or bad arguments.
pub async fn command(
    args: &CheckArgs,
    env: &dyn Fn(&str) -> Option<String>,
    err: &mut dyn std::io::Write,
) -> u8 {
    let plan = match Plan::resolve(args, env) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "mail-oidc check: {e}");
            return e.exit_code();
        }
    };
    if plan.ca_pem == INSECURE_SKIP_TLS_VERIFY {
        let _ = writeln!(
            err,
            "mail-oidc check: WARNING: --insecure-skip-tls-verify: the server's certificates \
             are NOT checked; anyone in the path can read the tokens and passwords sent"
        );
    }
    let mut last_group = String::new();
    let mut progress = |p: Progress<'_>| match p {
        Progress::Started(what) => {
            let _ = writeln!(err, "… {what}: running");
        }
        Progress::Finished(checks) => {
            for c in checks {
                let group = c.spec.as_ref().map_or("other", |s| s.protocol.as_str());
                if group != last_group {
                    let _ = writeln!(err, "{}", render::group_header(group));
                    last_group = group.to_string();
                }
                let _ = writeln!(err, "{}", render::row(c));
            }
        }
    };
    let outcome = match run(&plan, &mut progress).await {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(err, "mail-oidc check: {e}");
            return e.exit_code();
        }
    };
    let code = outcome.exit_code();
    let _ = writeln!(
        err,
        "{}",
        render::summary(&render::tally(&outcome.checks), outcome.profile)
    );
    if let Err(e) = write_reports(&plan, &outcome) {
        let _ = writeln!(err, "mail-oidc check: {e:#}");
        return 2;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CheckArgs,
    }

    fn parse(argv: &[&str]) -> Result<CheckArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("check").chain(argv.iter().copied())).map(|c| c.args)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const IDP: [&str; 10] = [
        "--issuer",
        "http://127.0.0.1:1/idp",
        "--client-id",
        "c",
        "--client-secret",
        "s",
        "--user",
        "u@example.com",
        "--password",
        "p",
    ];

    fn with_idp(extra: &[&'static str]) -> Vec<&'static str> {
        IDP.iter().copied().chain(extra.iter().copied()).collect()
    }

    #[test]
    fn a_failed_must_exits_1_and_a_failed_should_or_deviation_does_not() {
        let mut r = Report::new("t");
        r.check_spec(
            Spec::should("a", "a", "imap", "RFC 4616 §4"),
            "a",
            Err(anyhow::anyhow!("no")),
        );
        r.skip(
            Spec::must("b", "b", "imap", "RFC 7628 §3.1"),
            "b",
            "no --imaps",
        );
        let mut outcome = Outcome {
            checks: r.checks.clone(),
            profile: "strict",
        };
        assert_eq!(outcome.exit_code(), 0);
        r.check_spec(
            Spec::must("c", "c", "imap", "RFC 7628 §3.2.2"),
            "c",
            Err(anyhow::anyhow!("no")),
        );
        outcome.checks = r.checks.clone();
        assert_eq!(outcome.exit_code(), 1);
        let profile = Profile {
            name: "t",
            deviations: vec![profile::Deviation {
                id_prefix: "c".into(),
                source: "their docs".into(),
            }],
        };
        profile.apply(&mut outcome.checks);
        assert_eq!(
            outcome.exit_code(),
            0,
            "a listed deviation does not fail the run"
        );
    }

    #[test]
    fn adopted_ids_are_readable() {
        assert_eq!(slug("open an IMAP session"), "open-an-imap-session");
        assert_eq!(
            slug("the valid logout token: 200, Cache-Control: no-store"),
            "the-valid-logout-token-200-cache-control-no-store"
        );
    }

    #[test]
    fn clap_refuses_half_given_pairs() {
        assert!(parse(&["--user", "u"]).is_err(), "user without password");
        assert!(
            parse(&["--issuer", "http://x"]).is_err(),
            "issuer without client"
        );
        assert!(
            parse(&["--ca", "f", "--insecure-skip-tls-verify"]).is_err(),
            "both trust options"
        );
        assert!(parse(&["--profile", "lax"]).is_err(), "unknown profile");
        assert!(parse(&with_idp(&["--imaps", "127.0.0.1:993"])).is_ok());
    }

    #[tokio::test]
    async fn bad_arguments_exit_2() {
        let cases: [(&[&'static str], &str); 4] = [
            (&[], "no endpoint"),
            (&["--imaps", "not-an-address"], "not a HOST:PORT"),
            (&["--imaps", "127.0.0.1:1"], "no --ca"),
            (
                &["--jmap", "ftp://x/", "--insecure-skip-tls-verify"],
                "not an http(s) URL",
            ),
        ];
        for (extra, says) in cases {
            let args = parse(&with_idp(extra)).expect("clap accepts it");
            let mut err = Vec::new();
            let code = command(&args, &no_env, &mut err).await;
            let text = String::from_utf8_lossy(&err);
            assert_eq!(code, 2, "{extra:?}: {text}");
            assert!(text.contains(says), "{extra:?}: {text}");
        }
        // No IdP at all, and no `up` environment.
        let args = parse(&["--imaps", "127.0.0.1:1", "--insecure-skip-tls-verify"]).expect("clap");
        let mut err = Vec::new();
        assert_eq!(command(&args, &no_env, &mut err).await, 2);
        assert!(String::from_utf8_lossy(&err).contains("MAIL_OIDC_USER"));
    }

    #[tokio::test]
    async fn an_unreachable_target_exits_2() {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let imaps = format!("127.0.0.1:{port}");
        let argv: Vec<&str> = IDP
            .iter()
            .copied()
            .chain(["--imaps", &imaps, "--insecure-skip-tls-verify"])
            .collect();
        let args = parse(&argv).expect("clap");
        let mut err = Vec::new();
        let code = command(&args, &no_env, &mut err).await;
        let text = String::from_utf8_lossy(&err);
        assert_eq!(code, 2, "{text}");
        assert!(text.contains("unreachable: --imaps"), "{text}");
        assert!(
            text.contains("WARNING: --insecure-skip-tls-verify"),
            "{text}"
        );
    }

    #[test]
    fn the_env_supplies_the_idp_and_the_user() {
        let env = |k: &str| {
            Some(
                match k {
                    "MAIL_OIDC_ISSUER" => "http://idp.test",
                    "MAIL_OIDC_DISCOVERY_URL" => "http://idp.test/.well-known/openid-configuration",
                    "MAIL_OIDC_CLIENT_ID" => "mail-oidc",
                    "MAIL_OIDC_CLIENT_SECRET" => "secret",
                    "MAIL_OIDC_USER" => "demo@example.com",
                    "MAIL_OIDC_PASSWORD" => "pw",
                    _ => return None,
                }
                .to_string(),
            )
        };
        let args = parse(&[
            "--jmap",
            "http://127.0.0.1:1/.well-known/jmap",
            "--insecure-skip-tls-verify",
        ])
        .expect("clap");
        let plan = Plan::resolve(&args, &env).expect("resolves");
        assert_eq!(plan.idp.client_id, "mail-oidc");
        assert_eq!(plan.user.mail, "demo@example.com");
        assert!(plan.forge.is_none());
        assert!(plan.imaps.is_none());
        let target = plan.mail_target();
        assert!(target.imaps.is_none() && target.jmap_session.is_some());
    }

    #[test]
    fn the_up_environment_supplies_the_signing_key() {
        let keys = RsaKeyPair::generate().expect("openssl");
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("k.pem");
        std::fs::write(&key, &keys.private_pem).expect("key file");
        let key_path = key.display().to_string();
        let env = move |k: &str| {
            Some(match k {
                "MAIL_OIDC_ISSUER" => "http://idp.test".to_string(),
                "MAIL_OIDC_CLIENT_ID" => "mail-oidc".into(),
                "MAIL_OIDC_CLIENT_SECRET" => "secret".into(),
                "MAIL_OIDC_USER" => "demo@example.com".into(),
                "MAIL_OIDC_PASSWORD" => "pw".into(),
                "MAIL_OIDC_SIGNING_KEY" => key_path.clone(),
                "MAIL_OIDC_SIGNING_KID" => "kid-1".into(),
                _ => return None,
            })
        };
        let args = parse(&["--imaps", "127.0.0.1:1", "--insecure-skip-tls-verify"]).expect("clap");
        let plan = Plan::resolve(&args, &env).expect("resolves");
        let forge = plan.forge.expect("the env's key is used");
        assert_eq!(forge.kid, "kid-1");
        assert_eq!(forge.public_pem, keys.public_pem);
        assert_eq!(forge.audience, "mail-oidc");
        // Another IdP named on the command line: the env's key is not its key.
        let mut outside = args.clone();
        outside.issuer = Some("http://other.test".into());
        outside.client_id = Some("c".into());
        outside.client_secret = Some("s".into());
        assert!(
            Plan::resolve(&outside, &env)
                .expect("resolves")
                .forge
                .is_none()
        );
    }
}
