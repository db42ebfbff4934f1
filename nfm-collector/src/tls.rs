//! TLS for the API, the dashboard and (optionally) the agents' TCP stream (issue 15 item 5):
//! one rustls `ServerConfig` (ring provider) whose certificate comes from a reloadable
//! resolver, so SIGHUP swaps the certificate for new handshakes without a restart.
//!
//! Why a resolver and not a new `ServerConfig` per reload: the HTTP front and the ingest loop
//! each keep the config they were started with; the resolver behind it is the one thing that
//! changes, read under a lock once per handshake. A certificate that fails to load on reload is
//! logged and counted, and the old one stays in use.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The ring crypto provider, the one the collector and the agent use (no aws-lc, no cmake:
/// a small dependency tree). rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange; it is still a supported provider with the safe defaults.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and private key and checks that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "tls_cert {}: no PEM certificate in it",
            cert.display()
        ));
    }
    let der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| {
        format!(
            "tls_cert {} / tls_key {}: {e}",
            cert.display(),
            key.display()
        )
    })
}

/// The server's certificate, swapped by [`Tls::reload`]; every handshake reads the current one.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Counters `/metrics` reports for TLS (`nfm_tls_*`).
#[derive(Debug, Default)]
pub struct TlsCounters {
    pub reloads: AtomicU64,
    pub reload_errors: AtomicU64,
    /// Failed handshakes or TLS records (a plain-text client, a bad certificate on the agent's
    /// side, garbage) on the HTTP port and on the agents' TCP port.
    pub http_errors: AtomicU64,
    pub ingest_errors: AtomicU64,
}

/// The certificate files, the live server config and its counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<Resolver>,
    config: Arc<ServerConfig>,
    pub counters: Arc<TlsCounters>,
}

impl Tls {
    /// Loads the files; an error here stops the collector from starting (a clear message).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        let ck = load_certified_key(cert, key)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(ck)),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            resolver,
            config: Arc::new(config),
            counters: Arc::new(TlsCounters::default()),
        })
    }

    /// The config to start server connections with (the HTTP front and ingest share it).
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Re-reads the files: new handshakes use the new certificate. On error the old one stays,
    /// the error is logged and counted, and returned.
    pub fn reload(&self) -> Result<(), String> {
        match load_certified_key(&self.cert, &self.key) {
            Ok(ck) => {
                *self
                    .resolver
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                self.counters.reloads.fetch_add(1, Ordering::Relaxed);
                log::info!("tls: certificate reloaded from {}", self.cert.display());
                Ok(())
            }
            Err(e) => {
                self.counters.reload_errors.fetch_add(1, Ordering::Relaxed);
                log::error!("tls: reload refused, keeping the old certificate: {e}");
                Err(e)
            }
        }
    }

    /// The end-entity certificate in use now (tests compare it across reloads).
    pub fn current_cert(&self) -> CertificateDer<'static> {
        self.resolver
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .cert[0]
            .clone()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nfm-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn test_reload_swaps_and_a_bad_file_keeps_the_old_cert() {
        let d = tmp("reload");
        let (cert, key) = write_pair(&d, "a");
        let tls = Tls::load(&cert, &key).unwrap();
        let first = tls.current_cert();
        let (cert2, key2) = write_pair(&d, "b");
        std::fs::copy(&cert2, &cert).unwrap();
        std::fs::copy(&key2, &key).unwrap();
        tls.reload().unwrap();
        let second = tls.current_cert();
        assert_ne!(first, second);
        assert_eq!(tls.counters.reloads.load(Ordering::Relaxed), 1);
        std::fs::write(&cert, "not a certificate").unwrap();
        let e = tls.reload().unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        assert_eq!(tls.current_cert(), second);
        assert_eq!(tls.counters.reload_errors.load(Ordering::Relaxed), 1);
        // A key that is not the certificate's is refused too.
        std::fs::copy(&cert2, &cert).unwrap();
        let (_, key3) = write_pair(&d, "c");
        std::fs::copy(&key3, &key).unwrap();
        let e = tls.reload().unwrap_err();
        assert!(e.contains("tls_cert"), "{e}");
        assert_eq!(tls.current_cert(), second);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn test_missing_files_are_clear_errors() {
        let e =
            Tls::load(Path::new("/nonexistent.crt"), Path::new("/nonexistent.key")).unwrap_err();
        assert!(e.contains("/nonexistent.crt"), "{e}");
    }
}
