#![no_main]

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| mail_oidc_server::fuzz::targets::sasl_scram_client_first(data)
);
