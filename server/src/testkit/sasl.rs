//! SASL-specific test helpers; the directory and validator doubles are the crate's testkit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::auth::sasl::{
    Protocol, SaslExchange, SaslFailure, SaslMechanism, SaslStep, SessionContext,
};
pub use crate::testkit::{DISCOVERY, SCOPE, TestDirectory, TestValidator, backends, token_for};

pub fn ctx(tls: bool) -> SessionContext {
    SessionContext {
        protocol: Protocol::Imap,
        tls,
        allow_plaintext_without_tls: false,
        peer: None,
        channel_binding: None,
    }
}

/// Starts an exchange and feeds it the initial response (as the first `step(None)`), then each
/// later message; returns the last step.
pub async fn run(mech: &dyn SaslMechanism, initial: Option<&[u8]>, later: &[&[u8]]) -> SaslStep {
    let mut ex: Box<dyn SaslExchange> = mech.start(initial, &ctx(true));
    let mut step = ex.step(None).await;
    for message in later {
        step = ex.step(Some(message)).await;
    }
    step
}

/// Inputs that must never make an exchange panic.
pub fn odd_inputs() -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0, 0, 0],
        vec![1],
        vec![1, 1],
        vec![0xff, 0xfe],
        b"=".to_vec(),
        b",".to_vec(),
        b",,".to_vec(),
        b"n,".to_vec(),
        b"n,,".to_vec(),
        b"n,a=,\x01\x01".to_vec(),
        b"n,a==,\x01auth=Bearer x\x01\x01".to_vec(),
        b"n,a==2,\x01auth=Bearer x\x01\x01".to_vec(),
        b"n,,\x01auth=\x01\x01".to_vec(),
        b"n,,\x01auth=Bearer\x01\x01".to_vec(),
        b"n,,\x01auth=Bearer \xc3\x01\x01".to_vec(),
        b"user=\x01auth=Bearer \x01\x01".to_vec(),
        b"user=\xe2\x82\x01auth=Bearer t\x01\x01".to_vec(),
        "\0\u{e9}\0\u{1F600}".as_bytes().to_vec(),
        b"*".to_vec(),
    ];
    inputs.push(vec![b'A'; 20_000]);
    inputs.push((0..=255u8).collect());
    inputs
}

/// A mechanism (`XSCRIPT`, offered without TLS, like OAUTHBEARER) that plays a fixed list of
/// steps and records what the client sent.
pub struct Scripted {
    script: Mutex<VecDeque<SaslStep>>,
    pub received: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
    /// Exchanges released so far (finished, aborted or cancelled).
    pub dropped: Arc<AtomicUsize>,
}

impl Scripted {
    pub fn new(steps: Vec<SaslStep>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(steps.into()),
            received: Arc::default(),
            dropped: Arc::default(),
        })
    }

    /// Steps for the next exchange.
    pub fn push_back(&self, step: SaslStep) {
        self.script.lock().unwrap().push_back(step);
    }

    pub fn extend(&self, steps: impl IntoIterator<Item = SaslStep>) {
        self.script.lock().unwrap().extend(steps);
    }
}

impl SaslMechanism for Scripted {
    fn name(&self) -> &str {
        "XSCRIPT"
    }
    fn available(&self, _ctx: &SessionContext) -> bool {
        true
    }
    fn start(&self, _initial: Option<&[u8]>, _ctx: &SessionContext) -> Box<dyn SaslExchange> {
        let steps = std::mem::take(&mut *self.script.lock().unwrap());
        Box::new(ScriptedExchange {
            steps,
            received: self.received.clone(),
            dropped: self.dropped.clone(),
        })
    }
}

struct ScriptedExchange {
    steps: VecDeque<SaslStep>,
    received: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
    dropped: Arc<AtomicUsize>,
}

impl Drop for ScriptedExchange {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl SaslExchange for ScriptedExchange {
    async fn step(&mut self, client: Option<&[u8]>) -> SaslStep {
        self.received
            .lock()
            .unwrap()
            .push(client.map(<[u8]>::to_vec));
        self.steps
            .pop_front()
            .unwrap_or(SaslStep::Failure(SaslFailure::Malformed(
                "script exhausted".into(),
            )))
    }
}

/// For the never-panics tests: no step of an exchange fed odd input logs anyone in.
#[track_caller]
pub fn assert_no_login(step: &crate::auth::sasl::SaslStep, input: &[u8]) {
    assert!(
        !matches!(step, crate::auth::sasl::SaslStep::Success { .. }),
        "odd input {input:?} logged in: {step:?}"
    );
}
