//! XOAuth2 (placeholder until implemented).

use super::{SaslExchange, SaslMechanism, SessionContext};
use crate::auth::AuthBackends;

pub struct XOAuth2 {
    backends: AuthBackends,
}

impl XOAuth2 {
    pub fn new(backends: AuthBackends) -> Self {
        Self { backends }
    }
}

impl SaslMechanism for XOAuth2 {
    fn name(&self) -> &str {
        "XOAUTH2"
    }
    fn available(&self, _ctx: &SessionContext) -> bool {
        let _ = &self.backends;
        false
    }
    fn start(&self, _initial: Option<&[u8]>, _ctx: &SessionContext) -> Box<dyn SaslExchange> {
        todo!()
    }
}
