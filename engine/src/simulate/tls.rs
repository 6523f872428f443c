//! API-SSL for the simulated fleet: one self-signed certificate, made at start and
//! shared by every router, so clients can pin a single SHA-256 fingerprint.
//!
//! Real routers serving API-SSL without a certificate use anonymous Diffie-Hellman,
//! which rustls (and most modern TLS stacks) refuse; the simulator always has one.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use super::SimulateError;

/// The certificate the fleet serves, and the acceptor built on it.
pub(crate) struct FleetTls {
    pub acceptor: TlsAcceptor,
    pub certificate_der: Vec<u8>,
    pub certificate_pem: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint: String,
}

pub(crate) fn self_signed(first: Ipv4Addr) -> Result<FleetTls, SimulateError> {
    let tls_err = |e: &dyn std::fmt::Display| SimulateError::Tls(e.to_string());
    let names = vec![
        "localhost".to_owned(),
        "yardmaster-simulator".to_owned(),
        first.to_string(),
    ];
    let key = rcgen::generate_simple_self_signed(names).map_err(|e| tls_err(&e))?;
    let certificate_der = key.cert.der().to_vec();
    let certificate_pem = key.cert.pem();
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(certificate_der.clone())], private)
        .map_err(|e| tls_err(&e))?;
    let fingerprint = hex::encode(Sha256::digest(&certificate_der));
    Ok(FleetTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certificate_der,
        certificate_pem,
        fingerprint,
    })
}
