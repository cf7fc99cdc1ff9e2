//! Keycloak 26 as a local process: the server distribution from Maven Central (fetched and built
//! once by `scripts/install-deps.sh`), started `--optimized` from a per-instance home whose `lib`,
//! `providers`, `themes` and `conf` link to the built distribution and whose `data` (H2 dev-file
//! database, realm imports) is its own. HTTP on a free loopback port, health on another; the
//! bootstrap admin drives the admin API (realms, users, keys, logouts).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::ports::{START_ATTEMPTS, free_ports, is_bind_failure};
use super::process::{ChildProcess, tail};
use super::wait::Deadline;

/// The pinned server distribution (scripts/install-deps.sh fetches this one).
pub const VERSION: &str = "26.5.6";
/// The JVM needs ~10-20 s on two cores; much longer on a loaded CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Marker install-deps writes once `kc.sh build` has run.
const BUILT_MARKER: &str = ".mail-oidc-built";
/// The admin API's user (bootstrap admin of the master realm).
pub const ADMIN_USER: &str = "admin";

/// Where the built distribution is: `MAIL_OIDC_KEYCLOAK_HOME`, else
/// `$MAIL_OIDC_CACHE` / `$XDG_CACHE_HOME/mail-oidc` / `~/.cache/mail-oidc` + `keycloak-<VERSION>`.
pub fn find_home() -> anyhow::Result<PathBuf> {
    let home = match std::env::var_os("MAIL_OIDC_KEYCLOAK_HOME") {
        Some(h) => PathBuf::from(h),
        None => {
            let cache = std::env::var_os("MAIL_OIDC_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("mail-oidc"))
                })
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mail-oidc"))
                })
                .context("no HOME to find the Keycloak cache in")?;
            cache.join(format!("keycloak-{VERSION}"))
        }
    };
    if !home.join("bin/kc.sh").is_file() {
        bail!(
            "Keycloak {VERSION} is not installed at {} (run scripts/install-deps.sh, or set \
             MAIL_OIDC_KEYCLOAK_HOME)",
            home.display()
        );
    }
    if !home.join(BUILT_MARKER).is_file() {
        bail!(
            "Keycloak at {} has not been built (run scripts/install-deps.sh)",
            home.display()
        );
    }
    Ok(home)
}

/// Prepares `dir` as an instance home: a copy of `bin/kc.sh` (so `kc.home.dir` is `dir`), links
/// to the distribution's read-only parts, and an own `data/` (with `realm` to import, if any).
pub fn prepare_instance(dist: &Path, dir: &Path, import: Option<&Value>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("bin"))?;
    std::fs::create_dir_all(dir.join("data/import"))?;
    let script = dir.join("bin/kc.sh");
    std::fs::copy(dist.join("bin/kc.sh"), &script)
        .with_context(|| format!("copying kc.sh into {}", dir.display()))?;
    for part in ["lib", "providers", "themes", "conf"] {
        let link = dir.join(part);
        if !link.exists() {
            std::os::unix::fs::symlink(dist.join(part), &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
    }
    if let Some(realm) = import {
        let name = realm
            .get("realm")
            .and_then(Value::as_str)
            .context("the realm JSON has no name")?;
        std::fs::write(
            dir.join(format!("data/import/{name}.json")),
            serde_json::to_vec_pretty(realm)?,
        )?;
    }
    Ok(())
}

/// Writes `text` readable by the owner only (an admin password).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// A running Keycloak. Dropping it stops the process.
pub struct Keycloak {
    port: u16,
    management_port: u16,
    admin_password: String,
    start_duration: Duration,
    /// `None` for a Keycloak this harness did not start as a process (a container).
    process: Option<ChildProcess>,
}

impl std::fmt::Debug for Keycloak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keycloak")
            .field("base_url", &self.base_url())
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl Keycloak {
    /// Starts an instance in `dir` (see [`prepare_instance`]) and returns once `/health/ready`
    /// answers 200 and the admin can get a token. `import`: a realm imported at start.
    /// `port`: the HTTP port to try first (the issuer names it; another one if it is taken).
    pub async fn start(
        dir: &Path,
        log: &Path,
        import: Option<&Value>,
        port: Option<u16>,
        http: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let dist = find_home()?;
        prepare_instance(&dist, dir, import)?;
        // The bootstrap admin is created with the database: a restart must reuse its password.
        let password_file = dir.join("data/.admin-password");
        let admin_password = match std::fs::read_to_string(&password_file) {
            Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
            _ => {
                let p = super::random_token(24);
                write_private(&password_file, &p)?;
                p
            }
        };
        let mut last_error = None;
        for attempt in 0..START_ATTEMPTS {
            // Distinct ports: given one port for both, Keycloak answers /health/ready with 404.
            let [a, b] = free_ports()?;
            let port = match port {
                Some(p) if attempt == 0 => p,
                _ => a,
            };
            let management_port = if b != port { b } else { a };
            let started = Instant::now();
            let mut cmd = Command::new(dir.join("bin/kc.sh"));
            cmd.arg("start")
                .arg("--optimized")
                .arg("--http-enabled=true")
                .arg("--http-host=127.0.0.1")
                .arg(format!("--http-port={port}"))
                .arg(format!("--http-management-port={management_port}"))
                // One issuer for everybody: the harness and the server both use this URL.
                .arg(format!("--hostname=http://localhost:{port}"))
                .arg("--log-level=INFO")
                .current_dir(dir)
                .env("KC_BOOTSTRAP_ADMIN_USERNAME", ADMIN_USER)
                .env("KC_BOOTSTRAP_ADMIN_PASSWORD", &admin_password);
            if import.is_some() {
                cmd.arg("--import-realm");
            }
            let mut process = ChildProcess::spawn("keycloak", cmd, log)?;
            let ready = wait_ready(&mut process, management_port, http).await;
            match ready {
                Ok(()) => {
                    let kc = Self {
                        port,
                        management_port,
                        admin_password,
                        start_duration: started.elapsed(),
                        process: Some(process),
                    };
                    kc.admin_token(http)
                        .await
                        .context("the bootstrap admin cannot log in")?;
                    tracing::info!(base_url = %kc.base_url(), took = ?kc.start_duration, "Keycloak ready");
                    return Ok(kc);
                }
                Err(e) if is_bind_failure(&process.log_of_this_run()) => {
                    tracing::info!(port, "Keycloak could not bind; retrying on other ports");
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("Keycloak did not start")))
    }

    /// `http://localhost:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// `http://localhost:<port>/realms/<realm>`.
    pub fn issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.base_url())
    }

    pub fn management_port(&self) -> u16 {
        self.management_port
    }

    /// From spawning the JVM to `/health/ready`.
    pub fn start_duration(&self) -> Duration {
        self.start_duration
    }

    /// A Keycloak running elsewhere (a container) at `http://localhost:<port>`, its admin API
    /// reached with the bootstrap admin's password.
    pub fn external(
        port: u16,
        management_port: u16,
        admin_password: &str,
        start: Duration,
    ) -> Self {
        Self {
            port,
            management_port,
            admin_password: admin_password.to_string(),
            start_duration: start,
            process: None,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::pid)
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.process.as_ref().map(ChildProcess::log_path)
    }

    /// Stops the JVM now (nothing for an external one).
    pub fn stop(&mut self) {
        if let Some(p) = &mut self.process {
            p.terminate();
        }
    }

    /// A token of the master realm's bootstrap admin, for the admin API.
    pub async fn admin_token(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let url = format!(
            "{}/realms/master/protocol/openid-connect/token",
            self.base_url()
        );
        let resp = http
            .post(&url)
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", ADMIN_USER),
                ("password", self.admin_password.as_str()),
            ])
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("admin token: HTTP {status}: {body}");
        }
        body.get("access_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("admin token: no access_token in {body}"))
    }

    /// The admin API: `method` `/admin/realms/<path>` with `body`; the answer's status, the
    /// `Location` header and the JSON body (if any). Non-2xx is an error naming the call.
    pub async fn admin(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<AdminAnswer> {
        let token = self.admin_token(http).await?;
        let url = format!("{}/admin/realms{path}", self.base_url());
        let mut req = http.request(method.clone(), &url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let location = crate::idp::location_of(&resp);
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {url}: HTTP {status}: {text}");
        }
        Ok(AdminAnswer {
            location,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }
}

/// What an admin API call answered.
#[derive(Debug, Clone)]
pub struct AdminAnswer {
    pub location: Option<String>,
    pub json: Value,
}

async fn wait_ready(
    process: &mut ChildProcess,
    management_port: u16,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{management_port}/health/ready");
    let deadline = Deadline::new(format!("Keycloak at {url}"), READY_TIMEOUT);
    loop {
        process.ensure_running()?;
        let last = match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if let Err(timeout) = deadline.tick(last).await {
            bail!("{timeout}\n{}", tail(&process.log_of_this_run(), 40));
        }
    }
}

/// The process-wide Keycloak the stacks of one test binary share (a realm each): started on first
/// use, stopped when the process exits (its children get SIGTERM then, see `process`).
static SHARED: tokio::sync::OnceCell<Keycloak> = tokio::sync::OnceCell::const_new();

/// Removes the homes of shared instances whose process is gone (earlier test runs).
fn remove_stale_homes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("mail-oidc-keycloak-") else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The shared instance, started on the first call.
pub async fn shared(http: &reqwest::Client) -> anyhow::Result<&'static Keycloak> {
    SHARED
        .get_or_try_init(|| async {
            remove_stale_homes();
            let dir =
                std::env::temp_dir().join(format!("mail-oidc-keycloak-{}", std::process::id()));
            let log = dir.join("keycloak.log");
            std::fs::create_dir_all(&dir)?;
            Keycloak::start(&dir, &log, None, None, http).await
        })
        .await
}

/// Where a realm's Keycloak runs.
enum Instance {
    /// Shared by every stack of the process.
    Shared(&'static Keycloak),
    /// This stack's own (the demo), with the realm imported at start.
    Owned(Box<Keycloak>),
}

/// One realm of a Keycloak: the stack's IdP.
pub struct KeycloakRealm {
    instance: Instance,
    name: String,
    /// Component id and key of the imported signing key provider.
    key_component: String,
    key: crate::keys::RsaKeyPair,
    kid: String,
    generation: u32,
}

impl std::fmt::Debug for KeycloakRealm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakRealm")
            .field("issuer", &self.issuer())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    mail_oidc_server::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the Keycloak admin client")
}

impl KeycloakRealm {
    /// Creates `realm_json` (see `Realm::to_keycloak_json`) in the shared instance.
    pub async fn create_shared(
        realm_json: &Value,
        key: crate::keys::RsaKeyPair,
    ) -> anyhow::Result<Self> {
        let http = http_client()?;
        let kc = shared(&http).await?;
        kc.admin(&http, reqwest::Method::POST, "", Some(realm_json))
            .await
            .context("creating the realm")?;
        Self::found(Instance::Shared(kc), realm_json, key, &http).await
    }

    /// Starts an own instance in `dir` on `port` (if free) with `realm_json` imported at start.
    pub async fn start_owned(
        dir: &Path,
        log: &Path,
        realm_json: &Value,
        key: crate::keys::RsaKeyPair,
        port: u16,
    ) -> anyhow::Result<Self> {
        let http = http_client()?;
        let kc = Keycloak::start(dir, log, Some(realm_json), Some(port), &http).await?;
        Self::found(Instance::Owned(Box::new(kc)), realm_json, key, &http).await
    }

    async fn found(
        instance: Instance,
        realm_json: &Value,
        key: crate::keys::RsaKeyPair,
        http: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let name = realm_json
            .get("realm")
            .and_then(Value::as_str)
            .context("the realm JSON has no name")?
            .to_string();
        let mut realm = Self {
            instance,
            name,
            key_component: String::new(),
            key,
            kid: String::new(),
            generation: 0,
        };
        let (component, kid) = realm
            .signing_key_of(http, crate::realm::KEYCLOAK_KEY_PROVIDER)
            .await?;
        realm.key_component = component;
        realm.kid = kid;
        Ok(realm)
    }

    fn keycloak(&self) -> &Keycloak {
        match &self.instance {
            Instance::Shared(kc) => kc,
            Instance::Owned(kc) => kc,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn issuer(&self) -> String {
        self.keycloak().issuer(&self.name)
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    pub fn key(&self) -> &crate::keys::RsaKeyPair {
        &self.key
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The Keycloak's own process, if this stack owns it.
    pub fn owned_pid(&self) -> Option<u32> {
        match &self.instance {
            Instance::Owned(kc) => kc.pid(),
            Instance::Shared(_) => None,
        }
    }

    pub fn start_duration(&self) -> Duration {
        self.keycloak().start_duration()
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.keycloak().log_path()
    }

    /// A realm already imported into an external Keycloak (a container).
    pub async fn external(
        kc: Keycloak,
        realm_json: &Value,
        key: crate::keys::RsaKeyPair,
    ) -> anyhow::Result<Self> {
        let http = http_client()?;
        Self::found(Instance::Owned(Box::new(kc)), realm_json, key, &http).await
    }

    /// `/admin/realms/<name><path>`.
    async fn admin(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<AdminAnswer> {
        self.keycloak()
            .admin(http, method, &format!("/{}{path}", self.name), body)
            .await
    }

    /// The component id and `kid` of the key provider named `provider`.
    /// The `id` of the first object an admin API search returns.
    async fn first_id(&self, http: &reqwest::Client, search: &str) -> anyhow::Result<String> {
        let found = self
            .admin(http, reqwest::Method::GET, search, None)
            .await?
            .json;
        found
            .as_array()
            .and_then(|list| list.first())
            .and_then(|o| o.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("GET {search} found nothing: {found}"))
    }

    async fn signing_key_of(
        &self,
        http: &reqwest::Client,
        provider: &str,
    ) -> anyhow::Result<(String, String)> {
        let component = self
            .first_id(http, &format!("/components?name={provider}"))
            .await
            .with_context(|| format!("no key provider {provider}"))?;
        let keys = self
            .admin(http, reqwest::Method::GET, "/keys", None)
            .await?
            .json;
        let kid = keys
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|k| k.get("providerId").and_then(Value::as_str) == Some(component.as_str()))
            .and_then(|k| k.get("kid"))
            .and_then(Value::as_str)
            .with_context(|| format!("no key of provider {component}: {keys}"))?
            .to_string();
        Ok((component, kid))
    }

    /// Replaces the signing key through the admin API (a new `rsa` provider, the old one
    /// deleted) and returns once the JWKS serves the new `kid` and not the old one.
    pub async fn rotate(&mut self, key: crate::keys::RsaKeyPair) -> anyhow::Result<String> {
        let http = http_client()?;
        let realm = self
            .keycloak()
            .admin(
                &http,
                reqwest::Method::GET,
                &format!("/{}", self.name),
                None,
            )
            .await?
            .json;
        let realm_id = realm
            .get("id")
            .and_then(Value::as_str)
            .context("the realm has no id")?
            .to_string();
        self.generation += 1;
        let provider = format!(
            "{}-{}",
            crate::realm::KEYCLOAK_KEY_PROVIDER,
            self.generation
        );
        let component = serde_json::json!({
            "name": provider,
            "providerId": "rsa",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm_id,
            "config": {
                "privateKey": [key.pkcs8_pem],
                "priority": [(200 + self.generation).to_string()],
                "algorithm": ["RS256"],
                "keyUse": ["sig"],
                "active": ["true"],
                "enabled": ["true"],
            },
        });
        self.admin(
            &http,
            reqwest::Method::POST,
            "/components",
            Some(&component),
        )
        .await?;
        let (new_component, new_kid) = self.signing_key_of(&http, &provider).await?;
        self.admin(
            &http,
            reqwest::Method::DELETE,
            &format!("/components/{}", self.key_component),
            None,
        )
        .await?;
        let old_kid = std::mem::replace(&mut self.kid, new_kid.clone());
        self.key_component = new_component;
        self.key = key;
        let jwks_url = format!("{}/protocol/openid-connect/certs", self.issuer());
        let deadline = Deadline::new(format!("JWKS kid {new_kid}"), Duration::from_secs(30));
        loop {
            let kids: Vec<String> = match http.get(&jwks_url).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|j| j.get("keys").and_then(Value::as_array).cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|k| k.get("kid").and_then(Value::as_str).map(str::to_string))
                    .collect(),
                Err(_) => Vec::new(),
            };
            if kids.contains(&new_kid) && !kids.contains(&old_kid) {
                return Ok(new_kid);
            }
            deadline.tick(format!("{kids:?}")).await?;
        }
    }

    /// The admin's "log out all sessions" of a user: Keycloak sends the back-channel logout
    /// tokens of every session.
    pub async fn admin_logout(&self, username: &str) -> anyhow::Result<()> {
        let http = http_client()?;
        let id = self
            .first_id(&http, &format!("/users?username={username}&exact=true"))
            .await
            .with_context(|| format!("Keycloak knows no user {username}"))?;
        self.admin(
            &http,
            reqwest::Method::POST,
            &format!("/users/{id}/logout"),
            None,
        )
        .await?;
        Ok(())
    }

    /// Stops an own instance (a shared one keeps running: other stacks use it).
    pub fn stop(&mut self) {
        if let Instance::Owned(kc) = &mut self.instance {
            kc.stop();
        }
    }
}

impl Drop for KeycloakRealm {
    fn drop(&mut self) {
        // A shared instance outlives the stack: drop its realm, best effort, off the async
        // runtime (Drop cannot await).
        if let Instance::Shared(kc) = self.instance {
            let name = self.name.clone();
            let _ = std::thread::Builder::new()
                .name("keycloak-realm-drop".into())
                .spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async {
                        if let Ok(http) = http_client() {
                            let _ = kc
                                .admin(&http, reqwest::Method::DELETE, &format!("/{name}"), None)
                                .await;
                        }
                    });
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_home_links_the_distribution_and_owns_its_data() {
        let dist = tempfile::tempdir().expect("dist");
        for part in ["bin", "lib", "providers", "themes", "conf"] {
            std::fs::create_dir_all(dist.path().join(part)).expect("dir");
        }
        std::fs::write(dist.path().join("bin/kc.sh"), "#!/bin/sh\n").expect("kc.sh");
        let inst = tempfile::tempdir().expect("instance");
        let realm = serde_json::json!({"realm": "mail"});
        prepare_instance(dist.path(), inst.path(), Some(&realm)).expect("prepared");
        let script = inst.path().join("bin/kc.sh");
        assert!(script.is_file() && !script.is_symlink(), "kc.sh is a copy");
        for part in ["lib", "providers", "themes", "conf"] {
            assert_eq!(
                std::fs::read_link(inst.path().join(part)).expect("link"),
                dist.path().join(part)
            );
        }
        assert!(inst.path().join("data/import/mail.json").is_file());
        // Preparing again (a restart) keeps the links.
        prepare_instance(dist.path(), inst.path(), None).expect("again");
    }
}
