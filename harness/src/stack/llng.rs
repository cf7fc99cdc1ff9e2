//! LemonLDAP::NG 2.21 (installed system-wide) as a PSGI app under Starman, configured by a
//! File-backend `lmConf-<n>.json` rendered from the realm, with sessions in Redis.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::ports::{START_ATTEMPTS, free_port, is_bind_failure};
use super::process::{ChildProcess, find_program, tail};
use super::provider::Discovered;
use super::wait::Deadline;
use crate::keys::RsaKeyPair;
use crate::realm::{LlngParams, Realm};

/// Version the configuration is written for (the bookworm-backports packages).
const CFG_VERSION: &str = "2.21.3";
/// Where the Debian packages put templates and static files; override with
/// `MAIL_OIDC_LLNG_PREFIX` (e.g. an extracted .deb tree).
const DEFAULT_PREFIX: &str = "/usr";
/// Perl start-up of the portal takes ~0.5-1.5 s idle; much longer on a loaded CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A worker re-reads the configuration on its next request once `checkMsg` and `checkTime`
/// (1 s each, in the ini) have passed on Perl's whole-second clock: at most ~2 s after a write.
/// After this long every worker serves the newest configuration.
const RELOAD_SETTLE: Duration = Duration::from_millis(2500);
/// How long a rotation may take by reloading before Starman is restarted instead.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(6);
/// Starman workers; two, because back-channel logout POSTs synchronously and an RP calling back
/// into the OP while handling one would deadlock a single worker.
const WORKERS: &str = "2";

pub struct Llng {
    dir: PathBuf,
    log: PathBuf,
    realm: Realm,
    ldap_url: String,
    redis: crate::realm::LlngRedis,
    port: u16,
    key: RsaKeyPair,
    kid: String,
    cfg_num: u32,
    process: Option<ChildProcess>,
    http: reqwest::Client,
    discovered: Option<Discovered>,
}

fn prefix() -> PathBuf {
    PathBuf::from(
        std::env::var("MAIL_OIDC_LLNG_PREFIX").unwrap_or_else(|_| DEFAULT_PREFIX.to_string()),
    )
}

/// The issuer of a portal on `port` (LemonLDAP::NG needs a host under its cookie domain).
pub fn issuer_for_port(port: u16) -> String {
    format!("http://localhost:{port}")
}

/// A fresh `kid`: configuration number plus a random suffix, so rotations never reuse one.
pub fn new_kid(cfg_num: u32) -> String {
    format!("k{cfg_num}-{}", super::random_token(8).to_ascii_lowercase())
}

impl Llng {
    /// Writes the configuration and starts Starman on `port` (a new free port, and a new
    /// configuration carrying it, when that one was taken meanwhile: check [`Llng::issuer`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        realm: &Realm,
        dir: &Path,
        log: &Path,
        port: u16,
        ldap_url: &str,
        redis: crate::realm::LlngRedis,
        key: RsaKeyPair,
        http: reqwest::Client,
    ) -> anyhow::Result<Self> {
        for sub in ["conf", "cache"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let mut llng = Self {
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
            realm: realm.clone(),
            ldap_url: ldap_url.to_string(),
            redis,
            port: 0,
            key,
            kid: String::new(),
            cfg_num: 0,
            process: None,
            http,
            discovered: None,
        };
        llng.write_static_files()?;
        let mut last_error = None;
        for attempt in 0..START_ATTEMPTS {
            llng.port = if attempt == 0 { port } else { free_port()? };
            llng.cfg_num += 1;
            llng.kid = new_kid(llng.cfg_num);
            llng.write_conf()?;
            match llng.spawn_and_wait().await {
                Ok(()) => return Ok(llng),
                Err(e) if llng.last_run_failed_to_bind() => {
                    tracing::info!(
                        port = llng.port,
                        "Starman could not bind; retrying on another port"
                    );
                    llng.stop();
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("LemonLDAP::NG did not start")))
    }

    pub fn issuer(&self) -> String {
        issuer_for_port(self.port)
    }

    /// What a browser visits to log out of the portal (every RP gets a back-channel call).
    pub fn logout_url(&self) -> String {
        format!("{}/?logout=1", self.issuer())
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    pub fn discovered(&self) -> Option<&Discovered> {
        self.discovered.as_ref()
    }

    pub fn key(&self) -> &RsaKeyPair {
        &self.key
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::pid)
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    fn last_run_failed_to_bind(&self) -> bool {
        self.process
            .as_ref()
            .is_some_and(|p| is_bind_failure(&p.log_of_this_run()))
    }

    fn ini_path(&self) -> PathBuf {
        self.dir.join("lemonldap-ng.ini")
    }

    fn write_static_files(&self) -> anyhow::Result<()> {
        let prefix = prefix();
        let dir = self.dir.display();
        let ini = format!(
            r#"; Generated by mail-oidc-harness.
[all]
logLevel = notice
logger = Lemonldap::NG::Common::Logger::Std
userLogger = Lemonldap::NG::Common::Logger::Std
; Re-read lmConf-<n>.json within ~2 s of a change (key rotation without restart).
checkTime = 1
checkMsg = 1

[configuration]
type = File
dirName = {dir}/conf
localStorage = Cache::FileCache
localStorageOptions = {{ 'namespace' => 'lemonldap-ng-config', 'default_expires_in' => 600, 'directory_umask' => '007', 'cache_root' => '{dir}/cache', 'cache_depth' => 3 }}

[portal]
staticPrefix = /static
templateDir = {templates}
languages = en

[handler]
status = 0
"#,
            templates = prefix.join("share/lemonldap-ng/portal/templates").display(),
        );
        std::fs::write(self.ini_path(), ini)?;
        let psgi = format!(
            r#"# Generated by mail-oidc-harness: the LemonLDAP::NG portal as a plain PSGI app.
use strict;
use Plack::Builder;
use Lemonldap::NG::Portal::Main;
my $portal = Lemonldap::NG::Portal::Main->run( {{}} );
builder {{
    enable "Static", path => qr{{^/static/}}, root => '{htdocs}/';
    $portal;
}};
"#,
            htdocs = prefix.join("share/lemonldap-ng/portal/htdocs").display(),
        );
        std::fs::write(self.dir.join("portal.psgi"), psgi)?;
        Ok(())
    }

    /// Writes `lmConf-<cfg_num>.json` atomically (the File backend serves the highest number).
    fn write_conf(&self) -> anyhow::Result<()> {
        let params = LlngParams {
            portal_url: format!("{}/", self.issuer()),
            ldap_url: self.ldap_url.clone(),
            redis: self.redis.clone(),
            signing_private_pem: self.key.private_pem.clone(),
            signing_public_pem: self.key.public_pem.clone(),
            kid: self.kid.clone(),
            cfg_num: self.cfg_num,
            run_dir: self.dir.clone(),
            cfg_version: CFG_VERSION.to_string(),
        };
        let conf = self.realm.to_llng_conf(&params);
        let path = self.dir.join(format!("conf/lmConf-{}.json", self.cfg_num));
        // Not matched by the backend's lmConf-<n>.json pattern until renamed.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&conf)?)?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let starman = find_program("starman")?;
        let mut cmd = Command::new(starman);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--workers", WORKERS])
            .arg(self.dir.join("portal.psgi"))
            .current_dir(&self.dir)
            .env("LLNG_DEFAULTCONFFILE", self.ini_path());
        self.process = Some(ChildProcess::spawn("lemonldap-ng", cmd, &self.log)?);
        Ok(())
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        let deadline = Deadline::new(format!("LemonLDAP::NG at {}", self.issuer()), READY_TIMEOUT);
        loop {
            if let Some(p) = self.process.as_mut() {
                p.ensure_running()?;
            }
            match self.probe_discovery().await {
                Ok(d) => {
                    self.discovered = Some(d);
                    return Ok(());
                }
                Err(e) => {
                    if let Err(timeout) = deadline.tick(&e).await {
                        let log = self
                            .process
                            .as_ref()
                            .map(|p| tail(&p.log_of_this_run(), 40))
                            .unwrap_or_default();
                        bail!("{timeout}\n{log}");
                    }
                }
            }
        }
    }

    /// GET discovery: 200 with our issuer (not some other server that took the port).
    async fn probe_discovery(&self) -> anyhow::Result<Discovered> {
        super::provider::discover(&self.http, &self.discovery_url(), &self.issuer()).await
    }

    /// The `kid`s the JWKS currently serves.
    pub async fn jwks_kids(&self) -> anyhow::Result<Vec<String>> {
        let uri = self
            .discovered
            .as_ref()
            .map(|d| d.jwks_uri.clone())
            .unwrap_or_else(|| format!("{}/oauth2/jwks", self.issuer()));
        let jwks: Value = self
            .http
            .get(uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(jwks
            .get("keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.get("kid").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Deletes the user's SSO sessions behind the portal's back, with LemonLDAP::NG's own
    /// `lemonldap-ng-sessions` tool: no back-channel logout is sent (what an IdP-side session
    /// expiry or an admin purge looks like), but introspection answers `active: false` from then
    /// on. `names` are what the user may have typed at login (mail, uid). Returns how many.
    pub async fn delete_sessions_of(&self, names: &[&str]) -> anyhow::Result<usize> {
        let tool = prefix().join("share/lemonldap-ng/bin/lemonldap-ng-sessions");
        let run = |args: Vec<String>| {
            let tool = tool.clone();
            let ini = self.ini_path();
            let dir = self.dir.clone();
            async move {
                let shown = tool.display().to_string();
                tokio::task::spawn_blocking(move || {
                    Command::new(&tool)
                        .args(&args)
                        // The tool switches to www-data unless told otherwise; the stack's
                        // files are owner-only, so it must stay who we are.
                        .args(stay_as_self())
                        .current_dir(&dir)
                        .env("LLNG_DEFAULTCONFFILE", &ini)
                        .output()
                })
                .await
                .context("session tool task")?
                .with_context(|| format!("running {shown}"))
            }
        };
        let out = run([
            "search",
            "--select",
            "_session_id",
            "--select",
            "_session_kind",
            "--select",
            "_user",
        ]
        .map(String::from)
        .to_vec())
        .await?;
        if !out.status.success() {
            bail!(
                "lemonldap-ng-sessions search failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let sessions: Value = serde_json::from_slice(&out.stdout)
            .context("lemonldap-ng-sessions search printed no JSON")?;
        let ids: Vec<String> = sessions
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s.get("_session_kind").and_then(Value::as_str) == Some("SSO"))
            .filter(|s| {
                s.get("_user")
                    .and_then(Value::as_str)
                    .is_some_and(|u| names.iter().any(|n| n.eq_ignore_ascii_case(u)))
            })
            .filter_map(|s| {
                s.get("_session_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        for id in &ids {
            let out = run(vec!["delete".into(), id.clone()]).await?;
            if !out.status.success() {
                bail!(
                    "lemonldap-ng-sessions delete {id} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Ok(ids.len())
    }

    /// Stops Starman (the port is released; discovery fails until [`Llng::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.terminate();
        }
    }

    /// Starts Starman again on the same port with the newest configuration.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn_and_wait().await
    }

    /// Switches to `key` under a fresh `kid` as the next configuration number, and returns once
    /// every worker serves it (by reload, or by a restart if reloading does not happen).
    pub async fn rotate(&mut self, key: RsaKeyPair) -> anyhow::Result<String> {
        self.key = key;
        self.cfg_num += 1;
        self.kid = new_kid(self.cfg_num);
        self.write_conf()?;
        let written = Instant::now();
        if !self.is_running() {
            // Served from the next start.
            return Ok(self.kid.clone());
        }
        let deadline = Deadline::new(format!("JWKS kid {}", self.kid), RELOAD_TIMEOUT);
        loop {
            let kids = self.jwks_kids().await;
            let serves_new = kids.as_ref().is_ok_and(|k| k.contains(&self.kid));
            if serves_new && written.elapsed() >= RELOAD_SETTLE {
                tracing::info!(kid = %self.kid, after = ?written.elapsed(), "signing key rotated by reload");
                return Ok(self.kid.clone());
            }
            if deadline.tick(format!("{kids:?}")).await.is_err() {
                break;
            }
        }
        tracing::warn!(kid = %self.kid, "LemonLDAP::NG did not reload its configuration; restarting it");
        self.restart().await?;
        let kids = self.jwks_kids().await?;
        if !kids.contains(&self.kid) {
            bail!("after a restart the JWKS serves {kids:?}, not {}", self.kid);
        }
        Ok(self.kid.clone())
    }
}

/// `--user` and `--group` options naming this process's own user and group, for the
/// LemonLDAP::NG command-line tools (which otherwise switch to www-data).
fn stay_as_self() -> Vec<String> {
    // SAFETY: getpwuid/getgrgid return pointers into static storage or null; the names are
    // copied out at once, and nothing else in the harness calls them concurrently.
    let (user, group) = unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        let gr = libc::getgrgid(libc::getegid());
        let name = |p: *const libc::c_char| {
            (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        (
            (!pw.is_null()).then(|| name((*pw).pw_name)).flatten(),
            (!gr.is_null()).then(|| name((*gr).gr_name)).flatten(),
        )
    };
    let mut args = Vec::new();
    if let Some(user) = user {
        args.extend(["--user".to_string(), user]);
    }
    if let Some(group) = group {
        args.extend(["--group".to_string(), group]);
    }
    args
}
