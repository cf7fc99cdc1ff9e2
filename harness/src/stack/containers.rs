//! `Backend::Containers`: the same environment from official images under testcontainers:
//! Keycloak 26 (realm imported at start), OpenLDAP (osixia, seeded from the realm), Redis 7,
//! APISIX 3 (standalone, the compose routes) and the server (this machine's binary in a Debian
//! image). One network per run and per-run container names, so runs never collide; Keycloak's
//! frontend URL is pinned to `http://localhost:<port>` with the same port mapped on the host, so
//! `iss` is the same for the harness and for the containers, which fetch keys over the back
//! channel (`http://kc-<run>:<port>`). The configuration comes from the compose renderers
//! ([`crate::compose::Net`]) with this run's names.
//!
//! `Backend::Auto` uses this only when a container engine answers and every image is present
//! (it never pulls), and says why when it does not.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::compose::{self, Net};
use crate::realm::Realm;

/// (repository, tag) of every image the backend runs.
pub const IMAGES: [(&str, &str); 5] = [
    ("quay.io/keycloak/keycloak", "26.5.6"),
    ("osixia/openldap", "1.5.0"),
    ("redis", "7.4-alpine"),
    ("apache/apisix", "3.18.0-debian"),
    ("debian", "bookworm-slim"),
];
/// Keycloak's JVM in a container on a busy machine.
const KEYCLOAK_TIMEOUT: Duration = Duration::from_secs(240);

/// Why the containers backend cannot run here, if it cannot.
pub async fn unavailable() -> Option<String> {
    let docker = match testcontainers::core::client::docker_client_instance().await {
        Ok(d) => d,
        Err(e) => return Some(format!("no container engine: {e}")),
    };
    if let Err(e) = docker.ping().await {
        return Some(format!("the container engine does not answer: {e}"));
    }
    let mut missing = Vec::new();
    for (repo, tag) in IMAGES {
        let name = format!("{repo}:{tag}");
        if docker.inspect_image(&name).await.is_err() {
            missing.push(name);
        }
    }
    (!missing.is_empty()).then(|| {
        format!(
            "images not present (never pulled here): {}",
            missing.join(", ")
        )
    })
}

/// Names and ports of one run, and the configuration rendered for them (pure; unit-tested).
#[derive(Debug, Clone)]
pub struct Plan {
    pub run: String,
    pub network: String,
    pub keycloak: String,
    pub ldap: String,
    pub redis: String,
    pub server: String,
    pub apisix: String,
    /// Keycloak's HTTP port, the same inside the container and on the host.
    pub keycloak_port: u16,
    pub keycloak_admin_password: String,
    pub net: Net,
}

impl Plan {
    pub fn new(run: &str, keycloak_port: u16, gateway_secret: &str) -> Self {
        let name = |service: &str| format!("mail-oidc-{service}-{run}");
        let (keycloak, ldap, redis, server, apisix) = (
            name("kc"),
            name("ldap"),
            name("redis"),
            name("server"),
            name("apisix"),
        );
        let net = Net {
            issuer_base: format!("http://localhost:{keycloak_port}"),
            keycloak_internal: format!("http://{keycloak}:{keycloak_port}"),
            ldap_url: format!("ldap://{ldap}:389"),
            redis_host: redis.clone(),
            redis_port: 6379,
            server_http: format!("{server}:8080"),
            gateway_secret: gateway_secret.to_string(),
            redis_acl: super::redis::RedisAcl::generate_without_idp(
                &mail_oidc_server::config::RevocationSection::default().key_prefix,
            ),
        };
        Self {
            network: format!("mail-oidc-{run}"),
            run: run.to_string(),
            keycloak,
            ldap,
            redis,
            server,
            apisix,
            keycloak_port,
            keycloak_admin_password: super::random_token(24),
            net,
        }
    }

    /// osixia/openldap's `LDAP_DOMAIN` for the realm's base DN (`dc=example,dc=com` ->
    /// `example.com`); it creates the base entry and `cn=admin` itself.
    pub fn ldap_domain(realm: &Realm) -> String {
        realm
            .base_dn
            .split(',')
            .filter_map(|rdn| rdn.trim().strip_prefix("dc="))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The realm's LDIF without the base entry osixia creates.
    pub fn ldap_seed(realm: &Realm) -> String {
        realm
            .to_ldif()
            .split("\n\n")
            .filter(|entry| !entry.starts_with(&format!("dn: {}\n", realm.base_dn)))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

/// The running containers; dropping it removes them (and the network with the last one).
pub struct Running {
    pub plan: Plan,
    pub keycloak_start: Duration,
    pub imap: u16,
    pub imaps: u16,
    pub submission: u16,
    pub submissions: u16,
    pub smtp: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub sieve: u16,
    pub http: u16,
    pub gateway: u16,
    pub ldap: u16,
    pub redis: u16,
    containers: Vec<ContainerAsync<GenericImage>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("run", &self.plan.run)
            .field("containers", &self.containers.len())
            .finish_non_exhaustive()
    }
}

/// The server's configuration inside its container: the compose renderer's, with TLS from
/// `/certs`.
pub fn server_config(plan: &Plan) -> anyhow::Result<mail_oidc_server::config::Config> {
    let mut config = compose::server_config_for(&plan.net)?;
    config.tls = Some(mail_oidc_server::config::TlsSection {
        cert: "/certs/cert.pem".into(),
        key: "/certs/key.pem".into(),
    });
    Ok(config)
}

/// Starts every container of `plan`. `server_binary`: this machine's `mail-oidc-server` (Debian
/// like the image); `config`: its configuration ([`server_config`], possibly edited);
/// `cert`/`key`: its TLS files; `realm_json`: Keycloak's realm.
pub async fn start(
    plan: Plan,
    realm: &Realm,
    realm_json: &serde_json::Value,
    server_binary: &Path,
    config: &mail_oidc_server::config::Config,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<Running> {
    let mut containers = Vec::new();
    // The ACL as `--user` directives (hashes only), as compose/redis/users.acl does it.
    let mut redis_cmd = vec!["redis-server".to_string()];
    for line in plan.net.redis_acl.lines() {
        redis_cmd.push("--user".into());
        redis_cmd.push(line.trim_start_matches("user ").to_string());
    }
    let redis = GenericImage::new("redis", "7.4-alpine")
        .with_exposed_port(6379.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .with_network(&plan.network)
        .with_container_name(&plan.redis)
        .with_cmd(redis_cmd)
        .start()
        .await
        .context("starting Redis")?;
    let redis_port = redis.get_host_port_ipv4(6379.tcp()).await?;
    containers.push(redis);

    let ldap = GenericImage::new("osixia/openldap", "1.5.0")
        .with_exposed_port(389.tcp())
        .with_wait_for(WaitFor::message_on_stderr("slapd starting"))
        .with_env_var("LDAP_DOMAIN", Plan::ldap_domain(realm))
        .with_env_var("LDAP_ADMIN_PASSWORD", &realm.admin_password)
        .with_env_var("LDAP_TLS", "false")
        .with_copy_to(
            "/container/service/slapd/assets/config/bootstrap/ldif/custom/50-realm.ldif",
            Plan::ldap_seed(realm).into_bytes(),
        )
        .with_network(&plan.network)
        .with_container_name(&plan.ldap)
        .start()
        .await
        .context("starting OpenLDAP")?;
    let ldap_port = ldap.get_host_port_ipv4(389.tcp()).await?;
    containers.push(ldap);

    let kc_started = Instant::now();
    let port = plan.keycloak_port;
    let keycloak = GenericImage::new("quay.io/keycloak/keycloak", "26.5.6")
        .with_exposed_port(port.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Listening on:"))
        .with_env_var("KC_BOOTSTRAP_ADMIN_USERNAME", super::keycloak::ADMIN_USER)
        .with_env_var("KC_BOOTSTRAP_ADMIN_PASSWORD", &plan.keycloak_admin_password)
        .with_env_var("KC_HTTP_PORT", port.to_string())
        .with_env_var("KC_HOSTNAME", plan.net.issuer_base.clone())
        .with_env_var("KC_HOSTNAME_BACKCHANNEL_DYNAMIC", "true")
        .with_env_var("KC_HEALTH_ENABLED", "true")
        .with_cmd(["start-dev", "--import-realm"])
        .with_copy_to(
            "/opt/keycloak/data/import/realm.json",
            serde_json::to_vec(realm_json)?,
        )
        .with_mapped_port(port, port.tcp())
        .with_network(&plan.network)
        .with_container_name(&plan.keycloak)
        .with_startup_timeout(KEYCLOAK_TIMEOUT)
        .start()
        .await
        .context("starting Keycloak")?;
    containers.push(keycloak);
    let keycloak_start = kc_started.elapsed();

    let server = GenericImage::new("debian", "bookworm-slim")
        .with_exposed_port(143.tcp())
        .with_exposed_port(993.tcp())
        .with_exposed_port(587.tcp())
        .with_exposed_port(465.tcp())
        .with_exposed_port(25.tcp())
        .with_exposed_port(110.tcp())
        .with_exposed_port(995.tcp())
        .with_exposed_port(4190.tcp())
        .with_exposed_port(8080.tcp())
        .with_wait_for(WaitFor::message_on_either_std("listening"))
        .with_copy_to("/usr/local/bin/mail-oidc-server", server_binary)
        .with_copy_to(
            "/etc/mail-oidc/server.toml",
            toml::to_string(config)?.into_bytes(),
        )
        .with_copy_to("/certs/cert.pem", cert)
        .with_copy_to("/certs/key.pem", key)
        .with_cmd([
            "/usr/local/bin/mail-oidc-server",
            "--config",
            "/etc/mail-oidc/server.toml",
        ])
        .with_network(&plan.network)
        .with_container_name(&plan.server)
        .start()
        .await
        .context("starting the server")?;
    let port_of =
        async |c: &ContainerAsync<GenericImage>, p: u16| c.get_host_port_ipv4(p.tcp()).await;
    let (imap, imaps, submission, submissions, smtp, sieve, http) = (
        port_of(&server, 143).await?,
        port_of(&server, 993).await?,
        port_of(&server, 587).await?,
        port_of(&server, 465).await?,
        port_of(&server, 25).await?,
        port_of(&server, 4190).await?,
        port_of(&server, 8080).await?,
    );
    let (pop3, pop3s) = (port_of(&server, 110).await?, port_of(&server, 995).await?);
    containers.push(server);

    let apisix = GenericImage::new("apache/apisix", "3.18.0-debian")
        .with_exposed_port(9080.tcp())
        .with_wait_for(WaitFor::message_on_either_std("worker process"))
        .with_env_var("APISIX_STAND_ALONE", "true")
        .with_copy_to(
            "/usr/local/apisix/conf/config.yaml",
            compose::apisix_config_yaml().into_bytes(),
        )
        .with_copy_to(
            "/usr/local/apisix/conf/apisix.yaml",
            compose::apisix_routes_yaml_for(&plan.net)?.into_bytes(),
        )
        .with_network(&plan.network)
        .with_container_name(&plan.apisix)
        .start()
        .await
        .context("starting APISIX")?;
    let gateway = port_of(&apisix, 9080).await?;
    containers.push(apisix);

    Ok(Running {
        plan,
        keycloak_start,
        imap,
        imaps,
        submission,
        submissions,
        smtp,
        pop3,
        pop3s,
        sieve,
        http,
        gateway,
        ldap: ldap_port,
        redis: redis_port,
        containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_per_run_and_the_issuer_is_the_same_inside_and_out() {
        let a = Plan::new("r1", 41234, "s");
        let b = Plan::new("r2", 41234, "s");
        for (x, y) in [
            (&a.keycloak, &b.keycloak),
            (&a.ldap, &b.ldap),
            (&a.redis, &b.redis),
            (&a.server, &b.server),
            (&a.apisix, &b.apisix),
            (&a.network, &b.network),
        ] {
            assert_ne!(x, y, "names must not collide across runs");
        }
        assert_eq!(a.keycloak, "mail-oidc-kc-r1");
        assert_eq!(a.net.issuer(), "http://localhost:41234/realms/mail");
        assert_eq!(
            a.net.jwks_url(),
            "http://mail-oidc-kc-r1:41234/realms/mail/protocol/openid-connect/certs"
        );
        assert_eq!(a.net.ldap_url, "ldap://mail-oidc-ldap-r1:389");
        assert_eq!(
            a.net.backchannel_logout_url(),
            "http://mail-oidc-server-r1:8080/backchannel-logout"
        );
    }

    #[test]
    fn the_run_renders_the_compose_configuration_with_its_names() {
        let plan = Plan::new("r9", 40000, "gw-secret");
        let config = compose::server_config_for(&plan.net).expect("server config");
        assert_eq!(
            config.oidc.as_ref().and_then(|o| o.issuer.as_deref()),
            Some("http://localhost:40000/realms/mail")
        );
        let redis_url = config.revocation.redis_url.clone().expect("redis_url");
        let parsed = url::Url::parse(&redis_url).expect("url");
        assert_eq!(
            (parsed.host_str(), parsed.port(), parsed.username()),
            (Some("mail-oidc-redis-r9"), Some(6379), "mail-oidc-server")
        );
        assert_eq!(
            parsed.password(),
            Some(plan.net.redis_acl.server.password.as_str())
        );
        let routes = compose::apisix_routes_yaml_for(&plan.net).expect("routes");
        assert!(
            routes.contains("\"mail-oidc-server-r9:8080\": 1"),
            "{routes}"
        );
        assert!(
            routes.contains("red:connect(\"mail-oidc-redis-r9\", 6379)"),
            "{routes}"
        );
        assert!(routes.contains("X-User-Secret: \"gw-secret\""), "{routes}");
        let realm = plan.net.keycloak_realm();
        assert_eq!(
            realm["clients"][0]["attributes"]["backchannel.logout.url"],
            "http://mail-oidc-server-r9:8080/backchannel-logout"
        );
    }

    #[test]
    fn the_ldap_seed_leaves_the_base_to_osixia() {
        let realm = Realm::demo();
        assert_eq!(Plan::ldap_domain(&realm), "example.com");
        let seed = Plan::ldap_seed(&realm);
        assert!(!seed.contains("dn: dc=example,dc=com\n"), "{seed}");
        assert!(
            seed.starts_with("dn: ou=people,dc=example,dc=com\n"),
            "{seed}"
        );
        assert!(seed.contains("dn: uid=demo,ou=people,dc=example,dc=com\n"));
    }

    #[tokio::test]
    async fn the_probe_says_why_the_backend_cannot_run() {
        // It answers without pulling anything; these machines have no engine, so it says so.
        match unavailable().await {
            Some(why) => assert!(
                why.contains("engine") || why.contains("images"),
                "unexpected reason: {why}"
            ),
            None => assert!(
                testcontainers::core::client::docker_client_instance()
                    .await
                    .is_ok(),
                "usable means an engine answered"
            ),
        }
    }
}
