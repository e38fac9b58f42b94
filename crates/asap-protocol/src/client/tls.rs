//! TLS trust for `https://` and `wss://`: the platform's trust store, as reqwest uses it
//! for HTTPS, plus any root certificates the client was given, so an agent reachable
//! over one is reachable over the other.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{ClientError, TlsError};

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Whether the platform's trust store holds any root certificate (checked once per
/// process). On a system without one (an empty container, `SSL_CERT_FILE` naming an
/// empty file) the platform verifier refuses to be built, which made every HTTP client
/// of the crate fail to build (or panic), even for plain `http://`. Such a system now
/// gets clients that work over `http://` and fail each `https://`/`wss://` handshake
/// naming the unknown issuer, and one warning.
pub(crate) fn system_roots_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let available = rustls_platform_verifier::Verifier::new(crypto_provider()).is_ok();
        if !available {
            tracing::warn!(
                "no CA certificates found on this system (install a CA bundle or set \
                 SSL_CERT_FILE): https:// and wss:// connections will fail to verify"
            );
        }
        available
    })
}

/// A reqwest client builder trusting the platform's roots, or none when the platform
/// has none (see [`system_roots_available`]). Every HTTP client of the crate starts here.
pub(crate) fn http_builder() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    if system_roots_available() {
        builder
    } else {
        builder.tls_certs_only(Vec::new())
    }
}

/// The certificates in a PEM document; at least one.
pub(crate) fn certificates_from_pem(
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Pem)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate.into());
    }
    Ok(certificates)
}

/// The TLS configuration of WebSocket connections: the platform's verifier (the one
/// reqwest uses) trusting `extra_roots` as well.
pub(crate) fn websocket_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let provider = crypto_provider();
    if !system_roots_available() {
        // Only the roots the client was given (perhaps none): handshakes with anything
        // else fail with UnknownIssuer.
        let mut roots = rustls::RootCertStore::empty();
        for root in extra_roots {
            roots.add(root.clone()).map_err(TlsError::InvalidRoot)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::ProtocolVersions)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        return Ok(Arc::new(config));
    }
    let verifier = if extra_roots.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra_roots.iter().cloned(),
            provider.clone(),
        )
    }
    .map_err(TlsError::TrustStore)?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ProtocolVersions)?
        .dangerous() // a custom verifier, not an unverified connection
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}
