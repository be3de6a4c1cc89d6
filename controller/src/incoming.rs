//! The controller's accept loop with a cap on open connections, so a flood of idle or
//! half-open connections cannot use up the process's file descriptors and starve the devices
//! that need a lockdown.
//!
//! Each accepted connection holds a permit until it closes; at the cap the loop waits for one
//! to close instead of accepting (the kernel's backlog holds the rest). A connection that never
//! finishes its TLS handshake is closed by the handshake timeout (`server.rs`), which gives its
//! permit back. [`tls`] does the handshakes, a bounded number at once.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection and the permit it holds.
pub struct LimitedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for LimitedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepted connections, at most `max_connections` open at once.
pub fn limited(
    listener: TcpListener,
    max_connections: usize,
) -> impl Stream<Item = io::Result<LimitedStream>> {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    futures::stream::unfold((listener, permits), |(listener, permits)| async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return None;
            };
            match listener.accept().await {
                Ok((stream, _)) => {
                    // Small messages (a lockdown) go out at once rather than waiting to fill a
                    // segment.
                    let _ = stream.set_nodelay(true);
                    let item = LimitedStream {
                        stream,
                        _permit: permit,
                    };
                    return Some((Ok(item), (listener, permits)));
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep serving the
                    // connections already open, and try again shortly rather than spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// TLS on top of [`limited`], each handshake on a task of its own with `timeout` for the whole
/// of it. The accept loop never waits for a handshake. A connection takes one of `handshakes`
/// slots only once its first bytes have arrived, and holds it until its handshake ends: a
/// connection that says nothing (hundreds of them, `tests/e2e/device_limits.rs`) holds no
/// slot, and 10,000 devices coming back together after a restart do their public-key work a
/// bounded number at a time, first come first served, instead of all crawling along at once
/// while the streams already open wait for the CPU. Finished connections are handed to the
/// server in the order they finish.
pub fn tls(
    connections: impl Stream<Item = io::Result<LimitedStream>> + Send + 'static,
    acceptor: TlsAcceptor,
    handshakes: usize,
    timeout: Duration,
) -> impl Stream<Item = io::Result<TlsStream<LimitedStream>>> {
    let (ready_tx, ready_rx) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(handshakes.max(1)));
    tokio::spawn(async move {
        let mut connections = std::pin::pin!(connections);
        loop {
            let stream = tokio::select! {
                next = connections.next() => match next {
                    Some(Ok(stream)) => stream,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "accept failed");
                        continue;
                    }
                    None => return,
                },
                // The server stopped taking connections (shutting down).
                () = ready_tx.closed() => return,
            };
            let acceptor = acceptor.clone();
            let ready = ready_tx.clone();
            let slots = slots.clone();
            tokio::spawn(async move {
                let shaken = tokio::time::timeout(timeout, async {
                    stream.stream.readable().await?;
                    let _slot = slots.acquire_owned().await.map_err(io::Error::other)?;
                    acceptor.accept(stream).await
                })
                .await;
                match shaken {
                    Ok(Ok(tls)) => {
                        let _ = ready.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(ready_rx)
}
