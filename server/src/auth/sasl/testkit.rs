//! SASL-specific test helpers; the directory and validator doubles are the crate's testkit.

use super::{Protocol, SaslExchange, SaslMechanism, SaslStep, SessionContext};
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
