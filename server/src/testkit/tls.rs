//! A fixed test certificate for `localhost` and the TLS ends built on it: an acceptor for the
//! server under test, a connector that trusts only this certificate.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

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
pub const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg51sE+gtd4tS2oBvD
kD/QAFHRvoRQR031b0CgU8xlmFyhRANCAASuAYI4K5M1obKvK/oSGaC8yD2TVlv/
XXC1TPSRdVWrBidamVsSahyiwFA7nmMS9GxlhTNBfXWboXlllpoMia8L
-----END PRIVATE KEY-----
";

/// The server side, from [`CERT`] and [`KEY`] written to a temporary directory (the acceptor is
/// built from files, as the server builds it).
pub fn acceptor() -> TlsAcceptor {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, CERT).expect("write cert");
    std::fs::write(&key, KEY).expect("write key");
    crate::tls::acceptor(&crate::config::TlsSection { cert, key }).expect("acceptor")
}

/// The client side, trusting [`CERT`] alone.
pub fn connector() -> TlsConnector {
    crate::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CERT.as_bytes()).expect("test cert"))
        .expect("trust anchor");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// The name [`CERT`] is issued for.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("server name")
}

/// The client side of a handshake with a server holding [`CERT`].
pub async fn connect(
    tcp: tokio::net::TcpStream,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    connector()
        .connect(server_name(), tcp)
        .await
        .expect("TLS handshake with the test server")
}
