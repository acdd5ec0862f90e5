//! HTTPS clients for origins with their own TLS settings
//! ([`crate::model::TlsOrigin`]): a private certificate authority, a pinned
//! certificate, a client certificate, or no verification.
//!
//! The files are read when a run starts (and once at config load, to report
//! a bad file at its key), so a renewed certificate needs no restart. A
//! pinned fingerprint is honoured only in a way an attacker cannot replay:
//! the server's own certificate matches (the handshake proves it holds the
//! key), or a CA certificate in the chain matches and the chain and host
//! name verify against it; a CA's public certificate pasted into a forged
//! chain is not enough.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::model::tls::format_fingerprint;
use crate::model::{ClientIdentity, ServerTrust, TlsOrigin};

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        /// `CA file`, `client certificate`, `client key`.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item.
    #[error("the {what} {path} {problem}")]
    Pem {
        /// `CA file`, `client certificate`, `client key`.
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the combination (e.g. a key that does not match).
    #[error("TLS settings for {origin}: {message}")]
    Config {
        /// The origin pattern.
        origin: String,
        /// rustls's reason.
        message: String,
    },
}

/// The crypto provider reqwest's `rustls-tls` feature also uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read every file `tls` names and check that a client can be built from
/// them (config load calls this to report a bad file at its key).
///
/// # Errors
/// The first unusable file or combination.
pub fn check(tls: &TlsOrigin) -> Result<(), TlsError> {
    rustls_config(tls).map(drop)
}

/// An HTTPS client speaking TLS as `tls` says, otherwise like
/// [`super::http::client`].
///
/// # Errors
/// A file that cannot be read or used.
pub fn client(tls: &TlsOrigin) -> Result<reqwest::Client, TlsError> {
    let config = rustls_config(tls)?;
    super::http::builder()
        .use_preconfigured_tls(config)
        .build()
        .map_err(|e| TlsError::Config {
            origin: tls.origin.to_string(),
            message: e.to_string(),
        })
}

fn rustls_config(tls: &TlsOrigin) -> Result<rustls::ClientConfig, TlsError> {
    let origin = tls.origin.to_string();
    let refused = |e: rustls::Error| TlsError::Config {
        origin: origin.clone(),
        message: e.to_string(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(refused)?;
    let builder = match &tls.trust {
        None => builder.with_root_certificates(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        Some(ServerTrust::CaFile(path)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, "CA file")? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    what: "CA file",
                    path: path.display().to_string(),
                    problem: format!("holds a certificate that is not a usable CA: {e}"),
                })?;
            }
            builder.with_root_certificates(roots)
        }
        Some(ServerTrust::Fingerprint(pin)) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pin: *pin,
                provider: provider(),
            })),
        Some(ServerTrust::Insecure) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider()))),
    };
    match &tls.client {
        None => Ok(builder.with_no_client_auth()),
        Some(ClientIdentity { cert, key }) => {
            let chain = certificates(cert, "client certificate")?;
            let key = private_key(key)?;
            builder.with_client_auth_cert(chain, key).map_err(refused)
        }
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let bad = |problem: String| TlsError::Pem {
        what,
        path: path.display().to_string(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "holds no certificate (expected `-----BEGIN CERTIFICATE-----`)".to_owned(),
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "client key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        what: "client key",
        path: path.display().to_string(),
        problem: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no private key (expected `-----BEGIN PRIVATE KEY-----`, RSA or EC)"
                    .to_owned()
            }
            e => format!("is not valid PEM: {e}"),
        },
    })
}

/// Accepts the server when a certificate it presents has the pinned
/// fingerprint (see the module docs for why a CA pin still verifies).
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let leaf = Sha256::digest(end_entity.as_ref());
        if leaf.as_slice() == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        if let Some(ca) = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.pin)
        {
            let mut roots = RootCertStore::empty();
            roots.add(ca.clone().into_owned())?;
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
            return verifier.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let presented: Vec<String> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| format_fingerprint(&Sha256::digest(c.as_ref())))
            .collect();
        Err(rustls::Error::General(format!(
            "no certificate the server presented matches the pinned {}; it presented {}",
            format_fingerprint(&self.pin),
            presented.join(", ")
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `insecure = true`: any certificate (the handshake signature is still
/// checked against the key it names, which proves nothing about who that is).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
