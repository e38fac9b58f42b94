//! TLS for the server itself (rustls), for agents that are not behind a terminating
//! proxy: [`TlsConfig`] and the listener that hands finished handshakes to axum.
//!
//! Handshakes run concurrently in their own tasks, each with a deadline, so a client
//! that opens a connection and says nothing holds no other client up.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at once; a connection beyond it is closed at once (so silent
/// connections cannot hold the accept loop and leave new clients in the backlog).
const MAX_HANDSHAKES: usize = 512;

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("TLS certificate {path}: {source}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong with it.
        #[source]
        source: PemFileError,
    },
    /// The key file could not be read or holds no PEM private key.
    #[error("TLS private key {path}: {source}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong with it.
        #[source]
        source: PemFileError,
    },
    /// rustls refused the pair (for example, the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What is wrong with a certificate or key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemFileError {
    /// It could not be read.
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// Its PEM could not be parsed.
    #[error("{0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    /// It parsed, but holds no certificate.
    #[error("no PEM certificate in it")]
    NoCertificate,
}

/// The server side of TLS: a certificate chain and its private key.
#[derive(Clone)]
pub struct TlsConfig(Arc<rustls::ServerConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1) from files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| std::fs::read(path).map_err(|e| (path.display().to_string(), e));
        let cert_pem = read(cert).map_err(|(path, e)| TlsError::Certificate {
            path,
            source: PemFileError::Read(e),
        })?;
        let key_pem = read(key).map_err(|(path, e)| TlsError::Key {
            path,
            source: PemFileError::Read(e),
        })?;
        Self::from_pem_named(
            &cert_pem,
            &key_pem,
            &cert.display().to_string(),
            &key.display().to_string(),
        )
    }

    /// Like [`TlsConfig::from_pem_files`] with the PEM text in memory.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        Self::from_pem_named(cert, key, "(certificate)", "(key)")
    }

    fn from_pem_named(
        cert: &[u8],
        key: &[u8],
        cert_name: &str,
        key_name: &str,
    ) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certificate {
                path: cert_name.to_owned(),
                source: PemFileError::Pem(e),
            })?;
        if chain.is_empty() {
            return Err(TlsError::Certificate {
                path: cert_name.to_owned(),
                source: PemFileError::NoCertificate,
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Key {
            path: key_name.to_owned(),
            source: PemFileError::Pem(e),
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(Arc::new(config)))
    }

    /// Uses a rustls configuration made elsewhere (client certificates, resolvers...).
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        Self(config)
    }
}

/// An axum listener yielding connections whose TLS handshake has finished.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        tls: &TlsConfig,
        metrics: super::Metrics,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(tls.0.clone());
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let acceptor = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "TLS handshake refused: too many in progress");
                    metrics.refusal(super::RefusalReason::TlsHandshake);
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, tx, metrics) = (acceptor.clone(), tx.clone(), metrics.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            metrics.refusal(super::RefusalReason::TlsHandshake);
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            metrics.refusal(super::RefusalReason::TlsHandshake);
                        }
                    }
                    drop(slot);
                });
            }
        });
        Ok(Self {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The acceptor only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod pem_file_tests {
    use super::*;

    #[test]
    fn unusable_files_are_typed_errors_with_their_source() {
        let missing = TlsConfig::from_pem_files(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .unwrap_err();
        let TlsError::Certificate { path, source } = &missing else {
            panic!("{missing:?}");
        };
        assert_eq!(path, "/nonexistent/cert.pem");
        assert!(
            matches!(source, PemFileError::Read(e) if e.kind() == std::io::ErrorKind::NotFound)
        );
        assert!(std::error::Error::source(&missing).is_some());

        let empty = TlsConfig::from_pem(b"", b"").unwrap_err();
        assert!(matches!(
            empty,
            TlsError::Certificate {
                source: PemFileError::NoCertificate,
                ..
            }
        ));
        let garbled = TlsConfig::from_pem(
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            b"",
        )
        .unwrap_err();
        assert!(matches!(
            garbled,
            TlsError::Certificate {
                source: PemFileError::Pem(_),
                ..
            }
        ));
    }
}
