//! TLS for the test clients: trust exactly the harness CA, nothing from the system.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{ClientError, ClientResult};

/// The name the harness certificates are issued for.
pub const SERVER_NAME: &str = "localhost";

/// A connector that trusts only the CA(s) in `ca_pem`.
pub fn tls_connector(ca_pem: &str) -> ClientResult<TlsConnector> {
    Ok(TlsConnector::from(client_config(ca_pem)?))
}

/// Given as `ca_pem`, turns certificate checking off: what `check --insecure-skip-tls-verify`
/// passes to the suites (it is no PEM, so no real CA file can be mistaken for it).
pub const INSECURE_SKIP_TLS_VERIFY: &str = "<insecure-skip-tls-verify: certificates not checked>";

/// A client configuration that trusts only the CA(s) in `ca_pem` (or nothing is checked, for
/// [`INSECURE_SKIP_TLS_VERIFY`]).
pub fn client_config(ca_pem: &str) -> ClientResult<Arc<rustls::ClientConfig>> {
    mail_oidc_server::tls::install_crypto_provider();
    if ca_pem == INSECURE_SKIP_TLS_VERIFY {
        return Ok(crate::bench::login_rate::insecure::config());
    }
    let mut roots = rustls::RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| ClientError::Tls(format!("CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("CA certificate: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(ClientError::Tls("no certificate in the CA PEM".into()));
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// TLS handshake over `tcp` for [`SERVER_NAME`], trusting only `ca_pem`.
pub(crate) async fn handshake<S>(stream: S, ca_pem: &str) -> ClientResult<TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let connector = tls_connector(ca_pem)?;
    let name = ServerName::try_from(SERVER_NAME)
        .map_err(|e| ClientError::Tls(format!("server name: {e}")))?;
    connector
        .connect(name, stream)
        .await
        .map_err(|e| ClientError::Tls(format!("handshake: {e}")))
}

/// RFC 9266 `tls-exporter` channel binding of a finished client handshake: 32 bytes of
/// `EXPORTER-Channel-Binding` without context, TLS 1.3 only (what the server binds to).
pub(crate) fn exporter(conn: &rustls::ClientConnection) -> Option<Vec<u8>> {
    if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
        .ok()
        .map(|k| k.to_vec())
}

/// TCP connect with the given deadline.
pub(crate) async fn tcp(
    addr: std::net::SocketAddr,
    limit: std::time::Duration,
) -> ClientResult<TcpStream> {
    super::deadline(limit, "connecting", async {
        Ok(TcpStream::connect(addr).await?)
    })
    .await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use crate::clients::imap::ImapClient;
    use crate::clients::smtp::SmtpClient;

    /// A CA (PEM) and an acceptor whose certificate for `localhost` it signed.
    pub(crate) fn test_pki() -> (String, TlsAcceptor) {
        mail_oidc_server::tls::install_crypto_provider();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca)
            .expect("leaf");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server config");
        (ca.pem(), TlsAcceptor::from(Arc::new(config)))
    }

    /// Serves one line-based session: greeting, then `(expected line, reply)` pairs; a reply
    /// of `None` upgrades to TLS after answering `STARTTLS`.
    async fn serve_once(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        implicit_tls: bool,
        greeting: &'static [u8],
        script: Vec<(&'static str, &'static [u8], bool)>,
    ) {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let mut io: Box<dyn crate::clients::Io> = if implicit_tls {
            match acceptor.accept(tcp).await {
                Ok(t) => Box::new(t),
                Err(_) => return,
            }
        } else {
            Box::new(tcp)
        };
        let _ = io.write_all(greeting).await;
        let mut reader = BufReader::new(io);
        for (expect, reply, upgrade) in script {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            assert_eq!(line.trim_end(), expect);
            let _ = reader.get_mut().write_all(reply).await;
            if upgrade {
                let plain = reader.into_inner();
                let tls = match acceptor.accept(plain).await {
                    Ok(t) => t,
                    Err(_) => return,
                };
                reader = BufReader::new(Box::new(tls));
            }
        }
    }

    async fn listener() -> (TcpListener, std::net::SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        (l, addr)
    }

    #[tokio::test]
    async fn imap_implicit_tls_and_starttls() {
        let (ca, acceptor) = test_pki();
        let (l, addr) = listener().await;
        let server = tokio::spawn(serve_once(
            l,
            acceptor.clone(),
            true,
            b"* OK tls ready\r\n",
            vec![("A1 NOOP", b"A1 OK done\r\n", false)],
        ));
        let mut c = ImapClient::connect_tls(addr, &ca).await.expect("imaps");
        assert_eq!(c.greeting(), "* OK tls ready");
        assert!(c.command("NOOP").await.expect("noop").is_ok());
        assert!(server.await.is_ok());

        let (l, addr) = listener().await;
        let server = tokio::spawn(serve_once(
            l,
            acceptor,
            false,
            b"* OK plain\r\n",
            vec![
                ("A1 STARTTLS", b"A1 OK Begin TLS negotiation now.\r\n", true),
                (
                    "A2 CAPABILITY",
                    b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nA2 OK\r\n",
                    false,
                ),
            ],
        ));
        let mut c = ImapClient::connect(addr).await.expect("imap");
        c.starttls(&ca).await.expect("starttls");
        assert_eq!(
            c.capabilities().await.expect("caps"),
            ["IMAP4rev1", "AUTH=PLAIN"]
        );
        assert!(server.await.is_ok());
    }

    #[tokio::test]
    async fn smtp_starttls_and_untrusted_ca() {
        let (ca, acceptor) = test_pki();
        let (l, addr) = listener().await;
        let server = tokio::spawn(serve_once(
            l,
            acceptor.clone(),
            false,
            b"220 ready\r\n",
            vec![
                ("EHLO t", b"250-x\r\n250 STARTTLS\r\n", false),
                ("STARTTLS", b"220 2.0.0 Ready to start TLS\r\n", true),
                ("EHLO t", b"250-x\r\n250 AUTH PLAIN OAUTHBEARER\r\n", false),
            ],
        ));
        let mut c = SmtpClient::connect(addr).await.expect("smtp");
        assert_eq!(c.ehlo("t").await.expect("ehlo"), ["STARTTLS"]);
        c.starttls(&ca).await.expect("starttls");
        assert_eq!(c.ehlo("t").await.expect("ehlo"), ["AUTH PLAIN OAUTHBEARER"]);
        assert!(server.await.is_ok());

        // A server certificate from another CA is refused.
        let (other_ca, _) = test_pki();
        let (l, addr) = listener().await;
        let server = tokio::spawn(serve_once(l, acceptor, true, b"* OK\r\n", vec![]));
        let r = ImapClient::connect_tls(addr, &other_ca).await;
        assert!(matches!(r, Err(ClientError::Tls(_))), "{r:?}");
        assert!(server.await.is_ok());
        assert!(matches!(
            tls_connector("no pem here"),
            Err(ClientError::Tls(_))
        ));
    }
}
