//! A credential that must never reach a log line: `Debug` prints `<redacted>`.

use std::sync::Arc;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: &str) -> Self {
        Self(Arc::from(value))
    }

    /// The value itself, for the one place that must send it (e.g. to the introspection
    /// endpoint).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("eyJ.secret.token");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "eyJ.secret.token");
    }
}
