//! TLS client configurations for the connections the host makes for plugins: verified
//! against the trusted roots, pinned to one certificate's SHA-256, or (only when the
//! operator asks for it) unverified.
//!
//! rustls does not offer anonymous Diffie-Hellman, so a RouterOS API-SSL service without
//! a certificate cannot be reached; give the router a certificate (a self-signed one,
//! pinned here, is enough).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsConnector;

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Normalises a fingerprint as operators write it: any case, with or without colons.
fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// Reads the certificates an operator trusts beside the public roots (`[tls] ca_file`):
/// every `CERTIFICATE` block of a PEM file, each usable as a trust anchor.
pub(crate) fn load_trusted(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let text = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a PEM file of certificates: {e}"))?;
    if certificates.is_empty() {
        return Err(format!(
            "{shown} holds no certificate (expected PEM blocks of -----BEGIN CERTIFICATE-----)"
        ));
    }
    let mut roots = RootCertStore::empty();
    for (i, certificate) in certificates.iter().enumerate() {
        roots
            .add(certificate.clone())
            .map_err(|e| format!("certificate {} of {shown} cannot be trusted: {e}", i + 1))?;
    }
    Ok(certificates)
}

/// Shared TLS client state: the provider and the verified configuration.
pub(crate) struct TlsClients {
    provider: Arc<CryptoProvider>,
    verified: TlsConnector,
}

impl TlsClients {
    /// Verification trusts the public (webpki) roots and `trusted`.
    pub(crate) fn new(trusted: &[CertificateDer<'static>]) -> Result<TlsClients, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for certificate in trusted {
            roots
                .add(certificate.clone())
                .map_err(|e| format!("a trusted certificate cannot be used: {e}"))?;
        }
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClients {
            provider,
            verified: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The connector that verifies against the trusted roots.
    pub(crate) fn verified(&self) -> TlsConnector {
        self.verified.clone()
    }

    /// The connector for one connection's options.
    pub(crate) fn connector(
        &self,
        verify: bool,
        pinned: Option<&str>,
    ) -> Result<TlsConnector, String> {
        let check = match pinned {
            Some(pin) => Check::Pinned(normalize_fingerprint(pin).ok_or_else(|| {
                format!("`{pin}` is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
            })?),
            None if verify => return Ok(self.verified.clone()),
            None => Check::Anything,
        };
        let verifier = Arc::new(Verifier {
            check,
            algorithms: self.provider.signature_verification_algorithms,
        });
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

#[derive(Debug)]
enum Check {
    Pinned(String),
    Anything,
}

/// Accepts a pinned certificate (or any, when asked), while still checking that the peer
/// holds the certificate's private key.
#[derive(Debug)]
struct Verifier {
    check: Check,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.check {
            Check::Anything => Ok(ServerCertVerified::assertion()),
            Check::Pinned(pin) => {
                let actual = sha256_hex(end_entity.as_ref());
                if actual == *pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "certificate fingerprint {actual} does not match the pinned {pin}"
                    )))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalise() {
        let colons = "AB:".repeat(31) + "AB";
        assert_eq!(normalize_fingerprint(&colons), Some("ab".repeat(32)));
        assert_eq!(normalize_fingerprint("abc"), None);
        assert_eq!(normalize_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn bad_pins_are_refused() {
        let clients = TlsClients::new(&[]).expect("tls");
        let err = clients
            .connector(true, Some("nope"))
            .err()
            .expect("bad pin");
        assert!(err.contains("not a SHA-256 fingerprint"), "{err}");
        assert!(clients.connector(false, None).is_ok());
        assert!(clients.connector(true, Some(&"0".repeat(64))).is_ok());
    }
}
