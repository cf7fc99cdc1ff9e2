//! TLS for listener tests: a self-signed certificate for `localhost` and a client that trusts
//! only it.

use std::sync::Arc;

use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::TlsSection;

/// Self-signed EC certificate for `localhost` / 127.0.0.1, valid until 2126 (test only).
pub const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBnDCCAUKgAwIBAgIUC0zwP0O1Qf6utenvR5vq35NanfAwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMzExMjcxMFoYDzIxMjYxMDMw
MTEyNzEwWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASuAYI4K5M1obKvK/oSGaC8yD2TVlv/XXC1TPSRdVWrBidamVsSahyi
wFA7nmMS9GxlhTNBfXWboXlllpoMia8Lo3AwbjAMBgNVHRMBAf8EAjAAMBoGA1Ud
EQQTMBGCCWxvY2FsaG9zdIcEfwAAATAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAww
CgYIKwYBBQUHAwEwHQYDVR0OBBYEFIq1lOGwTZiTrduy9P41GHiJxHWXMAoGCCqG
SM49BAMCA0gAMEUCIFgk/2fFBXXHKYn1sgdKgKUXxPl39mam7CB70P0FAAxyAiEA
6USe3JrO7MPen8kD59bIZ8H4yFy+4W5VEM8wjpv7zzA=
-----END CERTIFICATE-----
";
/// The private key of [`CERT`].
pub const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg51sE+gtd4tS2oBvD
kD/QAFHRvoRQR031b0CgU8xlmFyhRANCAASuAYI4K5M1obKvK/oSGaC8yD2TVlv/
XXC1TPSRdVWrBidamVsSahyiwFA7nmMS9GxlhTNBfXWboXlllpoMia8L
-----END PRIVATE KEY-----
";

/// An acceptor serving [`CERT`]; the files live in `dir`.
pub fn acceptor(dir: &std::path::Path) -> TlsAcceptor {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, CERT).expect("write test certificate");
    std::fs::write(&key, KEY).expect("write test key");
    crate::tls::acceptor(&TlsSection { cert, key }).expect("test TLS acceptor")
}

/// The client side of a handshake with a server holding [`CERT`].
pub async fn connect(tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
    crate::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(CERT.as_bytes()).expect("cert"))
        .expect("root");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake with the test server")
}
