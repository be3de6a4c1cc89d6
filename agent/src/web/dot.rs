//! DNS over TLS to the upstream (RFC 7858), as an option: the home's network (or anyone on
//! it) then cannot see or change what the filter asks, and the upstream is known by its
//! certificate, not only its address.
//!
//! Blocking `rustls` streams on the forwarding threads: connections are kept and reused (a
//! TLS handshake per query would cost more than the query), at most a few idle ones per
//! upstream; one that the server closed is replaced once, transparently.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, RootCertStore, StreamOwned};

/// Where the system keeps its trusted certificate authorities (Debian, Ubuntu, Fedora's
/// compatibility link).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Idle connections kept per upstream.
const IDLE_PER_UPSTREAM: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum DotError {
    #[error("cannot read the certificate authorities in {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} holds no certificate authority this device can use (expected PEM certificates)"
    )]
    NoRoots { path: String },
    #[error("\"{0}\" is not a name an upstream's certificate can be checked against")]
    BadName(String),
    #[error("could not set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// How to reach upstreams over TLS.
#[derive(Clone)]
pub struct DotClient {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    idle: Arc<Mutex<HashMap<SocketAddr, Vec<Stream>>>>,
}

type Stream = StreamOwned<ClientConnection, TcpStream>;

impl std::fmt::Debug for DotClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DotClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl DotClient {
    /// Upstreams whose certificates name `server_name` (e.g. `dns.quad9.net`), trusted through
    /// the authorities in the PEM file `roots`.
    pub fn new(server_name: &str, roots: &Path) -> Result<DotClient, DotError> {
        let path = roots.display().to_string();
        let pem = std::fs::read(roots).map_err(|source| DotError::Read {
            path: path.clone(),
            source,
        })?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        DotClient::with_roots(server_name, certs, &path)
    }

    /// As [`DotClient::new`], with the authorities given (tests, a pinned authority).
    pub fn with_roots(
        server_name: &str,
        certs: Vec<CertificateDer<'static>>,
        source: &str,
    ) -> Result<DotClient, DotError> {
        let mut store = RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(DotError::NoRoots {
                path: source.to_string(),
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(store)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| DotError::BadName(server_name.to_string()))?;
        Ok(DotClient {
            config: Arc::new(config),
            name,
            idle: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Sends one query to `target` and waits for its answer; `None` when the upstream could
    /// not be reached, its certificate did not check out, or it did not answer in `timeout`.
    pub fn exchange(
        &self,
        target: SocketAddr,
        packet: &[u8],
        mark: Option<u32>,
        timeout: Duration,
    ) -> Option<Vec<u8>> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&target)
            .and_then(Vec::pop);
        // A reused connection the server has closed meanwhile fails here: a fresh one below.
        if let Some(mut stream) = reused
            && let Some(answer) = round_trip(&mut stream, packet)
        {
            self.keep(target, stream);
            return Some(answer);
        }
        let mut stream = self.connect(target, mark, timeout)?;
        let answer = round_trip(&mut stream, packet)?;
        self.keep(target, stream);
        Some(answer)
    }

    fn connect(&self, target: SocketAddr, mark: Option<u32>, timeout: Duration) -> Option<Stream> {
        let tcp = TcpStream::connect_timeout(&target, timeout).ok()?;
        if let Some(mark) = mark {
            super::upstream::set_mark(&tcp, mark);
        }
        tcp.set_read_timeout(Some(timeout)).ok()?;
        tcp.set_write_timeout(Some(timeout)).ok()?;
        let _ = tcp.set_nodelay(true);
        let conn = ClientConnection::new(self.config.clone(), self.name.clone()).ok()?;
        Some(StreamOwned::new(conn, tcp))
    }

    fn keep(&self, target: SocketAddr, stream: Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(target).or_default();
        if list.len() < IDLE_PER_UPSTREAM {
            list.push(stream);
        }
    }
}

/// One length-prefixed query and answer on a stream (the handshake happens on first use).
fn round_trip(stream: &mut Stream, packet: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(packet.len()).ok()?;
    let mut out = Vec::with_capacity(packet.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    stream.write_all(&out).ok()?;
    stream.flush().ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).ok()?;
    Some(answer)
}
