//! TLS on an agent's TCP connection (`ingest_tls`, issue 15 item 5): rustls's
//! `read_tls` / `process_new_packets` / `write_tls` driven by the ingest loop's non-blocking
//! socket, one step at a time, so a TLS connection is read and written in the same rounds
//! (and under the same budgets) as a plain one. The socket loop stays the owner of the
//! connection; this only moves bytes between the socket and rustls.

use mio::net::TcpStream;
use rustls::ServerConnection;
use std::io::{self, Read, Write};

/// What one [`read_step`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Bytes were read: call again (more may be waiting).
    More,
    /// The socket has nothing more now.
    Blocked,
    /// The peer closed (after any plaintext handed over).
    Eof,
}

/// Reads ciphertext once, decrypts it and hands every plaintext byte to `sink`. `Err`: a TLS
/// failure (a plain-text client, a bad record, an alert such as the agent refusing our
/// certificate) or a socket error, as a message; rustls's alert, if any, is written first.
pub(super) fn read_step(
    tls: &mut ServerConnection,
    sock: &mut TcpStream,
    buf: &mut [u8],
    sink: &mut dyn FnMut(&[u8]),
) -> Result<Step, String> {
    let step = loop {
        match tls.read_tls(sock) {
            Ok(0) => break Step::Eof,
            Ok(_) => break Step::More,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Step::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    if let Err(e) = tls.process_new_packets() {
        let _ = tls.write_tls(sock); // the alert telling the peer why
        return Err(if tls.is_handshaking() {
            format!("TLS handshake failed: {e} (an agent without --tls-ca?)")
        } else {
            format!("TLS: {e}")
        });
    }
    loop {
        match tls.reader().read(buf) {
            Ok(0) => return Ok(Step::Eof), // close_notify
            Ok(n) => sink(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Step::Eof),
            Err(e) => return Err(format!("TLS read: {e}")),
        }
    }
    Ok(step)
}

/// Moves `out` into rustls and writes ciphertext until the socket would block. Returns whether
/// bytes are still waiting (then ask for writability).
pub(super) fn write_out(
    tls: &mut ServerConnection,
    sock: &mut TcpStream,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    loop {
        while !out.is_empty() {
            match tls.writer().write(out)? {
                0 => break, // rustls's buffer is full: send first
                n => {
                    out.drain(..n);
                }
            }
        }
        let mut wrote = false;
        while tls.wants_write() {
            match tls.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => wrote = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if out.is_empty() || !wrote {
            return Ok(!out.is_empty() || tls.wants_write());
        }
    }
}
