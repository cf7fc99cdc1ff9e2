//! A throwaway CA and a server certificate for `localhost` / `127.0.0.1`, as PEM files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files written by [`generate`].
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate clients trust.
    pub ca_cert: PathBuf,
    pub ca_pem: String,
    /// Server certificate (signed by the CA) and its PKCS#8 key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Creates the CA and the server certificate in `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<Pki> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mail-oidc harness test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().context("generating the server key")?;
    let cert = params.signed_by(&key, &issuer)?;

    let pki = Pki {
        ca_cert: dir.join("ca.pem"),
        ca_pem: ca_cert.pem(),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
    };
    std::fs::write(&pki.ca_cert, &pki.ca_pem)?;
    // The chain: leaf then CA, so clients that only know the CA can build the path.
    std::fs::write(&pki.cert, format!("{}{}", cert.pem(), pki.ca_pem))?;
    std::fs::write(&pki.key, key.serialize_pem())?;
    Ok(pki)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    #[test]
    fn server_certificate_verifies_against_the_ca_for_both_names() {
        mail_oidc_server::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = generate(dir.path()).expect("pki");
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&pki.ca_cert).expect("ca pem") {
            roots.add(ca.expect("ca cert")).expect("add root");
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder(roots.into())
            .build()
            .expect("verifier");
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert)
            .expect("chain pem")
            .collect::<Result<_, _>>()
            .expect("chain");
        for name in ["localhost", "127.0.0.1"] {
            let server_name = ServerName::try_from(name).expect("name");
            verifier
                .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let key = std::fs::read_to_string(&pki.key).expect("key");
        assert!(key.contains("BEGIN PRIVATE KEY"));
    }
}
