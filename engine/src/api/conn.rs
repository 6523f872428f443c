//! The HTTP server's accept loop, with the timeouts `axum::serve` does not set: a client
//! that sends its request headers slowly (slowloris), or holds a connection open without
//! sending anything, is disconnected instead of holding a task and its buffers for ever.
//!
//! Each connection is served by hyper's HTTP/1 connection with a timer, and its socket
//! is wrapped in [`Watched`], which knows (from the service, through [`Activity`])
//! whether a request is under way:
//!
//! - with no request under way, a connection that reads nothing for `idle_timeout` is
//!   closed (a fresh one, or one kept alive after its last response);
//! - from the first byte of a request until its handler is called, the request line and
//!   headers must arrive within `header_read_timeout`;
//! - while a request is handled and its response sent, neither applies: a slow router
//!   behind a synchronous call does not cost its caller the connection.
//!
//! hyper's own `header_read_timeout` is set too, to the sum of both, as a backstop: it
//! runs from the moment hyper waits for a request until its headers are in.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::config::HttpSettings;

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (connections are told to close after them) and returns.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, app.clone(), limits, stopping.clone()));
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of file descriptors, typically: wait rather than spin.
                    tracing::error!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn connection(
    stream: TcpStream,
    app: Router,
    limits: HttpSettings,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Activity::default();
    let io = TokioIo::new(Watched::new(stream, activity.clone(), limits));
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let busy = activity.begin();
        let app = app.clone();
        async move {
            let response = app.oneshot(request.map(axum::body::Body::new)).await?;
            // The request stays under way until its body is sent, not just made.
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _ = &busy;
                    frame
                }))
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout + limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection closed");
            }
            return;
        }
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection closed");
    }
}

/// How many requests of one connection are under way: made when hyper calls the
/// service, done when the response's body has been sent (or dropped).
#[derive(Clone, Default)]
struct Activity(Arc<AtomicUsize>);

impl Activity {
    fn begin(&self) -> Busy {
        self.0.fetch_add(1, Ordering::AcqRel);
        Busy(self.0.clone())
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

/// One request under way, until dropped.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request under way, and no byte of the next one read yet.
    Idle,
    /// Some of a request read, its handler not called yet.
    Head,
    /// A request is being handled or answered.
    Busy,
}

/// A socket that fails its reads once the client has been idle, or slow with its
/// headers, past the limits. Writes pass through untouched.
struct Watched<S> {
    inner: S,
    activity: Activity,
    limits: HttpSettings,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
}

impl<S> Watched<S> {
    fn new(inner: S, activity: Activity, limits: HttpSettings) -> Self {
        Watched {
            inner,
            activity,
            limits,
            phase: Phase::Idle,
            deadline: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        }
    }

    fn enter(&mut self, phase: Phase) {
        if self.phase == phase {
            return;
        }
        self.phase = phase;
        let wait = match phase {
            Phase::Idle => self.limits.idle_timeout,
            Phase::Head => self.limits.header_read_timeout,
            Phase::Busy => return,
        };
        self.deadline.as_mut().reset(Instant::now() + wait);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.activity.busy() {
            this.enter(Phase::Busy);
            return read;
        }
        match read {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.enter(Phase::Head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase == Phase::Busy {
                    // The last request is answered: the wait for the next one starts.
                    this.enter(Phase::Idle);
                }
                if this.deadline.as_mut().poll(cx).is_ready() {
                    let what = match this.phase {
                        Phase::Head => "the request headers did not arrive in time",
                        _ => "the connection was idle too long",
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server with short limits over a tiny app, and its address.
    async fn server(limits: HttpSettings) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(serve(listener, app, limits, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        (addr, stop)
    }

    const SHORT: HttpSettings = HttpSettings {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
    };

    /// Reads until the server closes the connection; what it sent. Gives up (failing
    /// the test) if the server never closes it.
    async fn until_closed(stream: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        let read_all = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read_all)
            .await
            .expect("the server never closed the connection");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_client_sending_headers_slowly_is_disconnected() {
        let (addr, _stop) = server(SHORT).await;
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET / HTTP/1.1\r\n").await.expect("line");
        // One header line every 100 ms: each arrives well within the idle limit, but
        // the whole head never does. The server must hang up long before 200 lines.
        let mut sent = 0;
        while sent < 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                break;
            }
            sent += 1;
            let mut probe = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
            {
                break;
            }
        }
        assert!(sent < 200, "the server kept reading headers for ever");
    }

    #[tokio::test]
    async fn a_silent_or_idle_kept_alive_connection_is_closed() {
        let (addr, _stop) = server(SHORT).await;
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(until_closed(&mut silent).await, "");

        let mut kept = TcpStream::connect(addr).await.expect("connect");
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        let answered = until_closed(&mut kept).await;
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        assert!(answered.ends_with("hello"), "{answered}");
    }

    #[tokio::test]
    async fn a_slow_handler_keeps_its_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route(
            "/",
            axum::routing::get(|| async {
                // Longer than both limits: handling a request is not idleness.
                tokio::time::sleep(Duration::from_millis(900)).await;
                "late"
            }),
        );
        tokio::spawn(serve(listener, app, SHORT, std::future::pending()));
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        let answered = until_closed(&mut stream).await;
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        assert!(answered.ends_with("late"), "{answered}");
    }
}
