//! ONE realm description (base DN, users, OIDC clients) rendered for every component that needs
//! it: the LDAP seed (LDIF), LemonLDAP::NG's File-backend configuration (`lmConf-<n>.json`) and
//! Keycloak's realm JSON (users come from the LDAP directory through user federation).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

/// The users and OIDC clients of the test environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realm {
    /// LDAP suffix, e.g. `dc=example,dc=com`.
    pub base_dn: String,
    /// Where the users live, e.g. `ou=people,dc=example,dc=com`.
    pub people_dn: String,
    /// LDAP administrator (slapd `rootdn`); also the IdP's and the server's service account.
    pub admin_dn: String,
    pub admin_password: String,
    pub users: Vec<RealmUser>,
    pub clients: Vec<RealmClient>,
}

/// One `inetOrgPerson` under `people_dn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmUser {
    pub uid: String,
    pub mail: String,
    pub password: String,
    pub given_name: String,
    pub family_name: String,
}

/// One OIDC client (relying party).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmClient {
    pub client_id: String,
    /// `None`: a public client (a browser app: authorization code with PKCE, no secret).
    pub secret: Option<String>,
    pub redirect_uris: Vec<String>,
    /// Back-channel logout endpoint (session required); `None` = none for this client. The
    /// stack points every client at its server's `/backchannel-logout`.
    pub backchannel_logout_url: Option<String>,
    /// Lifetime of the access (and ID) tokens issued to this client.
    pub access_token_seconds: u64,
}

impl RealmClient {
    pub fn is_public(&self) -> bool {
        self.secret.is_none()
    }
}

/// LemonLDAP::NG's Redis session store: Perl Redis's `sock`, `username` and `password`.
#[derive(Clone)]
pub struct LlngRedis {
    pub socket: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for LlngRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlngRedis")
            .field("socket", &self.socket)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where the LemonLDAP::NG configuration points and which key it signs with.
#[derive(Debug, Clone)]
pub struct LlngParams {
    /// Portal URL with a trailing slash, e.g. `http://localhost:8080/`; the issuer is this
    /// without the slash. The host must be under `domain` (`localhost`).
    pub portal_url: String,
    /// `ldap://127.0.0.1:<port>`.
    pub ldap_url: String,
    /// How LemonLDAP::NG reaches Redis for sessions (SSO sessions in db 0, persistent sessions
    /// in db 1): the owner-only socket, as its ACL user.
    pub redis: LlngRedis,
    /// PKCS#1 PEM private key the IdP signs tokens with.
    pub signing_private_pem: String,
    /// SPKI PEM public key published in the JWKS.
    pub signing_public_pem: String,
    /// `kid` of that key in the JWKS and in token headers.
    pub kid: String,
    /// Configuration number; LemonLDAP::NG serves the highest `lmConf-<n>.json`.
    pub cfg_num: u32,
    /// Directory for the portal's local caches.
    pub run_dir: PathBuf,
    /// LemonLDAP::NG version the configuration is written for.
    pub cfg_version: String,
}

/// Access-token lifetime of the demo realm's clients: short, as a revocation-aware deployment
/// wants (a refresh is cheap; a stolen token is worth little for long).
pub const DEFAULT_TOKEN_SECONDS: u64 = 600;
/// The demo realm's administrator (uid).
pub const ADMIN_UID: &str = "mailadmin";
/// The demo realm's public web client.
pub const WEB_CLIENT: &str = "webmail";

/// What Keycloak's realm JSON needs besides the realm.
#[derive(Debug, Clone)]
pub struct KeycloakParams {
    /// The realm's name (its issuer is `<keycloak>/realms/<name>`).
    pub realm_name: String,
    /// `ldap://host:port` as Keycloak reaches the directory.
    pub ldap_url: String,
    /// PKCS#8 PEM of the signing key (an imported `rsa` key provider, so the harness can forge
    /// tokens with hostile claims); `None` = Keycloak's own generated key.
    pub signing_pkcs8_pem: Option<String>,
}

/// Name of the key provider [`Realm::to_keycloak_json`] imports.
pub const KEYCLOAK_KEY_PROVIDER: &str = "mail-oidc-rsa";

/// Claims every client gets, as (claim, LDAP-exported session attribute).
const CLAIMS: [(&str, &str); 5] = [
    ("email", "mail"),
    ("preferred_username", "uid"),
    ("name", "cn"),
    ("family_name", "sn"),
    ("given_name", "givenName"),
];

impl RealmUser {
    /// `cn`: given and family name.
    pub fn common_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}

impl Realm {
    /// The demo realm: users `demo`, `bob` and the administrator `mailadmin`; the confidential
    /// client `mail-oidc` (auth code, password, client credentials) and the public web client
    /// `webmail` (auth code + PKCE).
    pub fn demo() -> Self {
        Self {
            base_dn: "dc=example,dc=com".into(),
            people_dn: "ou=people,dc=example,dc=com".into(),
            admin_dn: "cn=admin,dc=example,dc=com".into(),
            admin_password: "admin-password".into(),
            users: vec![
                RealmUser {
                    uid: "demo".into(),
                    mail: "demo@example.com".into(),
                    password: "demo-password".into(),
                    given_name: "Demo".into(),
                    family_name: "User".into(),
                },
                RealmUser {
                    uid: "bob".into(),
                    mail: "bob@example.com".into(),
                    password: "bob-password".into(),
                    given_name: "Bob".into(),
                    family_name: "Example".into(),
                },
                RealmUser {
                    uid: ADMIN_UID.into(),
                    mail: "mailadmin@example.com".into(),
                    password: "mailadmin-password".into(),
                    given_name: "Mail".into(),
                    family_name: "Administrator".into(),
                },
            ],
            clients: vec![
                RealmClient {
                    client_id: "mail-oidc".into(),
                    secret: Some("mail-oidc-secret".into()),
                    redirect_uris: vec!["http://localhost/mail-oidc/callback".into()],
                    backchannel_logout_url: None,
                    access_token_seconds: DEFAULT_TOKEN_SECONDS,
                },
                RealmClient {
                    client_id: WEB_CLIENT.into(),
                    secret: None,
                    redirect_uris: vec!["http://localhost/webmail/callback".into()],
                    backchannel_logout_url: None,
                    access_token_seconds: DEFAULT_TOKEN_SECONDS,
                },
            ],
        }
    }

    /// The DN of a user of this realm.
    pub fn user_dn(&self, uid: &str) -> String {
        format!("uid={},{}", escape_dn_value(uid), self.people_dn)
    }

    pub fn user(&self, uid: &str) -> Option<&RealmUser> {
        self.users.iter().find(|u| u.uid == uid)
    }

    pub fn client(&self, client_id: &str) -> Option<&RealmClient> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    /// Every client id: the audiences a resource server of this realm accepts.
    pub fn client_ids(&self) -> Vec<String> {
        self.clients.iter().map(|c| c.client_id.clone()).collect()
    }

    /// The administrator allowed to call the server's `/admin/revoke`.
    pub fn admin(&self) -> Option<&RealmUser> {
        self.user(ADMIN_UID)
    }

    /// The public web client (auth code + PKCE), if the realm has one.
    pub fn web_client(&self) -> Option<&RealmClient> {
        self.clients.iter().find(|c| c.is_public())
    }

    /// Points every client's back-channel logout at `url` (session required).
    pub fn with_backchannel_logout(mut self, url: &str) -> Self {
        for c in &mut self.clients {
            c.backchannel_logout_url = Some(url.to_string());
        }
        self
    }

    /// The LDAP seed: base entry, people OU, and every user as an `inetOrgPerson`.
    pub fn to_ldif(&self) -> String {
        let mut out = String::new();
        let (base_attr, base_value) = first_rdn(&self.base_dn);
        let mut base = vec![
            ("objectClass", "top".to_string()),
            ("objectClass", "dcObject".to_string()),
            ("objectClass", "organization".to_string()),
            ("o", base_value.clone()),
        ];
        if base_attr.eq_ignore_ascii_case("dc") {
            base.push(("dc", base_value));
        }
        push_entry(&mut out, &self.base_dn, &base);
        let (_, ou) = first_rdn(&self.people_dn);
        push_entry(
            &mut out,
            &self.people_dn,
            &[
                ("objectClass", "top".to_string()),
                ("objectClass", "organizationalUnit".to_string()),
                ("ou", ou),
            ],
        );
        for user in &self.users {
            push_entry(&mut out, &self.user_dn(&user.uid), &user_attributes(user));
        }
        out
    }

    /// LemonLDAP::NG `lmConf-<n>.json`: LDAP authentication and user DB, sessions in Redis, the
    /// OIDC provider with every client as a confidential RP issuing JWT access tokens.
    pub fn to_llng_conf(&self, p: &LlngParams) -> Value {
        let issuer = p.portal_url.trim_end_matches('/').to_string();
        let run = p.run_dir.display().to_string();
        let cfg_date = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims: Map<String, Value> = CLAIMS
            .iter()
            .map(|(claim, attr)| (claim.to_string(), json!(attr)))
            .collect();
        let mut rp_options = Map::new();
        let mut rp_claims = Map::new();
        for client in &self.clients {
            rp_options.insert(client.client_id.clone(), rp_options_for(client));
            rp_claims.insert(client.client_id.clone(), Value::Object(claims.clone()));
        }
        let general = json!({
            "cfgNum": p.cfg_num,
            "cfgAuthor": "mail-oidc-harness",
            "cfgDate": cfg_date.to_string(),
            "cfgVersion": p.cfg_version,
            "cfgLog": "generated by mail-oidc-harness",
            "portal": p.portal_url,
            // Mandatory: the portal refuses to start without a cookie domain.
            "domain": "localhost",
            "cookieName": "lemonldap",
            "securedCookie": 0,
            "httpOnly": 1,
            "timeout": 72000,
            "logLevel": "notice",
            // The SecurityImage captcha needs Image::Magick, which is not installed; it loads
            // whenever any captcha is enabled, and the mail one is on by default.
            "captcha_login_enabled": 0,
            "captcha_mail_enabled": 0,
            "captcha_register_enabled": 0,
            "notification": 0,
            "loginHistoryEnabled": 0,
            "locationRules": {},
            "exportedHeaders": {},
            "macros": {},
            "groups": {},
            "reloadUrls": {},
        });
        let ldap = json!({
            "authentication": "LDAP",
            "userDB": "Same",
            "passwordDB": "LDAP",
            "registerDB": "Null",
            "ldapServer": p.ldap_url,
            "ldapBase": self.people_dn,
            "managerDn": self.admin_dn,
            "managerPassword": self.admin_password,
            "AuthLDAPFilter": "(&(|(uid=$user)(mail=$user))(objectClass=inetOrgPerson))",
            "mailLDAPFilter": "(&(mail=$mail)(objectClass=inetOrgPerson))",
            "ldapExportedVars": {
                "uid": "uid", "cn": "cn", "mail": "mail", "sn": "sn", "givenName": "givenName"
            },
            "exportedVars": {},
            "whatToTrace": "uid",
            "ldapPpolicyControl": 0,
            "ldapSetPassword": 0,
            "portalSkin": "bootstrap",
        });
        let sessions = json!({
            "globalStorage": "Apache::Session::Browseable::Redis",
            "globalStorageOptions": {
                "sock": p.redis.socket, "username": p.redis.username, "password": p.redis.password
            },
            "persistentStorage": "Apache::Session::Browseable::Redis",
            "persistentStorageOptions": {
                "sock": p.redis.socket, "username": p.redis.username,
                "password": p.redis.password, "database": 1
            },
            "localSessionStorage": "Cache::FileCache",
            "localSessionStorageOptions": {
                "cache_root": format!("{run}/cache"),
                "cache_depth": 3,
                "default_expires_in": 600,
                "namespace": "lemonldap-ng-sessions",
                "directory_umask": "007"
            },
        });
        let oidc = json!({
            "issuerDBOpenIDConnectActivation": 1,
            "issuerDBOpenIDConnectPath": "^/oauth2/",
            "issuerDBOpenIDConnectRule": 1,
            "oidcServiceMetaDataIssuer": issuer,
            "oidcServicePrivateKeySig": p.signing_private_pem,
            "oidcServicePublicKeySig": p.signing_public_pem,
            "oidcServiceKeyIdSig": p.kid,
            "oidcServiceKeyTypeSig": "RSA",
            "oidcServiceAllowAuthorizationCodeFlow": 1,
            "oidcServiceAllowImplicitFlow": 0,
            "oidcServiceAllowHybridFlow": 0,
            "oidcServiceAllowDynamicRegistration": 0,
            "oidcServiceIgnoreScopeForClaims": 1,
            "oidcRPMetaDataOptions": rp_options,
            "oidcRPMetaDataExportedVars": rp_claims,
            "oidcRPMetaDataOptionsExtraClaims": {},
        });
        // Several json! calls: one would exceed the macro recursion limit.
        let mut conf = Map::new();
        for part in [general, ldap, sessions, oidc] {
            if let Value::Object(map) = part {
                conf.extend(map);
            }
        }
        Value::Object(conf)
    }
}

impl Realm {
    /// Keycloak's realm JSON (importable at start or through the admin API): every client with
    /// an audience mapper (so its access tokens carry its own client id, as LemonLDAP::NG's do),
    /// back-channel logout with session required and front-channel logout off, the access-token
    /// lifetime; the signing key; and read-only LDAP user federation with the mappers listed
    /// (a realm import creates no default mappers): uid -> username, mail -> email,
    /// cn -> firstName, sn -> lastName.
    pub fn to_keycloak_json(&self, p: &KeycloakParams) -> Value {
        let clients: Vec<Value> = self.clients.iter().map(keycloak_client).collect();
        let lifetime = self
            .clients
            .iter()
            .map(|c| c.access_token_seconds)
            .min()
            .unwrap_or(DEFAULT_TOKEN_SECONDS);
        let mut components = Map::new();
        if let Some(pem) = &p.signing_pkcs8_pem {
            components.insert(
                "org.keycloak.keys.KeyProvider".into(),
                json!([{
                    "name": KEYCLOAK_KEY_PROVIDER,
                    "providerId": "rsa",
                    "subComponents": {},
                    "config": {
                        "privateKey": [pem],
                        // Above the generated keys (100): this one signs.
                        "priority": ["200"],
                        "algorithm": ["RS256"],
                        "keyUse": ["sig"],
                        "active": ["true"],
                        "enabled": ["true"],
                    },
                }]),
            );
        }
        let mapper = |name: &str, ldap: &str, model: &str, mandatory: bool| {
            json!({
                "name": name,
                "providerId": "user-attribute-ldap-mapper",
                "subComponents": {},
                "config": {
                    "ldap.attribute": [ldap],
                    "user.model.attribute": [model],
                    "read.only": ["true"],
                    "always.read.value.from.ldap": ["true"],
                    "is.mandatory.in.ldap": [if mandatory { "true" } else { "false" }],
                },
            })
        };
        components.insert(
            "org.keycloak.storage.UserStorageProvider".into(),
            json!([{
                "name": "ldap",
                "providerId": "ldap",
                "config": {
                    "enabled": ["true"],
                    "priority": ["0"],
                    "vendor": ["other"],
                    "editMode": ["READ_ONLY"],
                    "authType": ["simple"],
                    "connectionUrl": [p.ldap_url],
                    "usersDn": [self.people_dn],
                    "bindDn": [self.admin_dn],
                    "bindCredential": [self.admin_password],
                    "searchScope": ["1"],
                    "usernameLDAPAttribute": ["uid"],
                    "rdnLDAPAttribute": ["uid"],
                    "uuidLDAPAttribute": ["entryUUID"],
                    "userObjectClasses": ["inetOrgPerson, organizationalPerson"],
                    "importEnabled": ["true"],
                    "syncRegistrations": ["false"],
                    "pagination": ["true"],
                    "trustEmail": ["true"],
                    "useTruststoreSpi": ["never"],
                    "connectionPooling": ["false"],
                },
                "subComponents": {
                    "org.keycloak.storage.ldap.mappers.LDAPStorageMapper": [
                        mapper("username", "uid", "username", true),
                        mapper("email", "mail", "email", false),
                        mapper("first name", "cn", "firstName", true),
                        mapper("last name", "sn", "lastName", true),
                    ],
                },
            }]),
        );
        json!({
            "realm": p.realm_name,
            "enabled": true,
            "sslRequired": "none",
            "loginWithEmailAllowed": true,
            "accessTokenLifespan": lifetime,
            "revokeRefreshToken": false,
            "clients": clients,
            "components": components,
        })
    }
}

fn keycloak_client(client: &RealmClient) -> Value {
    let public = client.is_public();
    let mut attributes = json!({
        "access.token.lifespan": client.access_token_seconds.to_string(),
        "post.logout.redirect.uris": client.redirect_uris.join("##"),
        "backchannel.logout.session.required": "true",
        "backchannel.logout.revoke.offline.tokens": "false",
    });
    if public {
        attributes["pkce.code.challenge.method"] = json!("S256");
    }
    if let Some(url) = &client.backchannel_logout_url {
        attributes["backchannel.logout.url"] = json!(url);
    }
    let mut c = json!({
        "clientId": client.client_id,
        "enabled": true,
        "protocol": "openid-connect",
        "publicClient": public,
        "standardFlowEnabled": true,
        // Password and client-credentials grants only for the confidential client.
        "directAccessGrantsEnabled": !public,
        "serviceAccountsEnabled": !public,
        "redirectUris": client.redirect_uris,
        "webOrigins": [],
        // Keycloak sends no logout token to a client with front-channel logout on.
        "frontchannelLogout": false,
        "attributes": attributes,
        "protocolMappers": [{
            "name": "audience",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {
                "included.client.audience": client.client_id,
                "access.token.claim": "true",
                "id.token.claim": "false",
                "introspection.token.claim": "true",
            },
        }],
    });
    if let (Some(secret), Some(map)) = (&client.secret, c.as_object_mut()) {
        map.insert("secret".into(), json!(secret));
    }
    c
}

fn rp_options_for(client: &RealmClient) -> Value {
    let redirects = client.redirect_uris.join(" ");
    let public = client.is_public();
    let mut o = json!({
        "oidcRPMetaDataOptionsClientID": client.client_id,
        "oidcRPMetaDataOptionsRedirectUris": redirects,
        "oidcRPMetaDataOptionsPostLogoutRedirectUris": redirects,
        "oidcRPMetaDataOptionsPublic": u8::from(public),
        // A browser app cannot keep a secret: PKCE protects its code instead.
        "oidcRPMetaDataOptionsRequirePKCE": u8::from(public),
        "oidcRPMetaDataOptionsBypassConsent": 1,
        "oidcRPMetaDataOptionsIDTokenSignAlg": "RS256",
        "oidcRPMetaDataOptionsAccessTokenJWT": 1,
        "oidcRPMetaDataOptionsAccessTokenSignAlg": "RS256",
        // User claims in the JWT access token and the ID token, not only at userinfo.
        "oidcRPMetaDataOptionsAccessTokenClaims": 1,
        "oidcRPMetaDataOptionsIDTokenForceClaims": 1,
        // Password and client-credentials grants only for the confidential client.
        "oidcRPMetaDataOptionsAllowPasswordGrant": u8::from(!public),
        "oidcRPMetaDataOptionsAllowClientCredentialsGrant": u8::from(!public),
        "oidcRPMetaDataOptionsRefreshToken": 1,
        "oidcRPMetaDataOptionsAllowOffline": 1,
        "oidcRPMetaDataOptionsUserIDAttr": "uid",
        "oidcRPMetaDataOptionsLogoutSessionRequired": 1,
        "oidcRPMetaDataOptionsLogoutBypassConfirm": 1,
        "oidcRPMetaDataOptionsAccessTokenExpiration": client.access_token_seconds,
        "oidcRPMetaDataOptionsIDTokenExpiration": client.access_token_seconds,
    });
    if let (Some(secret), Some(map)) = (&client.secret, o.as_object_mut()) {
        map.insert("oidcRPMetaDataOptionsClientSecret".into(), json!(secret));
    }
    if let (Some(url), Some(map)) = (&client.backchannel_logout_url, o.as_object_mut()) {
        map.insert("oidcRPMetaDataOptionsLogoutType".into(), json!("back"));
        map.insert("oidcRPMetaDataOptionsLogoutUrl".into(), json!(url));
    }
    o
}

fn user_attributes(user: &RealmUser) -> Vec<(&'static str, String)> {
    vec![
        ("objectClass", "top".into()),
        ("objectClass", "person".into()),
        ("objectClass", "organizationalPerson".into()),
        ("objectClass", "inetOrgPerson".into()),
        ("uid", user.uid.clone()),
        ("cn", user.common_name()),
        ("sn", user.family_name.clone()),
        ("givenName", user.given_name.clone()),
        ("mail", user.mail.clone()),
        ("userPassword", user.password.clone()),
    ]
}

/// The LDAP attributes of a user, for an LDAP add of the same entry [`Realm::to_ldif`] writes.
pub fn ldap_attributes(user: &RealmUser) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in user_attributes(user) {
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => out.push((name.to_string(), vec![value])),
        }
    }
    out
}

/// `attr=value` of the first RDN; the whole DN as value when it has no `=`.
fn first_rdn(dn: &str) -> (String, String) {
    let rdn = dn.split(',').next().unwrap_or(dn);
    match rdn.split_once('=') {
        Some((a, v)) => (a.trim().to_string(), v.trim().to_string()),
        None => (String::new(), rdn.to_string()),
    }
}

/// RFC 4514 escaping of an attribute value inside a DN.
fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn push_entry(out: &mut String, dn: &str, attrs: &[(&str, String)]) {
    if !out.is_empty() {
        out.push('\n');
    }
    push_line(out, "dn", dn);
    for (name, value) in attrs {
        push_line(out, name, value);
    }
}

/// One `attr: value` line; base64 (`attr:: ...`) when RFC 2849 does not allow the value as is.
fn push_line(out: &mut String, name: &str, value: &str) {
    let safe = value
        .bytes()
        .all(|b| b.is_ascii() && b != b'\n' && b != b'\r' && b != 0)
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        out.push_str(&format!("{name}: {value}\n"));
    } else {
        out.push_str(&format!("{name}:: {}\n", STANDARD.encode(value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> LlngParams {
        LlngParams {
            portal_url: "http://localhost:8080/".into(),
            ldap_url: "ldap://127.0.0.1:3890".into(),
            redis: LlngRedis {
                socket: "/tmp/stack/redis/redis.sock".into(),
                username: "lemonldap".into(),
                password: "pw".into(),
            },
            signing_private_pem: "PRIVATE".into(),
            signing_public_pem: "PUBLIC".into(),
            kid: "k1-test".into(),
            cfg_num: 3,
            run_dir: PathBuf::from("/tmp/run"),
            cfg_version: "2.21.3".into(),
        }
    }

    #[test]
    fn committed_seed_is_the_demo_realm() {
        let committed = include_str!("../../ldap-seed/seed.ldif");
        assert_eq!(committed, Realm::demo().to_ldif());
    }

    #[test]
    fn ldif_has_every_user_attribute() {
        let ldif = Realm::demo().to_ldif();
        assert!(ldif.starts_with("dn: dc=example,dc=com\n"));
        assert!(ldif.contains("\ndn: ou=people,dc=example,dc=com\n"));
        let demo = "dn: uid=demo,ou=people,dc=example,dc=com\nobjectClass: top\n\
                    objectClass: person\nobjectClass: organizationalPerson\n\
                    objectClass: inetOrgPerson\nuid: demo\ncn: Demo User\nsn: User\n\
                    givenName: Demo\nmail: demo@example.com\nuserPassword: demo-password\n";
        assert!(ldif.contains(demo), "{ldif}");
        assert!(ldif.contains("mail: bob@example.com\n"));
        // Entries are separated by exactly one blank line.
        assert_eq!(ldif.matches("\n\ndn: ").count(), 4);
    }

    #[test]
    fn ldif_base64_encodes_unsafe_values() {
        let mut realm = Realm::demo();
        realm.users[0].given_name = "Zoë".into();
        realm.users[0].password = " lead".into();
        let ldif = realm.to_ldif();
        assert!(ldif.contains(&format!("givenName:: {}\n", STANDARD.encode("Zoë"))));
        assert!(ldif.contains(&format!("userPassword:: {}\n", STANDARD.encode(" lead"))));
    }

    #[test]
    fn user_dn_escapes_specials() {
        let realm = Realm::demo();
        assert_eq!(
            realm.user_dn("a,b+c"),
            "uid=a\\,b\\+c,ou=people,dc=example,dc=com"
        );
    }

    #[test]
    fn llng_conf_core_settings() {
        let conf = Realm::demo().to_llng_conf(&params());
        assert_eq!(conf["cfgNum"], 3);
        assert_eq!(conf["domain"], "localhost");
        assert_eq!(conf["oidcServiceMetaDataIssuer"], "http://localhost:8080");
        assert_eq!(conf["portal"], "http://localhost:8080/");
        assert_eq!(conf["oidcServiceKeyIdSig"], "k1-test");
        assert_eq!(conf["oidcServicePrivateKeySig"], "PRIVATE");
        assert_eq!(conf["authentication"], "LDAP");
        assert_eq!(conf["ldapServer"], "ldap://127.0.0.1:3890");
        assert_eq!(conf["ldapBase"], "ou=people,dc=example,dc=com");
        assert_eq!(conf["managerDn"], "cn=admin,dc=example,dc=com");
        assert_eq!(conf["globalStorage"], "Apache::Session::Browseable::Redis");
        assert_eq!(
            conf["globalStorageOptions"]["sock"],
            "/tmp/stack/redis/redis.sock"
        );
        assert_eq!(conf["globalStorageOptions"]["username"], "lemonldap");
        assert_eq!(conf["persistentStorageOptions"]["database"], 1);
        assert_eq!(conf["persistentStorageOptions"]["database"], 1);
        assert_eq!(
            conf["localSessionStorageOptions"]["cache_root"],
            "/tmp/run/cache"
        );
    }

    #[test]
    fn llng_conf_has_every_client_as_rp() {
        let mut realm = Realm::demo();
        realm.clients[1].backchannel_logout_url = Some("http://127.0.0.1:9/bcl".into());
        let conf = realm.to_llng_conf(&params());
        let rps = conf["oidcRPMetaDataOptions"].as_object().expect("rp map");
        assert_eq!(rps.len(), 2);
        let rp = &rps["mail-oidc"];
        assert_eq!(rp["oidcRPMetaDataOptionsClientSecret"], "mail-oidc-secret");
        assert_eq!(
            rp["oidcRPMetaDataOptionsRedirectUris"],
            "http://localhost/mail-oidc/callback"
        );
        for key in [
            "AccessTokenJWT",
            "AllowPasswordGrant",
            "AllowClientCredentialsGrant",
            "RefreshToken",
        ] {
            assert_eq!(rp[format!("oidcRPMetaDataOptions{key}")], 1, "{key}");
        }
        assert_eq!(rp["oidcRPMetaDataOptionsUserIDAttr"], "uid");
        assert!(rp.get("oidcRPMetaDataOptionsLogoutType").is_none());
        let web = &rps["webmail"];
        assert_eq!(web["oidcRPMetaDataOptionsPublic"], 1);
        assert_eq!(web["oidcRPMetaDataOptionsRequirePKCE"], 1);
        assert!(web.get("oidcRPMetaDataOptionsClientSecret").is_none());
        assert_eq!(web["oidcRPMetaDataOptionsAllowPasswordGrant"], 0);
        assert_eq!(rp["oidcRPMetaDataOptionsPublic"], 0);
        assert_eq!(web["oidcRPMetaDataOptionsLogoutType"], "back");
        assert_eq!(web["oidcRPMetaDataOptionsLogoutSessionRequired"], 1);
        assert_eq!(
            web["oidcRPMetaDataOptionsLogoutUrl"],
            "http://127.0.0.1:9/bcl"
        );
        let claims = &conf["oidcRPMetaDataExportedVars"]["webmail"];
        assert_eq!(claims["email"], "mail");
        assert_eq!(claims["preferred_username"], "uid");
        assert_eq!(claims["name"], "cn");
        assert_eq!(claims["family_name"], "sn");
        assert_eq!(claims["given_name"], "givenName");
    }

    #[test]
    fn keycloak_realm_has_clients_mappers_logout_and_ldap() {
        let realm = Realm::demo().with_backchannel_logout("http://127.0.0.1:9/backchannel-logout");
        let json = realm.to_keycloak_json(&KeycloakParams {
            realm_name: "mail".into(),
            ldap_url: "ldap://127.0.0.1:389".into(),
            signing_pkcs8_pem: Some("PKCS8".into()),
        });
        assert_eq!(json["realm"], "mail");
        assert_eq!(json["sslRequired"], "none");
        let clients = json["clients"].as_array().expect("clients");
        assert_eq!(clients.len(), 2);
        let conf = &clients[0];
        assert_eq!(conf["clientId"], "mail-oidc");
        assert_eq!(conf["secret"], "mail-oidc-secret");
        assert_eq!(conf["publicClient"], false);
        assert_eq!(conf["directAccessGrantsEnabled"], true);
        assert_eq!(conf["frontchannelLogout"], false);
        assert_eq!(
            conf["attributes"]["backchannel.logout.url"],
            "http://127.0.0.1:9/backchannel-logout"
        );
        assert_eq!(
            conf["attributes"]["backchannel.logout.session.required"],
            "true"
        );
        assert_eq!(
            conf["protocolMappers"][0]["config"]["included.client.audience"],
            "mail-oidc"
        );
        let web = &clients[1];
        assert_eq!(web["publicClient"], true);
        assert!(web.get("secret").is_none());
        assert_eq!(web["directAccessGrantsEnabled"], false);
        assert_eq!(web["attributes"]["pkce.code.challenge.method"], "S256");
        let key = &json["components"]["org.keycloak.keys.KeyProvider"][0];
        assert_eq!(key["providerId"], "rsa");
        assert_eq!(key["config"]["privateKey"][0], "PKCS8");
        let ldap = &json["components"]["org.keycloak.storage.UserStorageProvider"][0];
        assert_eq!(ldap["config"]["connectionUrl"][0], "ldap://127.0.0.1:389");
        assert_eq!(ldap["config"]["usersDn"][0], "ou=people,dc=example,dc=com");
        assert_eq!(ldap["config"]["editMode"][0], "READ_ONLY");
        let mappers: Vec<(String, String)> =
            ldap["subComponents"]["org.keycloak.storage.ldap.mappers.LDAPStorageMapper"]
                .as_array()
                .expect("mappers")
                .iter()
                .map(|m| {
                    (
                        m["config"]["ldap.attribute"][0]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                        m["config"]["user.model.attribute"][0]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect();
        for pair in [
            ("uid", "username"),
            ("mail", "email"),
            ("cn", "firstName"),
            ("sn", "lastName"),
        ] {
            assert!(
                mappers.contains(&(pair.0.to_string(), pair.1.to_string())),
                "{pair:?} in {mappers:?}"
            );
        }
    }

    #[test]
    fn ldap_attributes_group_object_classes() {
        let attrs = ldap_attributes(&Realm::demo().users[0]);
        let oc = attrs
            .iter()
            .find(|(n, _)| n == "objectClass")
            .map(|(_, v)| v.len());
        assert_eq!(oc, Some(4));
        assert!(
            attrs
                .iter()
                .any(|(n, v)| n == "mail" && v == &["demo@example.com"])
        );
    }
}
