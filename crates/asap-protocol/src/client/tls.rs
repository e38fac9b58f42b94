//! TLS trust for `https://` and `wss://`: the platform's trust store, as reqwest uses it
//! for HTTPS, plus any root certificates the client was given, so an agent reachable
//! over one is reachable over the other.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::ClientError;

/// The certificates in a PEM document; at least one.
pub(crate) fn certificates_from_pem(
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Tls(format!("root certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(ClientError::Tls(
            "root certificates: no CERTIFICATE block in the PEM document".into(),
        ));
    }
    Ok(certificates)
}

/// The TLS configuration of WebSocket connections: the platform's verifier (the one
/// reqwest uses) trusting `extra_roots` as well.
pub(crate) fn websocket_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier = if extra_roots.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra_roots.iter().cloned(),
            provider.clone(),
        )
    }
    .map_err(|e| ClientError::Tls(format!("trust store: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous() // a custom verifier, not an unverified connection
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}
