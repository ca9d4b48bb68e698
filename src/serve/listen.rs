//! The accept loop: HTTP/1.1 connections served under limits that slow,
//! stalled and idle clients cannot get round, so that a few thousand of
//! them cannot take the server's file descriptors or its attention.
//!
//! - a request's head must arrive within `head` of when the server starts
//!   waiting for it (hyper's header timer);
//! - a connection that has been answered, or has just opened, and then
//!   sends nothing for `idle` is closed ([`IdleLimit`]);
//! - a body must arrive within `body` of its head (the handler's deadline);
//! - at most `connections` are open; beyond that a client gets a 503 and
//!   the connection is closed (at most [`REFUSING`] at a time; past those
//!   a connection is closed unanswered).

use super::Limits;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, Instant, Sleep};

/// Connections over the cap being answered 503 at once; each holds a
/// descriptor for at most [`REFUSAL_TIME`].
pub(super) const REFUSING: usize = 32;
const REFUSAL_TIME: Duration = Duration::from_millis(250);

/// The most connections a server holds open ([`Limits::connections`]).
pub const MOST_CONNECTIONS: usize = 1 << 20;

/// Serves `router` on `listener` until `stop` resolves, then answers the
/// requests in flight and returns once every connection has closed.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let cap = limits.connections.clamp(1, MOST_CONNECTIONS);
    let open = Arc::new(Semaphore::new(cap));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let (stopping, stop_seen) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    let mut failing = false;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait for some to close, go
                    // on; said once for each run of failures.
                    if !std::mem::replace(&mut failing, true) {
                        eprintln!("warning: cannot accept a connection ({e}); retrying");
                    }
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        failing = false;
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream, cap).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let router = router.clone();
        let mut stop_seen = stop_seen.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let io = TokioIo::new(IdleLimit::new(stream, limits.idle));
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.head);
            let conn = builder.serve_connection(io, TowerToHyperService::new(router));
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop_seen.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every permit back: every connection closed.
    let _ = open.acquire_many(cap as u32).await;
}

/// Answers a connection over the cap with a 503, unread, then closes it.
async fn refuse(mut stream: TcpStream, cap: usize) {
    let body = serde_json::json!({
        "error": format!("the server has its limit of {cap} connections open (--max-connections); try again shortly")
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answered = async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Closing with the request unread would reset the connection and
        // could lose the answer: read what the client sent first.
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(REFUSAL_TIME, answered).await;
}

/// A connection that fails its read with `TimedOut` once it has waited
/// `idle` for a byte since it opened or last wrote. Every write arms it and
/// every byte read disarms it, so it measures the waits on the client with
/// nothing owed to it: before a request, between requests, after a
/// `100 Continue`, and while the client reads no more of an answer.
struct IdleLimit<T> {
    io: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    armed: bool,
}

impl<T> IdleLimit<T> {
    fn new(io: T, idle: Duration) -> IdleLimit<T> {
        IdleLimit {
            io,
            idle,
            deadline: Box::pin(sleep(idle)),
            armed: true,
        }
    }

    fn arm(&mut self) {
        let at = Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
        self.armed = true;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleLimit<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.armed = false;
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.armed && self.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "idle connection closed (--idle-timeout)",
                )))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleLimit<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.arm();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.arm();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
