//! TLS for a listener (rustls): a certificate chain and its key read from PEM files,
//! and read again when the files change, so a renewed certificate is served without a
//! restart. A renewal that does not load (a half-written file, a key that does not
//! match) keeps the previous certificate and is logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why a certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the kind expected.
    #[error("{path} holds no {what} in PEM form")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("the certificate and key are not usable together: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate chain and key file, served by a listener and watched for changes.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    /// How often the files' modification times are looked at.
    check_every: Duration,
    state: Mutex<Loaded>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles").field("cert", &self.cert).field("key", &self.key).finish_non_exhaustive()
    }
}

struct Loaded {
    acceptor: TlsAcceptor,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked_at: std::time::Instant,
}

impl TlsFiles {
    /// How often, by default, the files are looked at for a renewal.
    pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(10);

    /// Loads `cert` (the chain, leaf first) and `key`; they are looked at again for
    /// changes at most every `check_every`. Fails when they do not load.
    pub fn load(cert: &Path, key: &Path, check_every: Duration) -> Result<Arc<TlsFiles>, TlsError> {
        let acceptor = acceptor(cert, key)?;
        let loaded = Loaded { acceptor, stamps: stamps(cert, key), checked_at: now() };
        Ok(Arc::new(TlsFiles { cert: cert.into(), key: key.into(), check_every, state: Mutex::new(loaded) }))
    }

    /// The acceptor for a new connection: the current certificate, reloaded first
    /// when the files changed since they were last loaded.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked_at.elapsed() >= self.check_every {
            state.checked_at = now();
            let current = stamps(&self.cert, &self.key);
            if current != state.stamps {
                match acceptor(&self.cert, &self.key) {
                    Ok(acceptor) => {
                        tracing::info!(cert = %self.cert.display(), "loaded a renewed TLS certificate");
                        state.acceptor = acceptor;
                        state.stamps = current;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a changed TLS certificate did not load; serving the previous one")
                    }
                }
            }
        }
        state.acceptor.clone()
    }
}

// Monotonic time for a reload interval: transport housekeeping, not a decision about
// the stores.
#[allow(clippy::disallowed_methods)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn stamps(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.into(), source });
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::Pem { path: cert.into(), what: "certificate" });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|_| TlsError::Pem { path: key.into(), what: "private key" })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
