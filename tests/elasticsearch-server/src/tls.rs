//! TLS mode: the server's own certificate authority, a server certificate for `127.0.0.1` and
//! `localhost`, and (for mutual TLS) a client certificate, generated per server with `rcgen` and
//! written as PEM files into a temporary directory the server owns (as ES 8's auto-configuration
//! writes `http_ca.crt` under `config/certs`). The CA's SHA-256 fingerprint is reported the way
//! ES 8 prints it at first start (`AB:CD:…`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// Whether the server asks for a client certificate (ES's
/// `xpack.security.http.ssl.client_authentication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for (ES's default).
    #[default]
    None,
    /// A client certificate signed by the server's CA is accepted if presented, and then
    /// authenticates the request (ES's PKI realm) as the user `client_cert_user`.
    Optional,
    /// The TLS handshake fails without a client certificate signed by the server's CA.
    Required,
}

/// How the server speaks TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub client_auth: ClientAuth,
}

/// The generated material of one server, kept in a temporary directory while it runs.
pub struct TlsFiles {
    /// Holds the files; removed with the server.
    pub _dir: tempfile::TempDir,
    pub ca_pem: PathBuf,
    pub client_cert_pem: PathBuf,
    pub client_key_pem: PathBuf,
    /// A second client certificate from a CA the server does not trust.
    pub foreign_client_cert_pem: PathBuf,
    pub foreign_client_key_pem: PathBuf,
    pub ca_fingerprint: String,
    pub(crate) config: Arc<rustls::ServerConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn leaf_params(cn: &str, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params
}

/// `AB:CD:…`, the SHA-256 of a DER certificate as ES 8 prints it.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn write(dir: &Path, name: &str, text: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Generates a CA, a server certificate and client certificates, writes them, and builds the
/// rustls server configuration.
pub fn generate(opts: &TlsOptions) -> std::io::Result<TlsFiles> {
    let dir = tempfile::Builder::new()
        .prefix("cairn-es-certs-")
        .tempdir()?;
    let ca_key = KeyPair::generate().map_err(io)?;
    let ca = ca_params("cairn-es-test-server CA (test double)")
        .self_signed(&ca_key)
        .map_err(io)?;
    let server_key = KeyPair::generate().map_err(io)?;
    let server = leaf_params(
        "cairn-test-node",
        vec![
            SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
            SanType::IpAddress(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            SanType::DnsName("localhost".try_into().map_err(io)?),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
    )
    .signed_by(&server_key, &ca, &ca_key)
    .map_err(io)?;
    let client_key = KeyPair::generate().map_err(io)?;
    let client = leaf_params(
        "cairn-client",
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    )
    .signed_by(&client_key, &ca, &ca_key)
    .map_err(io)?;
    let other_ca_key = KeyPair::generate().map_err(io)?;
    let other_ca = ca_params("some other CA")
        .self_signed(&other_ca_key)
        .map_err(io)?;
    let foreign_key = KeyPair::generate().map_err(io)?;
    let foreign = leaf_params(
        "foreign-client",
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    )
    .signed_by(&foreign_key, &other_ca, &other_ca_key)
    .map_err(io)?;

    let ca_pem = write(dir.path(), "http_ca.crt", &ca.pem())?;
    // The chain a client sends: its certificate, then the CA.
    let client_cert_pem = write(
        dir.path(),
        "client.crt",
        &format!("{}{}", client.pem(), ca.pem()),
    )?;
    let client_key_pem = write(dir.path(), "client.key", &client_key.serialize_pem())?;
    let foreign_client_cert_pem = write(dir.path(), "foreign-client.crt", &foreign.pem())?;
    let foreign_client_key_pem = write(
        dir.path(),
        "foreign-client.key",
        &foreign_key.serialize_pem(),
    )?;
    write(dir.path(), "http.crt", &server.pem())?;

    let chain: Vec<CertificateDer<'static>> = vec![server.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io)?;
    let config = match opts.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der().clone()).map_err(io)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(io)?)
        }
    };
    let mut config = config.with_single_cert(chain, key).map_err(io)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsFiles {
        ca_fingerprint: fingerprint(ca.der()),
        _dir: dir,
        ca_pem,
        client_cert_pem,
        client_key_pem,
        foreign_client_cert_pem,
        foreign_client_key_pem,
        config: Arc::new(config),
    })
}

/// Serves `router` over TLS on `listener` until the future is dropped. The client certificate
/// (if any) of each connection is passed to the router as a request extension
/// ([`PeerCertificate`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: axum::Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            // A failed handshake (untrusted client certificate, plain HTTP) just closes the
            // connection, as ES does.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| PeerCertificate(fingerprint(c)));
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    if let Some(p) = &peer {
                        req.extensions_mut().insert(p.clone());
                    }
                    let router = router.clone();
                    async move {
                        use tower::ServiceExt as _;
                        router.oneshot(req.map(axum::body::Body::new)).await
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The client certificate a TLS connection presented (its SHA-256 fingerprint, for logs).
#[derive(Debug, Clone)]
pub struct PeerCertificate(#[allow(dead_code)] pub String);
