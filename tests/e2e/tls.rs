//! TLS settings per origin (`[jobs.NAME.tls."https://host:port"]`): a
//! private CA, a pinned fingerprint (of the server's certificate or of a CA
//! in its chain, never one pasted into a forged chain), client certificates,
//! `insecure`. Certificates are made fresh by each test (rcgen); the server
//! is a loopback rustls listener answering every request with the
//! fingerprint of the client certificate it was shown. The guest is the
//! hostile task's `http` probe: it only names URLs, the host picks the TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::hostile::{backup, config, denied, ok};
use crate::support::Scratch;

/// A certificate authority.
fn authority(name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// A certificate `ca` signed: for 127.0.0.1 and localhost, or a client's.
struct Leaf {
    der: CertificateDer<'static>,
    pem: String,
    key: KeyPair,
}

fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, name: &str, client: bool) -> anyhow::Result<Leaf> {
    let sans = if client {
        Vec::new()
    } else {
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()]
    };
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok(Leaf {
        der: cert.der().clone(),
        pem: cert.pem(),
        key,
    })
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// An HTTPS server on a loopback port presenting `chain`; with `client_ca`
/// it requires a client certificate that CA signed.
struct TlsServer {
    url: String,
    _task: tokio::task::JoinHandle<()>,
}

impl TlsServer {
    async fn start(
        chain: Vec<CertificateDer<'static>>,
        key: &KeyPair,
        client_ca: Option<&CertifiedIssuer<'static, KeyPair>>,
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der().clone())?;
                builder.with_client_cert_verifier(
                    rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider,
                    )
                    .build()?,
                )
            }
            None => builder.with_no_client_auth(),
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = builder.with_single_cert(chain, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A failed handshake is the client's refusal (or ours): drop it.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let client = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| sha256_hex(c.as_ref()));
                    let body = json!({ "client": client }).to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Ok(Self {
            url: format!("https://127.0.0.1:{}", addr.port()),
            _task: task,
        })
    }
}

/// A runner for job `h` granted `origin`, with `tls` as its TLS table body
/// for that origin (empty: no settings).
fn runner(scratch: &Scratch, origin: &str, tls: &str) -> anyhow::Result<cairn::runner::Runner> {
    let table = if tls.is_empty() {
        String::new()
    } else {
        format!("\n[jobs.h.tls.{origin:?}]\n{tls}\n")
    };
    scratch.runner(&format!(
        "{}{table}",
        config("", &format!("http = [{origin:?}]"))
    ))
}

async fn get(
    runner: &cairn::runner::Runner,
    url: &str,
) -> anyhow::Result<cairn::runner::RunReport> {
    backup(runner, json!({"attack": "http", "url": format!("{url}/")})).await
}

fn body(out: &Value) -> Value {
    serde_json::from_str(out["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

fn write(scratch: &Scratch, name: &str, text: &str) -> anyhow::Result<String> {
    std::fs::write(scratch.path(name), text)?;
    Ok(scratch.path(name).display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_for_its_origin_only() -> anyhow::Result<()> {
    let ca = authority("Private CA")?;
    let server_cert = leaf(&ca, "es", false)?;
    let server = TlsServer::start(vec![server_cert.der.clone()], &server_cert.key, None).await?;
    let scratch = Scratch::new()?;
    let ca_file = write(&scratch, "ca.pem", &ca.pem())?;

    // Without settings the public roots are used, and the server is refused.
    let plain = runner(&scratch, &server.url, "")?;
    let error = denied(&get(&plain, &server.url).await?, &[&server.url]);
    assert!(
        error.to_lowercase().contains("certificate"),
        "the refusal names the certificate: {error}"
    );
    assert!(
        error.contains(&format!("[jobs.h.tls.\"{}\"]", server.url)) && error.contains("ca-file"),
        "the refusal says what to set: {error}"
    );

    let trusted = runner(&scratch, &server.url, &format!("ca-file = {ca_file:?}"))?;
    let out = ok(&get(&trusted, &server.url).await?);
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(
        body(&out)["client"],
        Value::Null,
        "no client certificate was sent"
    );

    // Another CA's file does not vouch for this server.
    let other = authority("Other CA")?;
    let other_file = write(&scratch, "other.pem", &other.pem())?;
    let wrong = runner(&scratch, &server.url, &format!("ca-file = {other_file:?}"))?;
    denied(&get(&wrong, &server.url).await?, &[&server.url]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_fingerprint_of_the_server_or_its_ca_is_accepted() -> anyhow::Result<()> {
    let ca = authority("Elasticsearch HTTP CA")?;
    let server_cert = leaf(&ca, "es", false)?;
    // Like Elasticsearch's auto-configured HTTP layer: the leaf, then its CA.
    let server = TlsServer::start(
        vec![server_cert.der.clone(), ca.der().clone()],
        &server_cert.key,
        None,
    )
    .await?;
    let scratch = Scratch::new()?;

    for pin in [
        format!("sha256:{}", sha256_hex(ca.der())),
        sha256_hex(&server_cert.der).to_uppercase(),
    ] {
        let pinned = runner(&scratch, &server.url, &format!("ca-fingerprint = {pin:?}"))?;
        let out = ok(&get(&pinned, &server.url).await?);
        assert_eq!(out["status"], 200, "{pin}: {out}");
    }

    // A pin no certificate matches: the message shows what was presented.
    let stranger = "ab".repeat(32);
    let pinned = runner(
        &scratch,
        &server.url,
        &format!("ca-fingerprint = {stranger:?}"),
    )?;
    denied(
        &get(&pinned, &server.url).await?,
        &["matches the pinned sha256:AB:AB", "it presented sha256:"],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_ca_pasted_into_a_forged_chain_is_refused() -> anyhow::Result<()> {
    // The attacker has the real CA's public certificate, not its key: it
    // signs its own leaf with its own CA and sends the real CA along.
    let real = authority("Real CA")?;
    let forger = authority("Forger CA")?;
    let forged = leaf(&forger, "es", false)?;
    let server = TlsServer::start(
        vec![forged.der.clone(), real.der().clone()],
        &forged.key,
        None,
    )
    .await?;
    let scratch = Scratch::new()?;
    let pin = format!("sha256:{}", sha256_hex(real.der()));
    let pinned = runner(&scratch, &server.url, &format!("ca-fingerprint = {pin:?}"))?;
    let error = denied(&get(&pinned, &server.url).await?, &[&server.url]);
    assert!(
        error.contains("UnknownIssuer") || error.to_lowercase().contains("issuer"),
        "the chain does not verify against the pinned CA: {error}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_to_its_origin() -> anyhow::Result<()> {
    let ca = authority("mTLS CA")?;
    let server_cert = leaf(&ca, "es", false)?;
    let client = leaf(&ca, "cairn", true)?;
    let server =
        TlsServer::start(vec![server_cert.der.clone()], &server_cert.key, Some(&ca)).await?;
    let scratch = Scratch::new()?;
    let ca_file = write(&scratch, "ca.pem", &ca.pem())?;
    let cert_file = write(&scratch, "client.pem", &client.pem)?;
    let key_file = write(&scratch, "client.key", &client.key.serialize_pem())?;

    // Without the client certificate the server refuses the handshake.
    let anonymous = runner(&scratch, &server.url, &format!("ca-file = {ca_file:?}"))?;
    denied(&get(&anonymous, &server.url).await?, &[&server.url]);

    let identified = runner(
        &scratch,
        &server.url,
        &format!("ca-file = {ca_file:?}\nclient-cert = {cert_file:?}\nclient-key = {key_file:?}"),
    )?;
    let out = ok(&get(&identified, &server.url).await?);
    assert_eq!(
        body(&out)["client"],
        json!(sha256_hex(&client.der)),
        "the server saw the configured client certificate: {out}"
    );
    assert!(
        !out.to_string().contains("PRIVATE KEY"),
        "nothing of the key reaches the guest"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skips_verification_and_says_so() -> anyhow::Result<()> {
    let ca = authority("Throwaway CA")?;
    let server_cert = leaf(&ca, "es", false)?;
    let server = TlsServer::start(vec![server_cert.der.clone()], &server_cert.key, None).await?;
    let scratch = Scratch::new()?;
    let path = scratch.write_config(&format!(
        "{}\n[jobs.h.tls.{:?}]\ninsecure = true\n",
        config("", &format!("http = [{:?}]", server.url)),
        server.url
    ))?;
    let loaded = cairn::config::load(&path)?;
    let warnings = cairn::config::warnings(&loaded);
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("not verified") && w.location.contains("tls")),
        "{warnings:?}"
    );

    let insecure = runner(&scratch, &server.url, "insecure = true")?;
    let report = get(&insecure, &server.url).await?;
    assert_eq!(ok(&report)["status"], 200);
    let logs = insecure.store().logs(&report.run.id)?;
    assert!(
        logs.iter()
            .any(|l| l.level == "warn" && l.message.contains("are not verified")),
        "the run's log says so: {logs:?}"
    );
    Ok(())
}
