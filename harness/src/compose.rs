//! The docker-compose reference deployment (`compose/`, `keycloak-realm/`): every generated file
//! comes from the renderers the native stack uses (the one `Realm`, the server's `Config`, the
//! slapd configuration, the gateway's deny-list keys), and a test keeps the committed files equal
//! to them (`cargo test` fails naming the file to regenerate with `mail-oidc compose-files`).
//!
//! Inside the compose network the services are `keycloak:8080`, `openldap:389`, `redis:6379`,
//! `mail-oidc` (IMAP 143/993, submission 587/465, SMTP 25, POP3 110/995, HTTP 8080) and
//! `mail-oidc` (IMAP 143/993, submission 587/465, SMTP 25, ManageSieve 4190, HTTP 8080) and
//! `apisix:9080`. Keycloak pins its frontend URL to `http://localhost:8080` (what the host sees)
//! and answers the back channel on whatever host asked, so `iss` is the same inside and outside
//! while the server and APISIX fetch keys from `keycloak:8080`.

use std::path::{Path, PathBuf};

use mail_oidc_server::config::{Config, RevocationSection};
use serde_json::{Value, json};

use crate::realm::{KeycloakParams, Realm};
use crate::stack::redis::RedisAcl;

/// Keycloak's realm in the compose deployment (and in the native demo's own Keycloak).
pub const KEYCLOAK_REALM: &str = "mail";
pub const KEYCLOAK_IMAGE: &str = "quay.io/keycloak/keycloak:26.5.6";
pub const REDIS_IMAGE: &str = "redis:7.4-alpine";
pub const APISIX_IMAGE: &str = "apache/apisix:3.18.0-debian";
/// Debian release the server and OpenLDAP images are built on.
pub const DEBIAN_IMAGE: &str = "debian:bookworm-slim";
pub const RUST_IMAGE: &str = "rust:1.95-bookworm";

/// The issuer as everybody sees it (Keycloak's pinned frontend URL).
pub const ISSUER: &str = "http://localhost:8080/realms/mail";
/// Where containers fetch Keycloak's keys (the back channel).
pub const JWKS_URL: &str = "http://keycloak:8080/realms/mail/protocol/openid-connect/certs";
pub const DISCOVERY_URL: &str = "http://keycloak:8080/realms/mail/.well-known/openid-configuration";
pub const LDAP_URL: &str = "ldap://openldap:389";
/// The server's Redis, as its ACL user with the demo password (see `compose/redis/users.acl`).
pub const REDIS_URL: &str =
    "redis://mail-oidc-server:compose-demo-redis-server-change-me@redis:6379/";
/// The server's back-channel logout receiver as Keycloak reaches it.
pub const BACKCHANNEL_LOGOUT_URL: &str = "http://mail-oidc:8080/backchannel-logout";
/// The secret APISIX sends the server with `X-User` (a demo value: change it in both files).
pub const GATEWAY_SECRET: &str = "compose-demo-gateway-secret-change-me";
/// Where the OpenLDAP image keeps its database.
pub const LDAP_DATA_DIR: &str = "/var/lib/mail-oidc-ldap";

/// Where the services find each other: the compose deployment's fixed names
/// ([`Net::compose`]), or the containers backend's per-run names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    /// `http://localhost:<port>`: Keycloak's pinned frontend URL, the base of `iss`.
    pub issuer_base: String,
    /// `http://<keycloak>:<port>`: Keycloak as containers reach it (keys, discovery).
    pub keycloak_internal: String,
    /// `ldap://<host>:<port>`.
    pub ldap_url: String,
    /// Redis host and port.
    pub redis_host: String,
    pub redis_port: u16,
    /// `<host>:<port>` of the server's HTTP listener.
    pub server_http: String,
    pub gateway_secret: String,
    /// Redis's ACL users: the server's and the gateway's.
    pub redis_acl: RedisAcl,
}

impl Net {
    pub fn compose() -> Self {
        Self {
            issuer_base: "http://localhost:8080".into(),
            keycloak_internal: "http://keycloak:8080".into(),
            ldap_url: LDAP_URL.into(),
            redis_host: "redis".into(),
            redis_port: 6379,
            server_http: "mail-oidc:8080".into(),
            gateway_secret: GATEWAY_SECRET.into(),
            redis_acl: RedisAcl::compose_demo(&RevocationSection::default().key_prefix),
        }
    }

    pub fn issuer(&self) -> String {
        format!("{}/realms/{KEYCLOAK_REALM}", self.issuer_base)
    }

    pub fn jwks_url(&self) -> String {
        format!(
            "{}/realms/{KEYCLOAK_REALM}/protocol/openid-connect/certs",
            self.keycloak_internal
        )
    }

    pub fn discovery_url(&self) -> String {
        format!(
            "{}/realms/{KEYCLOAK_REALM}/.well-known/openid-configuration",
            self.keycloak_internal
        )
    }

    /// The server's URL: its own ACL user.
    pub fn redis_url(&self) -> String {
        let mut url = url::Url::parse("redis://placeholder/").expect("a constant URL");
        let _ = url.set_host(Some(&self.redis_host));
        let _ = url.set_port(Some(self.redis_port));
        let _ = url.set_username(&self.redis_acl.server.name);
        let _ = url.set_password(Some(&self.redis_acl.server.password));
        url.to_string()
    }

    pub fn backchannel_logout_url(&self) -> String {
        format!("http://{}/backchannel-logout", self.server_http)
    }

    /// The demo realm, logging out at this server.
    pub fn realm(&self) -> Realm {
        Realm::demo().with_backchannel_logout(&self.backchannel_logout_url())
    }

    /// Keycloak's realm JSON (users come from OpenLDAP).
    pub fn keycloak_realm(&self) -> Value {
        self.realm().to_keycloak_json(&KeycloakParams {
            realm_name: KEYCLOAK_REALM.into(),
            ldap_url: self.ldap_url.clone(),
            // Keycloak's own key: nobody forges tokens in the demo.
            signing_pkcs8_pem: None,
        })
    }
}

/// The realm the compose deployment serves: the demo realm, logging out at the server.
pub fn realm() -> Realm {
    Net::compose().realm()
}

/// `keycloak-realm/realm.json`: imported by Keycloak at start (users come from OpenLDAP).
pub fn keycloak_realm() -> Value {
    Net::compose().keycloak_realm()
}

/// `compose/ldap/slapd.conf`, the same generator as the native stack's.
pub fn slapd_conf() -> String {
    crate::stack::slapd::debian_conf(&realm(), Path::new(LDAP_DATA_DIR))
}

/// `compose/server.toml`: every listener in the container, TLS from the `certs` service, OIDC
/// against Keycloak (explicit issuer, keys over the back channel), LDAP, the deny-list in Redis,
/// HTTP for APISIX's `x-user` (secret) and for Bearer/Basic directly.
pub fn server_config() -> anyhow::Result<Config> {
    server_config_for(&Net::compose())
}

/// The server configuration for the services of `net`.
pub fn server_config_for(net: &Net) -> anyhow::Result<Config> {
    let realm = net.realm();
    let any = |port: u16| format!("0.0.0.0:{port}");
    let value = json!({
        "server": {
            "hostname": "localhost",
            "log": "info",
            "admins": realm.admin().map(|a| a.mail.clone()).into_iter().collect::<Vec<_>>(),
        },
        "tls": { "cert": "/certs/cert.pem", "key": "/certs/key.pem" },
        "imap": { "listen": any(143), "listen_tls": any(993) },
        "submission": { "listen": any(587), "listen_tls": any(465) },
        "smtp": { "listen": any(25) },
        "pop3": { "listen": any(110), "listen_tls": any(995) },
        "sieve": { "listen": any(4190) },
        "http": {
            "listen": any(8080),
            "public_url": "http://localhost:8081",
            "gateway_public_url": "http://localhost:9080/oidc",
            "auth": {
                "strategies": ["bearer", "basic", "x-user"],
                "x_user_secret": net.gateway_secret,
            },
        },
        "oidc": {
            "issuer": net.issuer(),
            "jwks_url": net.jwks_url(),
            "audience": realm.client_ids(),
            "username_claim": "email",
        },
        "directory": {
            "kind": "ldap",
            "url": net.ldap_url,
            "base_dn": realm.people_dn,
            "bind_dn": realm.admin_dn,
            "bind_password": realm.admin_password,
        },
        "store": { "kind": "memory" },
        // Every JMAP connection arrives from APISIX's one address.
        "limits": { "http": { "max_connections_per_address": 1024 } },
        "revocation": { "store": "redis", "redis_url": net.redis_url() },
    });
    let config: Config = serde_json::from_value(value)?;
    config.validate()?;
    Ok(config)
}

/// `compose/apisix/config.yaml`: standalone data plane reading `apisix.yaml`.
pub fn apisix_config_yaml() -> String {
    "# Generated by mail-oidc-harness (harness/src/compose.rs): APISIX standalone.\n\
     apisix:\n  node_listen: 9080\n  enable_admin: false\n\
     deployment:\n  role: data_plane\n  role_data_plane:\n    config_provider: yaml\n"
        .to_string()
}

/// The deny-list check and the identity headers, in APISIX's access phase after
/// openid-connect verified the token (its claims arrive as base64 JSON in `X-Userinfo`). The
/// keys are the server's (`revocation::keys`); Redis unreachable is 503, never a pass.
fn apisix_lua(prefix: &str, net: &Net) -> String {
    let (redis_host, redis_port) = (&net.redis_host, net.redis_port);
    let (redis_user, redis_password) =
        (&net.redis_acl.gateway.name, &net.redis_acl.gateway.password);
    format!(
        r##"return function(conf, ctx)
  local core, redis = require("apisix.core"), require("resty.redis")
  for _, h in ipairs({{"X-User", "X-User-Iss", "X-User-Sub", "X-User-Sid", "X-User-Iat", "X-User-Exp"}}) do
    core.request.set_header(ctx, h, nil)
  end
  local raw = core.request.header(ctx, "X-Userinfo")
  local c = raw and core.json.decode(ngx.decode_base64(raw) or "")
  if type(c) ~= "table" or type(c.email) ~= "string" then
    return 401, {{ error = "invalid_token", error_description = "no email claim" }}
  end
  if (c.typ ~= nil and string.lower(c.typ) ~= "bearer") or c.nonce or c.at_hash or c.c_hash then
    return 401, {{ error = "invalid_token", error_description = "not_access_token" }}
  end
  local iss, sub = c.iss or "", c.sub or ""
  local sid_key = "{prefix}revoked:none"
  if type(c.sid) == "string" then sid_key = "{prefix}revoked:sid:" .. iss .. "#" .. c.sid end
  local red = redis:new()
  red:set_timeouts(1000, 1000, 1000)
  local ok, err = red:connect("{redis_host}", {redis_port})
  if ok and red:get_reused_times() == 0 then
    -- The gateway's ACL user reads {prefix}revoked:* and nothing else.
    ok, err = red:auth("{redis_user}", "{redis_password}")
  end
  if not ok then
    core.log.error("revocation store unreachable: ", err)
    return 503, {{ error = "temporarily_unavailable" }}
  end
  local v, err2 = red:mget(sid_key, "{prefix}revoked:sub:" .. iss .. "#" .. sub,
    "{prefix}revoked:user:" .. string.lower(c.email))
  if not v then
    core.log.error("revocation store unreachable: ", err2)
    return 503, {{ error = "temporarily_unavailable" }}
  end
  red:set_keepalive(10000, 32)
  local iat = tonumber(c.iat)
  local function before(x)
    local t = tonumber(x)
    return t ~= nil and (iat == nil or iat <= t)
  end
  if (v[1] ~= ngx.null and type(c.sid) == "string") or before(v[2]) or before(v[3]) then
    return 401, {{ error = "invalid_token", error_description = "revoked" }}
  end
  core.request.set_header(ctx, "X-User", c.email)
  core.request.set_header(ctx, "X-User-Iss", iss)
  core.request.set_header(ctx, "X-User-Sub", sub)
  -- Every session header, empty when the claim is absent: the server refuses a request
  -- that lacks one (http.auth.x_user_requires_session).
  core.request.set_header(ctx, "X-User-Sid", type(c.sid) == "string" and c.sid or "")
  core.request.set_header(ctx, "X-User-Iat", iat ~= nil and tostring(iat) or "")
  core.request.set_header(ctx, "X-User-Exp", c.exp ~= nil and tostring(c.exp) or "")
  core.request.set_header(ctx, "X-Userinfo", nil)
end"##
    )
}

/// `compose/apisix/apisix.yaml`: `/oidc/*` verified (JWKS, `iss`, `aud`), checked against the
/// deny-list and proxied with `X-User` and the secret; `/jmap`, `/.well-known/jmap`, `/upload/`,
/// `/download/` passed through for Basic/Bearer at the server. Client identity headers never
/// pass.
pub fn apisix_routes_yaml() -> anyhow::Result<String> {
    apisix_routes_yaml_for(&Net::compose())
}

/// The APISIX routes for the services of `net`.
pub fn apisix_routes_yaml_for(net: &Net) -> anyhow::Result<String> {
    let config = server_config_for(net)?;
    let prefix = &config.revocation.key_prefix;
    let audiences = net.realm().client_ids();
    let lua = apisix_lua(prefix, net);
    let (server, discovery, issuer, secret) = (
        &net.server_http,
        net.discovery_url(),
        net.issuer(),
        &net.gateway_secret,
    );
    let lua_block: String = lua.lines().map(|l| format!("            {l}\n")).collect();
    let oidc_route = format!(
        r#"  - id: oidc
    uris: ["/oidc/*"]
    enable_websocket: true
    upstream: {{ type: roundrobin, nodes: {{ "{server}": 1 }} }}
    plugins:
      openid-connect:
        client_id: {client}
        client_secret: unused-bearer-only
        discovery: {discovery}
        bearer_only: true
        use_jwks: true
        set_userinfo_header: true
        set_access_token_header: false
        set_id_token_header: false
        claim_validator:
          issuer: {{ valid_issuers: ["{issuer}"] }}
          audience: {{ required: true, match_with_client_id: false, valid_audiences: [{auds}] }}
      proxy-rewrite:
        regex_uri: ["^/oidc/(.*)", "/$1"]
        headers:
          set: {{ X-User-Secret: "{secret}", X-Forwarded-Prefix: "/oidc", X-Forwarded-Proto: "http" }}
          remove: ["X-User", "Authorization", "X-Forwarded-Host", "Forwarded"]
      serverless-post-function:
        phase: access
        functions:
          - |
{lua_block}"#,
        client = audiences.first().map(String::as_str).unwrap_or("mail-oidc"),
        auds = audiences
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let pass = r#"  - id: pass-through
    uris: ["/jmap", "/jmap/*", "/.well-known/jmap", "/upload/*", "/download/*"]
    enable_websocket: true
    upstream: { type: roundrobin, nodes: { "SERVER": 1 } }
    plugins:
      proxy-rewrite:
        headers:
          remove: ["X-User", "X-User-Secret", "X-User-Iss", "X-User-Sub", "X-User-Sid", "X-User-Iat", "X-User-Exp", "X-Forwarded-Prefix", "X-Forwarded-Host", "Forwarded"]
"#
    .replace("SERVER", server);
    Ok(format!(
        "# Generated by mail-oidc-harness (harness/src/compose.rs): the OIDC gateway's routes.\n\
         routes:\n{oidc_route}{pass}#END\n"
    ))
}

/// `compose/redis/users.acl`: no anonymous access, the server's and the gateway's users
/// (password hashes only; Redis's ACL files take no comments, see compose/README.md).
pub fn redis_acl_file() -> String {
    Net::compose().redis_acl.render()
}

/// Every generated file, as (path under the repository root, contents).
pub fn files() -> anyhow::Result<Vec<(PathBuf, String)>> {
    let realm_json = serde_json::to_string_pretty(&keycloak_realm())? + "\n";
    let server = format!(
        "# Generated by mail-oidc-harness (harness/src/compose.rs): the server in the compose \
         deployment.\n{}",
        toml::to_string(&server_config()?)?
    );
    Ok(vec![
        (PathBuf::from("keycloak-realm/realm.json"), realm_json),
        (PathBuf::from("compose/server.toml"), server),
        (PathBuf::from("compose/ldap/slapd.conf"), slapd_conf()),
        (
            PathBuf::from("compose/apisix/config.yaml"),
            apisix_config_yaml(),
        ),
        (
            PathBuf::from("compose/apisix/apisix.yaml"),
            apisix_routes_yaml()?,
        ),
        (PathBuf::from("compose/redis/users.acl"), redis_acl_file()),
    ])
}

/// Writes every generated file under `root` (the repository).
pub fn write_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (path, text) in files()? {
        let full = root.join(&path);
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&full, text)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn committed_files_are_the_renderings() {
        for (path, expected) in files().expect("render") {
            let committed = std::fs::read_to_string(repo().join(&path)).unwrap_or_default();
            assert!(
                committed == expected,
                "{} is not what harness/src/compose.rs renders: run `mail-oidc compose-files`",
                path.display()
            );
        }
    }

    #[test]
    fn the_compose_network_matches_the_documented_addresses() {
        let net = Net::compose();
        assert_eq!(net.issuer(), ISSUER);
        assert_eq!(net.jwks_url(), JWKS_URL);
        assert_eq!(net.discovery_url(), DISCOVERY_URL);
        assert_eq!(net.redis_url(), REDIS_URL);
        assert_eq!(net.backchannel_logout_url(), BACKCHANNEL_LOGOUT_URL);
    }

    #[test]
    fn the_server_config_is_valid_and_points_at_the_compose_services() {
        let c = server_config().expect("config");
        let oidc = c.oidc.expect("oidc");
        assert_eq!(oidc.issuer.as_deref(), Some(ISSUER));
        assert_eq!(oidc.jwks_url.as_deref(), Some(JWKS_URL));
        assert_eq!(oidc.audience, ["mail-oidc", "webmail"]);
        assert_eq!(c.revocation.redis_url.as_deref(), Some(REDIS_URL));
        assert_eq!(c.http.auth.x_user_secret.as_deref(), Some(GATEWAY_SECRET));
        assert_eq!(c.server.admins, ["mailadmin@example.com"]);
    }

    #[test]
    fn the_realm_logs_out_at_the_server_and_federates_openldap() {
        let r = keycloak_realm();
        assert_eq!(r["realm"], KEYCLOAK_REALM);
        for client in r["clients"].as_array().expect("clients") {
            assert_eq!(
                client["attributes"]["backchannel.logout.url"],
                BACKCHANNEL_LOGOUT_URL
            );
        }
        assert_eq!(
            r["components"]["org.keycloak.storage.UserStorageProvider"][0]["config"]["connectionUrl"]
                [0],
            LDAP_URL
        );
        assert!(
            r["components"]
                .get("org.keycloak.keys.KeyProvider")
                .is_none(),
            "the demo signs with Keycloak's own key"
        );
    }

    fn yaml(path: &str) -> serde_yaml::Value {
        let text = std::fs::read_to_string(repo().join(path)).expect("committed file");
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
    }

    #[test]
    fn compose_file_runs_the_rendered_configs_on_the_pinned_images() {
        let compose = yaml("compose/docker-compose.yml");
        let services = &compose["services"];
        assert_eq!(services["keycloak"]["image"].as_str(), Some(KEYCLOAK_IMAGE));
        assert_eq!(services["redis"]["image"].as_str(), Some(REDIS_IMAGE));
        assert_eq!(services["apisix"]["image"].as_str(), Some(APISIX_IMAGE));
        let mounts = |svc: &str| -> Vec<String> {
            services[svc]["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        assert!(
            mounts("keycloak")
                .iter()
                .any(|m| m.starts_with("../keycloak-realm:/opt/keycloak/data/import"))
        );
        assert!(
            mounts("mail-oidc")
                .iter()
                .any(|m| m.starts_with("./server.toml:"))
        );
        assert!(
            mounts("apisix")
                .iter()
                .any(|m| m.starts_with("./apisix/apisix.yaml:"))
        );
        // Redis loads the generated ACL from where it is mounted: nobody gets in anonymously.
        let acl_mount = mounts("redis")
            .into_iter()
            .find(|m| m.starts_with("./redis/users.acl:"))
            .expect("the ACL file is mounted");
        let inside = acl_mount.split(':').nth(1).expect("mount target");
        let command: Vec<&str> = services["redis"]["command"]
            .as_sequence()
            .expect("redis command")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let flag = command
            .iter()
            .position(|a| *a == "--aclfile")
            .expect("--aclfile");
        assert_eq!(command.get(flag + 1), Some(&inside));
        assert!(redis_acl_file().starts_with("user default off "));
        let env = &services["keycloak"]["environment"];
        assert_eq!(env["KC_HOSTNAME"].as_str(), Some("http://localhost:8080"));
        assert_eq!(
            ISSUER,
            format!("http://localhost:8080/realms/{KEYCLOAK_REALM}")
        );
        // The generated APISIX files are YAML too.
        assert!(yaml("compose/apisix/config.yaml")["deployment"].is_mapping());
        assert!(yaml("compose/apisix/apisix.yaml")["routes"].is_sequence());
        let dockerfile =
            std::fs::read_to_string(repo().join("compose/Dockerfile")).expect("Dockerfile");
        assert!(dockerfile.contains(&format!("FROM {RUST_IMAGE} AS build")));
        assert!(dockerfile.contains(&format!("FROM {DEBIAN_IMAGE}")));
        let ldap = std::fs::read_to_string(repo().join("compose/ldap/Dockerfile"))
            .expect("ldap Dockerfile");
        assert!(ldap.contains("COPY ldap-seed/seed.ldif"));
        assert!(slapd_conf().contains(&format!("directory       {LDAP_DATA_DIR}/data")));
    }

    #[test]
    fn apisix_checks_the_server_deny_list_keys_and_fails_closed() {
        let routes = apisix_routes_yaml().expect("routes");
        assert!(routes.ends_with("#END\n"), "APISIX needs the #END marker");
        for needle in [
            "bearer_only: true",
            "use_jwks: true",
            &format!("discovery: {DISCOVERY_URL}"),
            &format!("valid_issuers: [\"{ISSUER}\"]"),
            "valid_audiences: [\"mail-oidc\", \"webmail\"]",
            "mail-oidc:revoked:sid:\" .. iss .. \"#\" .. c.sid",
            "mail-oidc:revoked:sub:\" .. iss .. \"#\" .. sub",
            "mail-oidc:revoked:user:\" .. string.lower(c.email)",
            "return 503",
            "core.request.set_header(ctx, \"X-User\", c.email)",
            &format!("X-User-Secret: \"{GATEWAY_SECRET}\""),
            "remove: [\"X-User\", \"Authorization\"",
        ] {
            assert!(routes.contains(needle), "missing {needle:?} in:\n{routes}");
        }
    }
}
