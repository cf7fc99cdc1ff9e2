//! One function per cargo-fuzz target (`server/fuzz/fuzz_targets/<name>.rs`), named like its
//! corpus directory: each runs, on one input, every check the `cargo test` targets run on
//! that corpus. Contexts (configs, mechanisms, a runtime) are built once per process.

use std::sync::{Arc, LazyLock};

use super::{imap, jmap, jwt, managesieve, pop3, sasl, sieve, smtp};
use crate::auth::sasl::{Login, OAuthBearer, Plain, ScramSha256, XOAuth2};
use crate::imap::ImapContext;
use crate::smtp::SmtpListenerKind;

pub fn imap_preauth(data: &[u8]) {
    static CONTEXT: LazyLock<Arc<ImapContext>> = LazyLock::new(imap::context);
    imap::session(&CONTEXT, data);
    imap::framer(data);
}

pub fn smtp_session(data: &[u8]) {
    type Config = Arc<crate::smtp::session::SessionConfig>;
    static SUBMISSION: LazyLock<Config> =
        LazyLock::new(|| smtp::config(SmtpListenerKind::Submission));
    static INBOUND: LazyLock<Config> = LazyLock::new(|| smtp::config(SmtpListenerKind::Inbound));
    smtp::session(&SUBMISSION, data);
    smtp::session(&INBOUND, data);
}

pub fn smtp_data(data: &[u8]) {
    smtp::data(data);
}

pub fn pop3_session(data: &[u8]) {
    static CONFIG: LazyLock<Arc<crate::pop3::session::SessionConfig>> = LazyLock::new(pop3::config);
    pop3::session(&CONFIG, data);
}

pub fn managesieve_session(data: &[u8]) {
    static CONFIG: LazyLock<Arc<crate::managesieve::session::SessionConfig>> =
        LazyLock::new(managesieve::config);
    managesieve::session(&CONFIG, data);
    managesieve::parser(data);
}

pub fn sasl_plain(data: &[u8]) {
    static MECH: LazyLock<Plain> = LazyLock::new(|| Plain::new(super::backends()));
    sasl::plain(&MECH, data);
}

pub fn sasl_login(data: &[u8]) {
    static MECH: LazyLock<Login> = LazyLock::new(|| Login::new(super::backends()));
    sasl::login(&MECH, data);
}

pub fn sasl_oauthbearer(data: &[u8]) {
    static MECH: LazyLock<OAuthBearer> = LazyLock::new(|| OAuthBearer::new(super::backends()));
    sasl::oauthbearer(&MECH, data);
}

pub fn sasl_xoauth2(data: &[u8]) {
    static MECH: LazyLock<XOAuth2> = LazyLock::new(|| XOAuth2::new(super::backends()));
    sasl::xoauth2(&MECH, data);
}

static SCRAM: LazyLock<[ScramSha256; 2]> =
    LazyLock::new(|| [sasl::scram(false), sasl::scram(true)]);

pub fn sasl_scram_client_first(data: &[u8]) {
    sasl::scram_client_first(&SCRAM, data);
}

pub fn sasl_scram_client_final(data: &[u8]) {
    sasl::scram_client_final(&SCRAM, data);
}

pub fn jwt_compact(data: &[u8]) {
    jwt::compact(data);
}

pub fn jwt_header(data: &[u8]) {
    jwt::header(data);
}

pub fn jwt_claims(data: &[u8]) {
    jwt::claim_set(data);
}

pub fn jmap_request(data: &[u8]) {
    static RUNTIME: LazyLock<Option<tokio::runtime::Runtime>> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
    });
    // Without a runtime there is nothing to fuzz; the `cargo test` target would fail instead.
    if let Some(rt) = RUNTIME.as_ref() {
        jmap::request(rt, data);
    }
}

pub fn sieve_script(data: &[u8]) {
    sieve::compile(data);
}

/// A target's one-input function.
#[cfg(test)]
type TargetFn = fn(&[u8]);

/// Every target by name, for tests that hold this list to the corpus and the cargo-fuzz crate.
#[cfg(test)]
const ALL: &[(&str, TargetFn)] = &[
    ("imap_preauth", imap_preauth),
    ("jmap_request", jmap_request),
    ("jwt_claims", jwt_claims),
    ("jwt_compact", jwt_compact),
    ("jwt_header", jwt_header),
    ("managesieve_session", managesieve_session),
    ("pop3_session", pop3_session),
    ("sasl_login", sasl_login),
    ("sasl_oauthbearer", sasl_oauthbearer),
    ("sasl_plain", sasl_plain),
    ("sasl_scram_client_final", sasl_scram_client_final),
    ("sasl_scram_client_first", sasl_scram_client_first),
    ("sasl_xoauth2", sasl_xoauth2),
    ("sieve_script", sieve_script),
    ("smtp_data", smtp_data),
    ("smtp_session", smtp_session),
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::ALL;

    fn fuzz_dir() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz"))
    }

    /// Each corpus directory has a cargo-fuzz target of its name calling the function of that
    /// name, and each target replays its whole corpus without a failed check.
    #[test]
    fn every_corpus_has_a_cargo_fuzz_target_that_passes_it() {
        let mut corpora: Vec<String> = std::fs::read_dir(fuzz_dir().join("corpus"))
            .expect("corpus directory")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        corpora.sort();
        let names: Vec<&str> = ALL.iter().map(|(name, _)| *name).collect();
        assert_eq!(corpora, names, "corpus directories and targets differ");
        let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("manifest");
        for (name, target) in ALL {
            let source =
                std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs")))
                    .unwrap_or_else(|e| panic!("fuzz_targets/{name}.rs: {e}"));
            assert!(
                source.contains(&format!("mail_oidc_server::fuzz::targets::{name}(data)")),
                "fuzz_targets/{name}.rs does not call targets::{name}"
            );
            assert!(
                manifest.contains(&format!("name = \"{name}\"")),
                "no [[bin]] {name} in fuzz/Cargo.toml"
            );
            let mut inputs = 0;
            for entry in std::fs::read_dir(fuzz_dir().join("corpus").join(name))
                .expect("corpus")
                .flatten()
            {
                target(&std::fs::read(entry.path()).expect("corpus input"));
                inputs += 1;
            }
            assert!(inputs > 0, "empty corpus for {name}");
        }
    }
}
