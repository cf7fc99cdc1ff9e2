//! Login (placeholder until implemented).

use super::{SaslExchange, SaslMechanism, SessionContext};
use crate::auth::AuthBackends;

pub struct Login {
    backends: AuthBackends,
}

impl Login {
    pub fn new(backends: AuthBackends) -> Self {
        Self { backends }
    }
}

impl SaslMechanism for Login {
    fn name(&self) -> &str {
        "LOGIN"
    }
    fn available(&self, _ctx: &SessionContext) -> bool {
        let _ = &self.backends;
        false
    }
    fn start(&self, _initial: Option<&[u8]>, _ctx: &SessionContext) -> Box<dyn SaslExchange> {
        todo!()
    }
}
