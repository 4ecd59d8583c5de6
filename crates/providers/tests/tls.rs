//! Custom CA and mutual TLS for self-hosted servers: an HTTPS server on 127.0.0.1 whose
//! certificate comes from a private CA and which requires a client certificate from that CA.
//!
//! The CA, the server's certificate and the client's are made at test time with rcgen, so no
//! key material lives in the repository. The server is axum over tokio-rustls, with rustls'
//! own WebPKI client verifier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use axum::Router;
use perimeter_providers::{BuildError, Endpoint, Flavour, OpenAiEmbedder, OpenAiEmbedderOptions};
use perimeter_types::{EmbedError, Embedder};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------------------------------------
// Certificates.

/// A private CA with a server certificate for 127.0.0.1 and a client certificate.
struct Pki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_pem: String,
    /// The client's certificate then its private key, as `client_identity_pem` takes them.
    client_identity_pem: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A client identity (certificate and key, PEM) issued by `issuer`.
fn client_identity(issuer: &CertifiedIssuer<'static, KeyPair>) -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "perimeter-gateway");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new() -> Pki {
        let ca = ca("Perimeter test CA");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "vllm.test");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().unwrap();
        let server_cert = params.signed_by(&server_key, &ca).unwrap();
        Pki {
            ca_pem: ca.pem(),
            server_chain: vec![server_cert.der().clone()],
            server_key_pem: server_key.serialize_pem(),
            client_identity_pem: client_identity(&ca),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTPS server.

/// Accepts TLS connections whose client certificate chains to the CA.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            let handshake = tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp).into_fallible());
            match handshake.await {
                Ok(Ok(tls)) => return (tls, addr),
                // The alert is sent; read what the client already wrote before closing, so that
                // the close is a FIN and the client reads the alert rather than a reset.
                Ok(Err((_, mut tcp))) => {
                    tokio::spawn(async move {
                        let mut buffer = [0u8; 4096];
                        let drain = async { while tcp.read(&mut buffer).await.is_ok_and(|n| n > 0) {} };
                        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                    });
                }
                Err(_) => {}
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

struct Server {
    base_url: String,
    requests: Arc<AtomicUsize>,
}

/// An embeddings server on 127.0.0.1 that requires a client certificate from `client_ca_pem`.
async fn start(pki: &Pki, client_ca_pem: &str) -> Server {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.server_chain.clone(), key)
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener { tcp, acceptor: TlsAcceptor::from(Arc::new(config)) };
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let app = Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            let body = serde_json::json!({
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [3.0, 4.0]}],
                "model": "bge-small",
                "usage": {"prompt_tokens": 1, "total_tokens": 1}
            });
            Response::builder().header("content-type", "application/json").body(Body::from(body.to_string())).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { base_url: format!("https://{addr}/v1"), requests }
}

fn endpoint(server: &Server, ca_pem: Option<&str>, identity_pem: Option<&str>) -> Endpoint {
    Endpoint {
        base_url: Some(server.base_url.clone()),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
        ca_pem: ca_pem.map(|pem| pem.as_bytes().to_vec()),
        client_identity_pem: identity_pem.map(|pem| pem.as_bytes().to_vec()),
        ..Endpoint::new(Flavour::OpenAiCompatible)
    }
}

fn embedder(endpoint: Endpoint) -> Result<OpenAiEmbedder, BuildError> {
    OpenAiEmbedder::new(OpenAiEmbedderOptions::new("self-hosted", "bge-small", endpoint, 2))
}

async fn embed(endpoint: Endpoint) -> Result<Vec<f32>, EmbedError> {
    let mut result = embedder(endpoint).unwrap().embed(vec!["hello".into()]).await?;
    Ok(result.vectors.remove(0))
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn the_private_ca_and_the_client_certificate_get_through() {
    let pki = Pki::new();
    let server = start(&pki, &pki.ca_pem).await;
    let vector = embed(endpoint(&server, Some(&pki.ca_pem), Some(&pki.client_identity_pem))).await.unwrap();
    assert_eq!(vector, [0.6, 0.8]);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_the_ca_the_server_is_not_trusted() {
    let pki = Pki::new();
    let server = start(&pki, &pki.ca_pem).await;
    let error = embed(endpoint(&server, None, Some(&pki.client_identity_pem))).await.unwrap_err();
    assert_eq!(
        error,
        EmbedError::Internal(
            "the provider's TLS certificate is not signed by a trusted CA; for a server with a private CA, set the \
             backend's CA certificate (ca_pem)"
                .into()
        )
    );
    // Another CA is no better.
    let other = ca("Someone else's CA").pem();
    let error = embed(endpoint(&server, Some(&other), Some(&pki.client_identity_pem))).await.unwrap_err();
    assert!(matches!(&error, EmbedError::Internal(m) if m.contains("not signed by a trusted CA")), "{error}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn without_a_client_certificate_the_server_refuses() {
    let pki = Pki::new();
    let server = start(&pki, &pki.ca_pem).await;
    let error = embed(endpoint(&server, Some(&pki.ca_pem), None)).await.unwrap_err();
    assert_eq!(
        error,
        EmbedError::Internal(
            "the provider refused the TLS handshake (CertificateRequired); it may require a client certificate \
             (client_identity_pem) signed by a CA it trusts"
                .into()
        )
    );
    // A certificate from a CA the server does not trust is refused too.
    let stranger = client_identity(&ca("Someone else's CA"));
    let error = embed(endpoint(&server, Some(&pki.ca_pem), Some(&stranger))).await.unwrap_err();
    assert!(
        matches!(&error, EmbedError::Internal(m) if m.starts_with("the provider refused the TLS handshake")),
        "{error}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn unusable_pem_is_refused_at_construction_without_echoing_it() {
    let pki = Pki::new();
    let server = Server { base_url: "https://127.0.0.1:9/v1".into(), requests: Arc::default() };
    let build = |ca: Option<&str>, identity: Option<&str>| embedder(endpoint(&server, ca, identity)).map(|_| ());
    let tls = |m: &str| Err(BuildError::Tls(m.into()));

    assert_eq!(build(Some("SECRET-NOT-PEM"), None), tls("ca_pem holds no CERTIFICATE section"));
    let bad_base64 = "-----BEGIN CERTIFICATE-----\nSECRET!!\n-----END CERTIFICATE-----\n";
    assert_eq!(build(Some(bad_base64), None), tls("ca_pem is not valid PEM"));
    let not_a_certificate = "-----BEGIN CERTIFICATE-----\nU0VDUkVU\n-----END CERTIFICATE-----\n";
    assert_eq!(build(Some(not_a_certificate), None), tls("ca_pem certificate 1 cannot be parsed"));

    let certificate_only = pki.client_identity_pem.split("-----BEGIN PRIVATE KEY-----").next().unwrap();
    let needs = "it needs the client certificate chain and its private key";
    assert_eq!(
        build(None, Some(certificate_only)),
        tls(&format!("client_identity_pem holds no usable PRIVATE KEY section; {needs}"))
    );
    assert_eq!(
        build(None, Some(&pki.server_key_pem)),
        tls(&format!("client_identity_pem holds no CERTIFICATE section; {needs}"))
    );
    // A certificate with someone else's key.
    let mismatched = format!("{certificate_only}{}", pki.server_key_pem);
    let Err(BuildError::Tls(message)) = build(None, Some(&mismatched)) else { panic!("accepted a mismatched key") };
    assert!(message.starts_with("client_identity_pem cannot be used as a client certificate"), "{message}");

    for error in [build(Some("SECRET-NOT-PEM"), None), build(None, Some(&mismatched))] {
        let text = error.unwrap_err().to_string();
        assert!(!text.contains("SECRET") && !text.contains("BEGIN"), "{text}");
    }
    assert_eq!(build(Some(&pki.ca_pem), Some(&pki.client_identity_pem)), Ok(()));
}

#[test]
fn debug_output_never_shows_the_client_key() {
    let pki = Pki::new();
    let server = Server { base_url: "https://127.0.0.1:9/v1".into(), requests: Arc::default() };
    let endpoint = endpoint(&server, Some(&pki.ca_pem), Some(&pki.client_identity_pem));
    let text = format!("{endpoint:?}");
    assert!(!text.contains("PRIVATE KEY") && !text.contains("BEGIN"), "{text}");
    assert!(text.contains("client_identity_pem: Some([redacted])"), "{text}");
}
