//! TLS acceptor from the `[tls]` PEM files (rustls with the ring provider).

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::auth::sasl::ChannelBinding;
use crate::config::TlsSection;

/// RFC 9266 section 2: the exporter label of the `tls-exporter` channel binding.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert {path}: {message}")]
    Cert { path: String, message: String },
    #[error("tls.key {path}: {message}")]
    Key { path: String, message: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Installs ring as the process-wide rustls provider (idempotent). Called before any TLS use,
/// because reqwest and ldap3 are built without a provider of their own.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn acceptor(section: &TlsSection) -> Result<TlsAcceptor, TlsError> {
    install_crypto_provider();
    let cert_path = section.cert.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&section.cert)
        .map_err(|e| TlsError::Cert {
            path: cert_path.clone(),
            message: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert {
            path: cert_path.clone(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert_path,
            message: "no certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&section.key).map_err(|e| TlsError::Key {
        path: section.key.display().to_string(),
        message: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The RFC 9266 `tls-exporter` channel binding of an established connection: 32 bytes of
/// keying material exported with label `EXPORTER-Channel-Binding` and no context, what
/// SCRAM-SHA-256-PLUS binds to.
///
/// TLS 1.3 only. RFC 9266 allows TLS 1.2 solely with the extended master secret (RFC 7627),
/// and rustls does not tell us whether a session negotiated it; without it, a man in the
/// middle can give two connections the same exporter (the triple-handshake attack), so the
/// binding would prove nothing. `None` too while the handshake is still running.
pub fn tls_exporter(conn: &rustls::ServerConnection) -> Option<ChannelBinding> {
    if conn.is_handshaking() || conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    let data = conn
        .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .ok()?;
    Some(ChannelBinding {
        kind: "tls-exporter",
        data: data.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::tls::{CERT as TLS_CERT, KEY as TLS_KEY};
    use rustls::{ClientConnection, ConnectionCommon, ServerConnection, SupportedProtocolVersion};
    use rustls_pki_types::ServerName;
    use std::ops::DerefMut;

    fn pair(
        versions: &[&'static SupportedProtocolVersion],
    ) -> (ClientConnection, ServerConnection) {
        install_crypto_provider();
        let cert = CertificateDer::from_pem_slice(TLS_CERT.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(TLS_KEY.as_bytes()).unwrap();
        let server = rustls::ServerConfig::builder_with_protocol_versions(versions)
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_protocol_versions(versions)
            .with_root_certificates(roots)
            .with_no_client_auth();
        (
            ClientConnection::new(Arc::new(client), ServerName::try_from("localhost").unwrap())
                .unwrap(),
            ServerConnection::new(Arc::new(server)).unwrap(),
        )
    }

    /// Moves every pending TLS record from one side to the other.
    fn transfer<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>) {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        let mut rest = &buf[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets().unwrap();
        }
    }

    fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) {
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return;
            }
            transfer(client.deref_mut(), server.deref_mut());
            transfer(server.deref_mut(), client.deref_mut());
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn tls13_exporter_matches_the_client_and_differs_per_connection() {
        let (mut client, mut server) = pair(&[&rustls::version::TLS13]);
        assert_eq!(tls_exporter(&server), None, "not before the handshake");
        handshake(&mut client, &mut server);
        let binding = tls_exporter(&server).unwrap();
        assert_eq!(binding.kind, "tls-exporter");
        let expected = client
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .unwrap();
        assert_eq!(binding.data, expected);

        let (mut client2, mut server2) = pair(&[&rustls::version::TLS13]);
        handshake(&mut client2, &mut server2);
        assert_ne!(tls_exporter(&server2).unwrap().data, binding.data);
    }

    #[test]
    fn no_binding_over_tls12() {
        let (mut client, mut server) = pair(&[&rustls::version::TLS12]);
        handshake(&mut client, &mut server);
        assert_eq!(
            server.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_eq!(tls_exporter(&server), None);
    }
}
