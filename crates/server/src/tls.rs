//! HTTPS on the listener (`[server] tls_cert` and `tls_key`): the PEM files read into a rustls
//! server configuration, with errors that name the file and the key, and [`TlsListener`], an
//! `axum::serve` listener that hands over connections once their TLS handshake is done.
//!
//! Why `tokio-rustls` behind axum's own `Listener` trait rather than `axum-server`: rustls and
//! tokio-rustls are already built for the providers (same versions, ring), and `axum::serve`
//! keeps one code path for plain and TLS serving, graceful shutdown included.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use perimeter_config::Tls;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A TLS handshake that takes longer than this is dropped (a client that connects and says
/// nothing must not hold a place for ever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; accepting waits while this many are running.
const MAX_HANDSHAKES: usize = 256;

/// Why the TLS configuration could not be built. Names the configuration key and the file,
/// never the file's content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls_cert {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("server.tls_key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("server.tls_key {key} is not the private key of the certificate in server.tls_cert {cert}")]
    Mismatch { cert: String, key: String },
    #[error("server.tls_cert {cert} and server.tls_key {key} cannot be used together: {reason}")]
    Config { cert: String, key: String, reason: String },
}

/// Reads the certificate chain and key and builds the acceptor. Fails, naming the file, when a
/// file is missing, unreadable, holds no usable PEM section, or the key is not the certificate's.
pub fn acceptor(tls: &Tls) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert_name = tls.cert.display().to_string();
    let key_name = tls.key.display().to_string();
    let cert_err = |reason: String| TlsError::Cert { path: cert_name.clone(), reason };
    let key_err = |reason: String| TlsError::Key { path: key_name.clone(), reason };

    let cert_pem = read(&tls.cert).map_err(cert_err)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| cert_err("is not valid PEM".into()))?;
    if chain.is_empty() {
        return Err(cert_err("holds no CERTIFICATE section (a PEM certificate chain, leaf first)".into()));
    }
    let key_pem = read(&tls.key).map_err(key_err)?;
    // The parser's error is not shown: it could quote part of the key file.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| key_err("holds no usable PRIVATE KEY section (PEM: PKCS#8, PKCS#1 or SEC1)".into()))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config { cert: cert_name.clone(), key: key_name.clone(), reason: e.to_string() })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch { cert: cert_name.clone(), key: key_name.clone() },
            other => TlsError::Config { cert: cert_name.clone(), key: key_name.clone(), reason: other.to_string() },
        })?;
    // HTTP/1.1 only: the plain listener serves the same (OpenAI clients speak HTTP/1.1).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_string(),
        _ => format!("cannot be read: {e}"),
    })
}

/// A listener for `axum::serve` that yields TLS streams. A task accepts TCP connections and runs
/// each handshake on its own task (so one slow client does not hold up the others); failed
/// handshakes, plain HTTP among them, end there and never reach the router.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(listener, acceptor, tx));
        Ok(TlsListener { ready, local, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Stop accepting when the server stops (graceful shutdown drops the listener).
        self.accepting.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin (as axum does).
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, addr)).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended (only when aborted): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
