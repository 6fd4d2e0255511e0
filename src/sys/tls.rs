//! TLS for gatelog's servers and clients: rustls with its ring provider
//! (no system library), HTTP/1.1 only.
//!
//! Clients trust the system's roots unless the command names a CA file
//! (`--ca`); the choice is made once per process, at start, by
//! [`configure_client`], so every client in it (submit, verify, mirror,
//! audit, monitor, the log's witness rounds) trusts the same roots. A
//! certificate from another CA, or for another host name, fails the
//! handshake: there is no flag to skip the check.
//!
//! Servers ([`server_acceptor`]) present a certificate chain and key from
//! PEM files; with a client CA they also ask for client certificates
//! (mutual TLS), which authenticate writers by their SHA-256 fingerprint.
//! Readers need none.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// The client configuration every connection of this process uses.
static CLIENT: OnceLock<Arc<ClientConfig>> = OnceLock::new();

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM file (a chain, or a CA bundle).
pub fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate file", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}

fn roots_from(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("{}: a certificate is not a usable CA", path.display()))?;
    }
    Ok(roots)
}

fn system_roots() -> anyhow::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    anyhow::ensure!(
        added > 0,
        "no CA certificates found in the system store ({:?}); install ca-certificates or pass --ca FILE",
        found.errors.first()
    );
    Ok(roots)
}

/// What a client's TLS is made of (the command's flags).
#[derive(Clone, Debug, Default)]
pub struct ClientTlsFiles {
    /// CAs to trust instead of the system's roots (PEM).
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate chain for mutual TLS (PEM), with `key`.
    pub cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM, mode 0600).
    pub key: Option<std::path::PathBuf>,
}

/// Sets the roots (and, for mutual TLS, the identity) of every HTTPS
/// connection this process makes. Call once, before the first; the
/// default is the system's roots and no identity.
pub fn configure_client(files: &ClientTlsFiles) -> anyhow::Result<()> {
    if files.ca.is_none() && files.cert.is_none() && files.key.is_none() {
        return Ok(());
    }
    let roots = match &files.ca {
        Some(path) => roots_from(path)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots);
    let mut config = match (&files.cert, &files.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .context("the client certificate and key do not match")?,
        _ => anyhow::bail!(
            "a client certificate needs its key: give both --client-cert and --client-key"
        ),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    CLIENT
        .set(Arc::new(config))
        .map_err(|_| anyhow::anyhow!("the TLS client was configured twice"))
}

fn client_config() -> Result<Arc<ClientConfig>, String> {
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let roots = system_roots().map_err(|e| format!("{e:#}"))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(CLIENT.get_or_init(|| Arc::new(config)).clone())
}

/// The TLS client for PostgreSQL: the same roots (and identity) as every
/// HTTPS client of this process, speaking `postgresql` in ALPN.
#[cfg(feature = "server")]
pub fn postgres_client_config() -> Result<ClientConfig, String> {
    let mut config = (*client_config()?).clone();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// Runs the TLS handshake for `host` over `stream`; fails when the server's
/// certificate does not chain to the trusted roots or does not name `host`.
pub async fn connect<S>(host: &str, stream: S) -> Result<tokio_rustls::client::TlsStream<S>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
    tokio_rustls::TlsConnector::from(client_config()?)
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))
}

/// A private key from a PEM file that only its owner can read.
fn read_key(path: &Path) -> anyhow::Result<rustls::pki_types::PrivateKeyDer<'static>> {
    let pem = crate::sys::keyfile::read_secret(path)
        .with_context(|| format!("TLS key {}", path.display()))?;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .with_context(|| format!("{}: no PEM private key", path.display()))
}

/// What a server's TLS is made of (the command's flags).
#[cfg(feature = "server")]
#[derive(Clone, Debug)]
pub struct ServerTlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: std::path::PathBuf,
    /// CAs whose client certificates are accepted (mutual TLS); clients
    /// without one still connect, as readers.
    pub client_ca: Option<std::path::PathBuf>,
}

/// The acceptor for a server's connections.
#[cfg(feature = "server")]
pub fn server_acceptor(files: &ServerTlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions");
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots_from(ca)?),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .with_context(|| format!("client CA {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(read_certs(&files.cert)?, read_key(&files.key)?)
        .with_context(|| {
            format!(
                "{} and {} are not a certificate and its key",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if files.client_ca.is_some() {
        // A resumed session carries the client certificate it was made
        // with, unchecked: a certificate that expired, or was removed from
        // the writers' CA, would keep writing. Every connection does a
        // full handshake instead.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The SHA-256 of a certificate (DER), in hex: how a writer's client
/// certificate is named in the writers file.
pub fn fingerprint(cert: &[u8]) -> String {
    use sha2::Digest;
    crate::tlog::merkle::hex(&sha2::Sha256::digest(cert))
}
