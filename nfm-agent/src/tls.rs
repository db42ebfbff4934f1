//! TLS to the collector (issue 15 item 5): the agent verifies the collector's certificate
//! against a CA file (`--tls-ca`) and speaks TLS 1.3 over its TCP stream. rustls with the ring
//! provider and no async runtime: rustls's `read_tls` / `process_new_packets` / `write_tls` are
//! driven by the agent's own mio loop (`transport`), one step at a time.

use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// How to reach collectors over TLS: the trusted CA(s) and, optionally, the name the
/// collector's certificate must carry (default: the collector's IP address).
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl TlsClient {
    /// Reads the CA file (PEM, one or more certificates).
    pub fn load(ca: &Path, server_name: Option<&str>) -> Result<TlsClient> {
        let mut roots = RootCertStore::empty();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .map_err(|e| anyhow!("--tls-ca {}: {e}", ca.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("--tls-ca {}: {e}", ca.display()))?;
        if certs.is_empty() {
            bail!("--tls-ca {}: no PEM certificate in it", ca.display());
        }
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("--tls-ca {}", ca.display()))?;
        }
        #[allow(deprecated)] // ring: rustls 0.23.48 flags it for lacking post-quantum kx
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| anyhow!("tls: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = server_name
            .map(|n| {
                ServerName::try_from(n.to_string())
                    .map_err(|e| anyhow!("--tls-server-name `{n}`: {e}"))
            })
            .transpose()?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    /// A new client connection to the collector at `ip`.
    pub fn connect(&self, ip: IpAddr) -> Result<ClientConnection, rustls::Error> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(ip.into()));
        ClientConnection::new(self.config.clone(), name)
    }
}

/// What one [`read_step`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    More,
    Blocked,
    Eof,
}

/// Reads ciphertext once, decrypts it and hands the plaintext to `sink`. `Err`: a TLS failure
/// (an untrusted certificate, a name mismatch, a plain-text collector) or a socket error, as a
/// message; our alert, if any, is written to the collector first.
pub fn read_step<S: Read + Write>(
    tls: &mut ClientConnection,
    sock: &mut S,
    buf: &mut [u8],
    sink: &mut dyn FnMut(&[u8]),
) -> Result<Step, String> {
    let step = loop {
        match tls.read_tls(sock) {
            Ok(0) => break Step::Eof,
            Ok(_) => break Step::More,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Step::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
    };
    if let Err(e) = tls.process_new_packets() {
        let _ = tls.write_tls(sock);
        return Err(format!("TLS: {e} (check --tls-ca and --tls-server-name)"));
    }
    loop {
        match tls.reader().read(buf) {
            Ok(0) => return Ok(Step::Eof),
            Ok(n) => sink(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Step::Eof),
            Err(e) => return Err(format!("TLS read: {e}")),
        }
    }
    Ok(step)
}

/// Writes ciphertext rustls holds until the socket would block. True: bytes still wait.
pub fn write_tls<S: Write>(tls: &mut ClientConnection, sock: &mut S) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}
