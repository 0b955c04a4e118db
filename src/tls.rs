//! TLS settings for connections to Redis and to PostgreSQL (feature `tls`, on by
//! default), on rustls with the ring provider.
//!
//! A `rediss://` URL is enough for a Redis whose certificate chains to the system
//! trust store. [`TlsConfig`] adds a private CA and a client certificate (mutual TLS).
//! Certificate verification is skipped only when the Redis URL asks for it explicitly
//! (`rediss://host:port/#insecure`); for PostgreSQL, never.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ConfigError;

/// A CA and client certificate for TLS connections, in PEM: to Redis
/// ([`RedisStoreBuilder::with_tls`](crate::RedisStoreBuilder::with_tls)) or to PostgreSQL (the
/// audit writer of `tower-redis-session-audit`).
///
/// ```rust,no_run
/// use tower_redis_session::{RedisStore, TlsConfig};
///
/// let store = RedisStore::builder("rediss://redis.internal:6380")
///     .with_tls(
///         TlsConfig::default()
///             .with_ca_file("/etc/redis-tls/ca.crt")
///             .with_client_cert_files("/etc/redis-tls/client.crt", "/etc/redis-tls/client.key"),
///     )
///     .build()?;
/// # Ok::<(), tower_redis_session::ConfigError>(())
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct TlsConfig {
    ca: Option<Pem>,
    client: Option<(Pem, Pem)>,
}

/// PEM given inline or as a file read when the store is built.
#[derive(Clone)]
enum Pem {
    Inline(Vec<u8>),
    File(PathBuf),
}

impl Pem {
    fn read(&self) -> Result<Vec<u8>, ConfigError> {
        match self {
            Self::Inline(pem) => Ok(pem.clone()),
            Self::File(path) => std::fs::read(path).map_err(|source| ConfigError::TlsFile {
                path: path.clone(),
                source,
            }),
        }
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("<inline PEM>"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // File names and whether each part is set; never the key material.
        f.debug_struct("TlsConfig")
            .field("ca", &self.ca)
            .field("client_cert", &self.client.as_ref().map(|(cert, _)| cert))
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Trusts the CA certificates in `pem` instead of the system trust store.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(Pem::Inline(pem.into()));
        self
    }

    /// As [`with_ca_pem`](Self::with_ca_pem), read from `path` when the store is built.
    pub fn with_ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.ca = Some(Pem::File(path.as_ref().to_owned()));
        self
    }

    /// Presents a client certificate (chain) and its private key, for servers that
    /// require one (`tls-auth-clients yes`).
    pub fn with_client_cert_pem(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.client = Some((Pem::Inline(cert.into()), Pem::Inline(key.into())));
        self
    }

    /// As [`with_client_cert_pem`](Self::with_client_cert_pem), read from files when the store
    /// is built.
    pub fn with_client_cert_files(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.client = Some((
            Pem::File(cert.as_ref().to_owned()),
            Pem::File(key.as_ref().to_owned()),
        ));
        self
    }

    /// The certificates, read and parsed, as the `redis` crate takes them.
    pub(crate) fn certificates(&self) -> Result<redis::TlsCertificates, ConfigError> {
        let certificates = redis::TlsCertificates {
            client_tls: match &self.client {
                Some((cert, key)) => Some(redis::ClientTlsConfig {
                    client_cert: cert.read()?,
                    client_key: key.read()?,
                }),
                None => None,
            },
            root_cert: self.ca.as_ref().map(Pem::read).transpose()?,
        };
        // Parse now, so a bad certificate fails the build rather than every connection.
        if let Some(ca) = &certificates.root_cert {
            require_certificates(ca, "the CA PEM")?;
        }
        if let Some(client) = &certificates.client_tls {
            require_certificates(&client.client_cert, "the client certificate PEM")?;
            let key = PrivateKeyDer::from_pem_slice(&client.client_key)
                .map_err(|_| ConfigError::Tls("the client key is not a PEM private key".into()))?;
            rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| {
                ConfigError::Tls("the client key is not a supported private key".into())
            })?;
        }
        let probe = redis::Client::build_with_tls("rediss://127.0.0.1:6379", certificates.clone());
        match probe {
            Ok(_) => Ok(certificates),
            Err(e) => Err(ConfigError::Tls(e.to_string())),
        }
    }
}

impl TlsConfig {
    /// A rustls client configuration: the CA if given, else the system trust store;
    /// the client certificate if given. Verification is always on.
    fn rustls_client_config(&self) -> Result<rustls::ClientConfig, ConfigError> {
        install_crypto_provider();
        let certs = self.certificates()?;
        let mut roots = rustls::RootCertStore::empty();
        match &certs.root_cert {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem).flatten() {
                    roots.add(cert).map_err(|_| {
                        ConfigError::Tls("the CA PEM holds an invalid certificate".into())
                    })?;
                }
            }
            None => {
                // Unreadable system certificates are skipped; an empty store fails the
                // handshake with a clear "unknown issuer".
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        match certs.client_tls {
            Some(client) => {
                let chain: Vec<_> = CertificateDer::pem_slice_iter(&client.client_cert)
                    .flatten()
                    .collect();
                let key = PrivateKeyDer::from_pem_slice(&client.client_key).map_err(|_| {
                    ConfigError::Tls("the client key is not a PEM private key".into())
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| ConfigError::Tls(format!("client certificate: {e}")))
            }
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// The certificates a TLS connection to Redis uses, with the crypto provider installed.
/// For the audit crate (through `__private`); not public API.
pub fn redis_certificates(tls: &TlsConfig) -> Result<redis::TlsCertificates, ConfigError> {
    let certificates = tls.certificates()?;
    install_crypto_provider();
    Ok(certificates)
}

/// A rustls client configuration for `tls` (for PostgreSQL in the audit crate, through
/// `__private`); not public API.
pub fn rustls_client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, ConfigError> {
    tls.rustls_client_config()
}

/// Fails unless `pem` holds at least one certificate, and every one parses.
fn require_certificates(pem: &[u8], what: &str) -> Result<(), ConfigError> {
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|_| ConfigError::Tls(format!("{what} does not parse")))?;
        webpki_parse(&cert)
            .map_err(|_| ConfigError::Tls(format!("{what} holds an invalid certificate")))?;
        found += 1;
    }
    if found == 0 {
        return Err(ConfigError::Tls(format!("no certificate in {what}")));
    }
    Ok(())
}

/// Parses a certificate the way the TLS handshake will.
fn webpki_parse(cert: &CertificateDer<'_>) -> Result<(), ()> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).map_err(|_| ())
}

/// Makes ring the process's rustls provider unless the application installed one, so
/// that a TLS connection never fails (or panics) for want of a provider when another
/// crate enables a second rustls backend.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
