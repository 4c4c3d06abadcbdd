//! Two timeouts where hyper has one: how long a keep-alive connection may sit idle between
//! requests ([`crate::Limits::idle_timeout`]), and how long a client that has started a request
//! may take to send its headers ([`crate::Limits::header_read_timeout`]).
//!
//! hyper's HTTP/1 `header_read_timeout` starts as soon as the connection waits for a request,
//! so it is also the idle timeout. The API server's webhook client (Go's `http.Transport`, via
//! client-go) keeps idle connections for 90 s; a server that closes one sooner races with the
//! API server reusing it, and the request written onto the closing connection fails with `EOF`
//! (a `POST` is not retried). For a conversion made while the API server fills its watch cache,
//! that failure leaves the object unreadable from the cache until it is written again. So hyper
//! gets the long idle timeout, and this wrapper enforces the short header deadline from the
//! first byte of each request until its headers are parsed (the service was called).

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// Set by the service when hyper hands it a request: its headers are complete.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadersRead(Arc<AtomicBool>);

impl HeadersRead {
    pub(crate) fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

/// Where the connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request (hyper's idle timeout applies).
    Idle,
    /// A request has started; its headers must arrive before the deadline.
    Headers,
    /// The headers were parsed; the body timeout and the handler take over until the response.
    Request,
}

/// The IO of one HTTP/1 connection, with a header deadline armed at each request's first byte.
pub(crate) struct HeaderDeadline<I> {
    inner: I,
    timeout: Duration,
    headers_read: HeadersRead,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
}

impl<I> HeaderDeadline<I> {
    pub(crate) fn new(inner: I, timeout: Duration, headers_read: HeadersRead) -> Self {
        HeaderDeadline {
            inner,
            timeout,
            headers_read,
            phase: Phase::Idle,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn timed_out() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the request headers did not arrive in time",
        )
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeaderDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.headers_read.take() && this.phase == Phase::Headers {
            this.phase = Phase::Request;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.phase = Phase::Headers;
                    let at = Instant::now() + this.timeout;
                    this.deadline.as_mut().reset(at);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.phase == Phase::Headers && this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Self::timed_out()));
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeaderDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // A response is written: the next byte read starts the next request.
        if this.headers_read.take() || this.phase != Phase::Idle {
            this.phase = Phase::Idle;
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.headers_read.take() || this.phase != Phase::Idle {
            this.phase = Phase::Idle;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
