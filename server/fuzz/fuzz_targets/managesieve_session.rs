#![no_main]

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| mail_oidc_server::fuzz::targets::managesieve_session(data)
);
