//! Start-up with a bad configuration fails with a message naming the offending key.

use std::process::Command;

fn run_check(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_mail-oidc-server"))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .expect("run mail-oidc-server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const DIRECTORY: &str =
    "[directory]\nkind = \"ldap\"\nurl = \"ldap://127.0.0.1:1\"\nbase_dn = \"dc=example,dc=com\"\n";

#[test]
fn unknown_key_is_named() {
    let (ok, text) = run_check(&format!("{DIRECTORY}[imap]\nlisten_on = \"127.0.0.1:0\"\n"));
    assert!(!ok, "must fail: {text}");
    assert!(
        text.contains("listen_on"),
        "message should name the key: {text}"
    );
}

#[test]
fn implicit_tls_without_tls_section_names_key() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[imap]\nlisten_tls = \"127.0.0.1:0\"\n"
    ));
    assert!(!ok, "must fail: {text}");
    assert!(text.contains("imap.listen_tls"), "{text}");
}

#[test]
fn hmac_algorithm_is_refused() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[oidc]\ndiscovery_url = \"http://127.0.0.1:1/.well-known/openid-configuration\"\nalgorithms = [\"RS256\", \"HS256\"]\n"
    ));
    assert!(!ok, "must fail: {text}");
    assert!(text.contains("oidc.algorithms"), "{text}");
}

#[test]
fn oidc_needs_discovery_or_issuer_and_jwks() {
    let (ok, text) = run_check(&format!("{DIRECTORY}[oidc]\nissuer = \"http://idp\"\n"));
    assert!(!ok, "must fail: {text}");
    assert!(text.contains("oidc.discovery_url"), "{text}");
}

#[test]
fn unknown_mechanism_is_named() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[imap]\nlisten = \"127.0.0.1:0\"\n[imap.auth]\nmechanisms = [\"PLAIN\", \"CRAM-MD5\"]\n"
    ));
    assert!(!ok, "must fail: {text}");
    assert!(
        text.contains("imap.auth.mechanisms") && text.contains("CRAM-MD5"),
        "{text}"
    );
}

#[test]
fn valid_config_passes_check() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[imap]\nlisten = \"127.0.0.1:0\"\n[imap.auth]\nmechanisms = [\"OAUTHBEARER\", \"PLAIN\"]\n"
    ));
    assert!(ok, "must pass: {text}");
}

#[test]
fn x_user_without_secret_or_trusted_sources_is_refused() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[http]\nlisten = \"127.0.0.1:0\"\n[http.auth]\nstrategies = [\"x-user\", \"basic\"]\n"
    ));
    assert!(!ok, "must fail: {text}");
    assert!(
        text.contains("http.auth.x_user_secret")
            && text.contains("http.auth.x_user_trusted_sources"),
        "names both keys: {text}"
    );
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[http]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://gw.example\"\ngateway_public_url = \"https://gw.example/oidc\"\n[http.auth]\nstrategies = [\"x-user\"]\nx_user_trusted_sources = [\"127.0.0.1/32\"]\n"
    ));
    assert!(ok, "a trusted source alone is enough: {text}");
}

#[test]
fn behind_a_gateway_without_a_public_url_is_refused() {
    // x-user, or a gateway URL alone: the session would otherwise hand out the backend's own
    // cleartext address to clients on the gateway's pass-through routes.
    for http in [
        "gateway_public_url = \"https://gw.example/oidc\"\n[http.auth]\nstrategies = [\"x-user\"]\nx_user_secret = \"s3cret\"\n",
        "gateway_public_url = \"https://gw.example/oidc\"\n[http.auth]\nstrategies = [\"basic\"]\n",
    ] {
        let (ok, text) = run_check(&format!(
            "{DIRECTORY}[http]\nlisten = \"127.0.0.1:0\"\n{http}"
        ));
        assert!(!ok, "must fail: {text}");
        assert!(
            text.contains("http.public_url") && text.contains("gateway"),
            "names the key and why: {text}"
        );
        let (ok, text) = run_check(&format!(
            "{DIRECTORY}[http]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://gw.example\"\n{http}"
        ));
        assert!(ok, "with a public URL it passes: {text}");
    }
    // No gateway: the bound address stays the default.
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[http]\nlisten = \"127.0.0.1:0\"\n[http.auth]\nstrategies = [\"basic\"]\n"
    ));
    assert!(ok, "{text}");
}

#[test]
fn x_user_without_a_gateway_public_url_is_refused() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[http]\nlisten = \"127.0.0.1:0\"\n[http.auth]\nstrategies = [\"x-user\"]\nx_user_secret = \"s3cret\"\n"
    ));
    assert!(!ok, "must fail: {text}");
    assert!(text.contains("http.gateway_public_url"), "{text}");
}

#[test]
fn bad_trusted_source_is_named() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[http.auth]\nstrategies = [\"x-user\"]\nx_user_trusted_sources = [\"not-a-network\"]\n"
    ));
    assert!(!ok, "must fail: {text}");
    assert!(text.contains("http.auth.x_user_trusted_sources"), "{text}");
}

const OIDC: &str =
    "[oidc]\ndiscovery_url = \"http://127.0.0.1:1/.well-known/openid-configuration\"\n";

#[test]
fn oidc_audience_is_required() {
    let (ok, text) = run_check(&format!("{DIRECTORY}{OIDC}"));
    assert!(!ok, "must fail: {text}");
    assert!(text.contains("oidc.audience"), "names the key: {text}");
    assert!(
        text.contains("audience_check = false"),
        "says how to opt out: {text}"
    );
    let (ok, text) = run_check(&format!("{DIRECTORY}{OIDC}audience = [\"mail\"]\n"));
    assert!(ok, "with an audience it passes: {text}");
}

#[test]
fn audience_check_false_is_accepted() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}{OIDC}audience_check = false\n[revocation]\nlogout_audiences = [\"mail\"]\n"
    ));
    assert!(ok, "must pass: {text}");
    // Logout tokens still need an audience: without one anywhere, that key is named.
    let (ok, text) = run_check(&format!("{DIRECTORY}{OIDC}audience_check = false\n"));
    assert!(!ok, "must fail: {text}");
    assert!(text.contains("revocation.logout_audiences"), "{text}");
}

#[test]
fn redis_store_needs_a_redis_url() {
    let (ok, text) = run_check(&format!("{DIRECTORY}[revocation]\nstore = \"redis\"\n"));
    assert!(!ok, "must fail: {text}");
    assert!(
        text.contains("revocation.redis_url"),
        "names the key: {text}"
    );
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[revocation]\nstore = \"redis\"\nredis_url = \"http://127.0.0.1:6379\"\n"
    ));
    assert!(!ok, "must fail: {text}");
    assert!(text.contains("revocation.redis_url"), "{text}");
    // Redis need not be up for the configuration to be valid.
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[revocation]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:1/\"\n"
    ));
    assert!(ok, "must pass: {text}");
}

#[test]
fn revocation_ttl_below_300_seconds_is_refused() {
    let (ok, text) = run_check(&format!("{DIRECTORY}[revocation]\nttl_seconds = 299\n"));
    assert!(!ok, "must fail: {text}");
    assert!(
        text.contains("revocation.ttl_seconds"),
        "names the key: {text}"
    );
    let (ok, text) = run_check(&format!("{DIRECTORY}[revocation]\nttl_seconds = 300\n"));
    assert!(ok, "300 is enough: {text}");
}

#[test]
fn recheck_interval_and_admins_are_checked() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}{OIDC}audience = [\"mail\"]\n[oidc.introspection]\nclient_id = \"mail\"\nclient_secret = \"s\"\nrecheck_seconds = 0\n"
    ));
    assert!(!ok, "must fail: {text}");
    assert!(
        text.contains("oidc.introspection.recheck_seconds"),
        "{text}"
    );
    let (ok, text) = run_check(&format!("{DIRECTORY}[server]\nadmins = [\" \"]\n"));
    assert!(!ok, "must fail: {text}");
    assert!(text.contains("server.admins"), "{text}");
}

#[test]
fn zero_auth_failures_are_refused_on_every_listener() {
    for section in ["imap", "submission", "pop3", "sieve"] {
        let (ok, text) = run_check(&format!("{DIRECTORY}[{section}]\nmax_auth_failures = 0\n"));
        assert!(!ok, "{section}: must fail: {text}");
        assert!(
            text.contains(&format!("{section}.max_auth_failures")),
            "{section}: {text}"
        );
    }
}

#[test]
fn sieve_script_size_ends_where_the_interpreter_does() {
    let max = mail_oidc_server::sieve::MAX_SCRIPT_SIZE;
    let (ok, text) = run_check(&format!("{DIRECTORY}[sieve]\nmax_script_size = {max}\n"));
    assert!(ok, "{max} must pass: {text}");
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[sieve]\nmax_script_size = {}\n",
        max + 1
    ));
    assert!(!ok, "{} must fail: {text}", max + 1);
    assert!(text.contains("sieve.max_script_size"), "{text}");
}

#[test]
fn pop3_keys_are_checked_and_named() {
    for (section, key) in [
        ("[pop3]\nlisten_tls = \"127.0.0.1:0\"\n", "pop3.listen_tls"),
        (
            "[pop3]\nidle_timeout_seconds = 60\n",
            "pop3.idle_timeout_seconds",
        ),
        ("[pop3]\nmax_auth_failures = 0\n", "pop3.max_auth_failures"),
        (
            "[pop3]\npreauth_timeout_seconds = 0\n",
            "pop3.preauth_timeout_seconds",
        ),
        ("[pop3.auth]\nmechanisms = []\n", "pop3.auth.mechanisms"),
        (
            "[pop3.auth]\nmechanisms = [\"CRAM-MD5\"]\n",
            "pop3.auth.mechanisms",
        ),
    ] {
        let (ok, text) = run_check(&format!("{DIRECTORY}{section}"));
        assert!(!ok, "must fail: {section}: {text}");
        assert!(text.contains(key), "{key}: {text}");
    }
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[pop3]\nlisten = \"127.0.0.1:0\"\nidle_timeout_seconds = 900\n[pop3.auth]\nmechanisms = [\"PLAIN\"]\n"
    ));
    assert!(ok, "must pass: {text}");
}

#[test]
fn sieve_section_is_checked_key_by_key() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[sieve]\nlisten = \"127.0.0.1:0\"\nmax_script_size = 65536\nmax_scripts = 5\n[sieve.auth]\nmechanisms = [\"PLAIN\", \"OAUTHBEARER\"]\n"
    ));
    assert!(ok, "must pass: {text}");
    for (toml, key) in [
        ("max_script_size = 0\n", "sieve.max_script_size"),
        ("max_script_size = 999999999\n", "sieve.max_script_size"),
        ("max_scripts = 0\n", "sieve.max_scripts"),
        (
            "preauth_timeout_seconds = 0\n",
            "sieve.preauth_timeout_seconds",
        ),
        ("idle_timeout_seconds = 0\n", "sieve.idle_timeout_seconds"),
        ("max_auth_failures = 0\n", "sieve.max_auth_failures"),
        ("[sieve.auth]\nmechanisms = []\n", "sieve.auth.mechanisms"),
        (
            "[sieve.auth]\nmechanisms = [\"CRAM-MD5\"]\n",
            "sieve.auth.mechanisms",
        ),
        ("listen_on = \"127.0.0.1:0\"\n", "listen_on"),
    ] {
        let (ok, text) = run_check(&format!("{DIRECTORY}[sieve]\n{toml}"));
        assert!(!ok, "{toml} must fail: {text}");
        assert!(
            text.contains(key),
            "{toml}: message should name {key}: {text}"
        );
    }
}

#[test]
fn in_flight_budget_must_fit_the_largest_message() {
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[server]\nmax_in_flight_bytes = 1000000\n[imap]\nmax_literal = 1000\n\
         [submission]\nmax_message_size = 1000\n[smtp]\nmax_message_size = 2000000\n"
    ));
    assert!(!ok, "must fail: {text}");
    assert!(
        text.contains("server.max_in_flight_bytes") && text.contains("smtp.max_message_size"),
        "{text}"
    );
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[server]\nmax_in_flight_bytes = 2000000\n[imap]\nmax_literal = 2000000\n\
         [submission]\nmax_message_size = 1000\n[smtp]\nmax_message_size = 1000\n"
    ));
    assert!(
        ok,
        "a budget of exactly the largest message is fine: {text}"
    );
}

#[test]
fn recipient_refusal_limits_are_at_least_1() {
    for key in [
        "max_recipient_refusals",
        "max_recipient_refusals_per_address",
    ] {
        let (ok, text) = run_check(&format!("{DIRECTORY}[smtp]\n{key} = 0\n"));
        assert!(!ok, "{key} = 0 must fail: {text}");
        assert!(text.contains(&format!("smtp.{key}")), "{text}");
    }
}

#[test]
fn login_throttle_keys_are_checked_and_named() {
    for (section, key) in [
        (
            "[login_throttle]\nbase_delay_seconds = 0\n",
            "login_throttle.base_delay_seconds",
        ),
        (
            "[login_throttle]\nbase_delay_seconds = 10\nmax_delay_seconds = 5\n",
            "login_throttle.max_delay_seconds",
        ),
        (
            "[login_throttle]\nmax_delay_seconds = 600\nwindow_seconds = 300\n",
            "login_throttle.window_seconds",
        ),
        (
            "[login_throttle]\ntimeout_ms = 0\n",
            "login_throttle.timeout_ms",
        ),
        (
            "[login_throttle]\nkey_prefix = \"a b\"\n",
            "login_throttle.key_prefix",
        ),
        (
            "[login_throttle]\nstore = \"redis\"\n",
            "login_throttle.redis_url",
        ),
        (
            "[login_throttle]\nstore = \"redis\"\nredis_url = \"http://127.0.0.1:1\"\n",
            "login_throttle.redis_url",
        ),
        ("[login_throttle]\nfree_failures = 3\n", "free_failures"),
    ] {
        let (ok, text) = run_check(&format!("{DIRECTORY}{section}"));
        assert!(!ok, "must fail: {section}: {text}");
        assert!(text.contains(key), "{key}: {text}");
    }
    // The revocation store's Redis serves the budget too when it has no URL of its own.
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[revocation]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:1/\"\n\
         [login_throttle]\nstore = \"redis\"\n"
    ));
    assert!(ok, "must pass: {text}");
}

#[test]
fn store_section_is_checked_and_old_configs_still_parse() {
    // The memory store as configured before `[store]` grew keys.
    let (ok, text) = run_check(&format!("{DIRECTORY}[store]\nkind = \"memory\"\n"));
    assert!(ok, "{text}");
    let (ok, text) = run_check(&format!("{DIRECTORY}[store]\nkind = \"disk\"\n"));
    assert!(!ok && text.contains("store.path"), "{text}");
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[store]\nkind = \"memory\"\npath = \"/tmp/x\"\n"
    ));
    assert!(!ok && text.contains("store.path"), "{text}");
    let (ok, text) = run_check(&format!("{DIRECTORY}[store]\nquota_bytes = 0\n"));
    assert!(!ok && text.contains("store.quota_bytes"), "{text}");
    let (ok, text) = run_check(&format!("{DIRECTORY}[store]\nkind = \"tape\"\n"));
    assert!(!ok && text.contains("tape"), "{text}");
}

#[test]
fn jmap_caps_must_be_usable() {
    for (key, value) in [
        ("max_filter_conditions", "0"),
        ("max_filter_depth", "0"),
        ("max_request_values", "0"),
        ("max_request_depth", "3"),
        ("max_request_depth", "129"),
    ] {
        let (ok, text) = run_check(&format!("{DIRECTORY}[jmap]\n{key} = {value}\n"));
        assert!(!ok, "{key} = {value} must fail: {text}");
        assert!(text.contains(&format!("jmap.{key}")), "{text}");
    }
    let (ok, text) = run_check(&format!(
        "{DIRECTORY}[jmap]\nmax_filter_conditions = 1\nmax_filter_depth = 1\n\
         max_request_values = 1\nmax_request_depth = 128\n"
    ));
    assert!(ok, "{text}");
}
