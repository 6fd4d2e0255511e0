//! Deadlines on a connection's socket, so a client that stops reading
//! cannot hold a connection slot: a write that makes no progress for the
//! write timeout fails, and the whole connection ends at its hard
//! deadline (the server asks it to close gracefully before that: see
//! `serve_connection`).
//!
//! hyper has a header-read timeout but none for writes, and a slow reader
//! of a large entry bundle would otherwise keep its slot for as long as it
//! likes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Instant, Sleep};

/// `io` with a write-progress timeout and a lifetime.
pub struct Deadlines<IO> {
    io: IO,
    write_timeout: Duration,
    /// Runs while a write waits for the peer (`armed`); any progress
    /// disarms it. One timer, reset, not one per stall.
    stalled: Pin<Box<Sleep>>,
    armed: bool,
    /// When the connection ends, whatever it is doing: checked on each
    /// read and write (a clock read; no timer is registered per poll, so
    /// an idle connection is left to hyper's header timeout and to the
    /// graceful close at its lifetime).
    end: Instant,
}

impl<IO> Deadlines<IO> {
    pub fn new(io: IO, write_timeout: Duration, lifetime: Duration) -> Self {
        Deadlines {
            io,
            write_timeout,
            stalled: Box::pin(sleep(write_timeout)),
            armed: false,
            end: Instant::now() + lifetime,
        }
    }

    fn past_lifetime(&self) -> io::Result<()> {
        if Instant::now() >= self.end {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection lifetime reached",
            ));
        }
        Ok(())
    }

    /// After a write-side poll: disarm on progress, fail when stalled too long.
    fn track<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        if !self.armed {
            let at = tokio::time::Instant::now() + self.write_timeout;
            self.stalled.as_mut().reset(at);
            self.armed = true;
        }
        match self.stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Deadlines<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.past_lifetime()?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Deadlines<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.past_lifetime()?;
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.track(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.past_lifetime()?;
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.track(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.past_lifetime()?;
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.track(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.track(cx, polled)
    }
}
