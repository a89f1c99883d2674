//! The HTTPS server: an accept loop of our own, so that every connection
//! has a TLS handshake timeout, a header-read timeout, a write-stall
//! timeout, a cap on buffered bytes and a place in a bounded connection
//! pool (and in its source address's share of it).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::extract::ClientAddr;
use super::router::router;
use crate::per_address::{AddressSlot, PerAddress};
use crate::state::AppState;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADER_BUFFER: usize = 64 * 1024;

/// Accepts HTTPS connections until `shutdown` turns true, then lets open
/// connections finish their requests for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    tls: TlsAcceptor,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let app = router(state.clone());
    let slots = Arc::new(Semaphore::new(state.settings.http_connections));
    let per_address = Arc::new(PerAddress::new(state.settings.http_connections_per_address));
    let mut connections = JoinSet::new();
    let for_connections = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            stop = shutdown.wait_for(|stop| *stop) => {
                if stop.is_ok() { break } else { continue }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // One address first, so that it cannot take the last global slots.
        let Some(mine) = per_address.take(peer.ip()) else {
            state.metrics.http_connections_refused.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "per-address connection cap reached; refusing");
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.metrics.http_connections_refused.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "connection cap reached; refusing");
            continue;
        };
        let permit = (permit, mine);
        let _ = tcp.set_nodelay(true);
        let (tls, app, state, shutdown) = (
            tls.clone(),
            app.clone(),
            state.clone(),
            for_connections.clone(),
        );
        connections.spawn(serve_connection(
            tcp, peer, tls, app, state, shutdown, permit,
        ));
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "grace period over; closing API connections"
        );
        connections.abort_all();
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    tls: TlsAcceptor,
    app: Router,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    _permit: (tokio::sync::OwnedSemaphorePermit, AddressSlot),
) {
    state.metrics.http_connections_open.fetch_add(1, Relaxed);
    let Ok(Ok(stream)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await else {
        tracing::debug!(%peer, "TLS handshake failed or timed out");
        state.metrics.http_connections_open.fetch_sub(1, Relaxed);
        return;
    };
    // A client that stops reading its responses holds a connection slot
    // only as long as a request may take.
    let stream = StallLimit::new(stream, state.live().http_request_timeout);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BUFFER)
        .serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(WithClientAddr { app, peer }),
        );
    tokio::pin!(conn);
    let stopping = tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            false
        }
        stop = shutdown.wait_for(|stop| *stop) => stop.is_ok(),
    };
    if stopping {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
    state.metrics.http_connections_open.fetch_sub(1, Relaxed);
}

/// The router, with each request marked with the address it came from.
/// (`Router::layer` would do it by building a whole router for every
/// connection: some 100 KiB of route tables each time.)
#[derive(Clone)]
struct WithClientAddr {
    app: Router,
    peer: std::net::SocketAddr,
}

impl<B> tower_service::Service<axum::http::Request<B>> for WithClientAddr
where
    Router: tower_service::Service<axum::http::Request<B>>,
{
    type Response = <Router as tower_service::Service<axum::http::Request<B>>>::Response;
    type Error = <Router as tower_service::Service<axum::http::Request<B>>>::Error;
    type Future = <Router as tower_service::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(ClientAddr(self.peer));
        self.app.call(request)
    }
}

/// A stream whose writes fail once one has made no progress for `limit`:
/// the peer's receive window stayed shut that long.
struct StallLimit<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write is pending; cleared by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallLimit<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// The inner stream's answer to a write or flush: `Pending` becomes an
    /// error once it has lasted `limit`; anything else clears the timer.
    fn progressed<T>(
        &mut self,
        done: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        if done.is_ready() {
            self.stalled = None;
            return done;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client stopped reading",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimit<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimit<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let done = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progressed(done, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let done = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progressed(done, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let done = Pin::new(&mut self.inner).poll_flush(cx);
        self.progressed(done, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let done = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progressed(done, cx)
    }
}
