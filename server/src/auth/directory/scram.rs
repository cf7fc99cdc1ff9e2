//! SCRAM-SHA-256 secrets as directories store them (RFC 5803):
//! `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`. A secret lets the
//! server verify a SCRAM login (and a plain password) without knowing the password.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::auth::sasl::scram::crypto::{self, KEY_LEN, Key};

/// A user found for a SCRAM-SHA-256 login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    /// The canonical user name, as [`super::Directory::lookup`] returns it.
    pub canonical: String,
    pub secret: ScramSecret,
}

/// The salted, derived keys of one password (RFC 5802 section 3).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Key,
    pub server_key: Key,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramSecretError {
    #[error(
        "a SCRAM-SHA-256 secret reads SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
    )]
    Format,
    #[error("SCRAM-SHA-256 iteration count is not a positive integer")]
    Iterations,
    #[error("SCRAM-SHA-256 salt is not non-empty base64")]
    Salt,
    #[error("SCRAM-SHA-256 {0} is not 32 bytes of base64")]
    Key(&'static str),
}

impl ScramSecret {
    /// RFC 7677 section 4: at least 4096 iterations.
    pub const MIN_ITERATIONS: u32 = 4096;
    /// Salt length of [`ScramSecret::generate`]: 128 bits, as RFC 5803's examples and most tools.
    pub const SALT_LEN: usize = 16;
    const SCHEME: &'static str = "SCRAM-SHA-256";

    /// The secret of `password` with this salt and iteration count. The password is used as
    /// its UTF-8 bytes (no SASLprep; identical for ASCII passwords).
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let (stored_key, server_key) = crypto::derive_keys(password.as_bytes(), salt, iterations);
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// A new secret for `password` with a random salt (usually with [`Self::MIN_ITERATIONS`]).
    pub fn generate(password: &str, iterations: u32) -> Self {
        let salt: [u8; Self::SALT_LEN] = rand::random();
        Self::derive(password, &salt, iterations)
    }

    /// Whether `password` is the one this secret was derived from (keys compared in constant
    /// time). Costs `iterations` HMACs: the point of the salted hash.
    pub fn verify_password(&self, password: &str) -> bool {
        let (stored_key, server_key) =
            crypto::derive_keys(password.as_bytes(), &self.salt, self.iterations);
        // Both, so a secret with a tampered ServerKey is not half-accepted.
        crypto::ct_eq(&stored_key, &self.stored_key) & crypto::ct_eq(&server_key, &self.server_key)
    }
}

impl FromStr for ScramSecret {
    type Err = ScramSecretError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.split('$');
        let (Some(Self::SCHEME), Some(params), Some(keys), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ScramSecretError::Format);
        };
        let (iterations, salt) = params.split_once(':').ok_or(ScramSecretError::Format)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(ScramSecretError::Format)?;
        // Digits only: `u32::from_str` would also take a leading `+`.
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ScramSecretError::Iterations);
        }
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|&i| i > 0)
            .ok_or(ScramSecretError::Iterations)?;
        let salt = STANDARD
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(ScramSecretError::Salt)?;
        Ok(Self {
            iterations,
            salt,
            stored_key: key(stored_key, "StoredKey")?,
            server_key: key(server_key, "ServerKey")?,
        })
    }
}

fn key(text: &str, what: &'static str) -> Result<Key, ScramSecretError> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| <[u8; KEY_LEN]>::try_from(bytes).ok())
        .ok_or(ScramSecretError::Key(what))
}

impl std::fmt::Display for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}${}:{}${}:{}",
            Self::SCHEME,
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// The keys stay out of logs: StoredKey allows an offline dictionary attack, ServerKey lets
/// one impersonate the server.
impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("salt", &STANDARD.encode(&self.salt))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::RFC7677_SECRET as RFC7677;

    #[test]
    fn rfc7677_secret_round_trip_and_password_check() {
        let secret: ScramSecret = RFC7677.parse().unwrap();
        assert_eq!(secret.iterations, 4096);
        assert_eq!(secret.to_string(), RFC7677);
        assert_eq!(
            secret,
            ScramSecret::derive("pencil", &secret.salt, 4096),
            "the stored keys are those of \"pencil\""
        );
        assert!(secret.verify_password("pencil"));
        assert!(!secret.verify_password("Pencil"));
        assert!(!secret.verify_password(""));
    }

    #[test]
    fn generate_uses_a_fresh_salt() {
        let a = ScramSecret::generate("pw", ScramSecret::MIN_ITERATIONS);
        let b = ScramSecret::generate("pw", ScramSecret::MIN_ITERATIONS);
        assert_eq!(a.iterations, ScramSecret::MIN_ITERATIONS);
        assert_eq!(a.salt.len(), ScramSecret::SALT_LEN);
        assert_ne!(a.salt, b.salt);
        assert!(a.verify_password("pw") && b.verify_password("pw"));
        assert_eq!(a.to_string().parse::<ScramSecret>(), Ok(a));
    }

    #[test]
    fn debug_hides_the_keys() {
        let secret: ScramSecret = RFC7677.parse().unwrap();
        let debug = format!("{secret:?}");
        assert!(debug.contains("4096"), "{debug}");
        assert!(
            !debug.contains("WG5d8") && !debug.contains("wfPLw"),
            "{debug}"
        );
    }

    #[test]
    fn bad_formats() {
        let (salt, stored, server) = (
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
        );
        let cases = [
            (String::new(), ScramSecretError::Format),
            (
                format!("SCRAM-SHA-1$4096:{salt}$K:K"),
                ScramSecretError::Format,
            ),
            (
                format!("scram-sha-256$4096:{salt}${stored}:{server}"),
                ScramSecretError::Format,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}${stored}"),
                ScramSecretError::Format,
            ),
            (
                format!("SCRAM-SHA-256$4096{salt}${stored}:{server}"),
                ScramSecretError::Format,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}${stored}:{server}$"),
                ScramSecretError::Format,
            ),
            (
                format!("SCRAM-SHA-256$:{salt}${stored}:{server}"),
                ScramSecretError::Iterations,
            ),
            (
                format!("SCRAM-SHA-256$0:{salt}${stored}:{server}"),
                ScramSecretError::Iterations,
            ),
            (
                format!("SCRAM-SHA-256$+4096:{salt}${stored}:{server}"),
                ScramSecretError::Iterations,
            ),
            (
                format!("SCRAM-SHA-256$4294967296:{salt}${stored}:{server}"),
                ScramSecretError::Iterations,
            ),
            (
                format!("SCRAM-SHA-256$4096:${stored}:{server}"),
                ScramSecretError::Salt,
            ),
            (
                format!("SCRAM-SHA-256$4096:not*b64${stored}:{server}"),
                ScramSecretError::Salt,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}$AAAA:{server}"),
                ScramSecretError::Key("StoredKey"),
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}${stored}:{stored}x"),
                ScramSecretError::Key("ServerKey"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<ScramSecret>(), Err(expected.clone()), "{text}");
            // Error messages never echo the secret.
            assert!(!expected.to_string().contains("WG5d8"));
        }
    }
}
