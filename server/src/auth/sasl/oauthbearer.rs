//! OAuthBearer (placeholder until implemented).

use super::{SaslExchange, SaslMechanism, SessionContext};
use crate::auth::AuthBackends;

pub struct OAuthBearer {
    backends: AuthBackends,
}

impl OAuthBearer {
    pub fn new(backends: AuthBackends) -> Self {
        Self { backends }
    }
}

impl SaslMechanism for OAuthBearer {
    fn name(&self) -> &str {
        "OAUTHBEARER"
    }
    fn available(&self, _ctx: &SessionContext) -> bool {
        let _ = &self.backends;
        false
    }
    fn start(&self, _initial: Option<&[u8]>, _ctx: &SessionContext) -> Box<dyn SaslExchange> {
        todo!()
    }
}
