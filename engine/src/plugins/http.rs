//! Outgoing HTTP (wasi:http) for plugins, filtered by the plugin's allow-list. The engine
//! sends each request itself, over a connection of its own: https is verified against
//! the same trusted roots as every other TLS connection the host makes for plugins (the
//! public roots and `[tls] ca_file`).
//!
//! The engine resolves the host itself and connects only to addresses the call's policy
//! allows, judged address by address ([`Policy::allows_connect`]): a public-only grant
//! (a job's `notify_url`) never reaches a loopback, private, link-local or metadata
//! address, and since the address checked is the address connected to, a name that
//! changes what it resolves to between a check and the connection gains nothing.
//! Redirects are never followed: the response goes back to the plugin as it came.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiHttpHooks};

use super::host::Caller;
use super::net::Policy;
use super::tls_client::TlsClients;

/// How long each step of a request may take when the plugin does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The engine's hooks into wasi:http: every request's authority is checked first.
pub(crate) struct Hooks {
    pub caller: Arc<Caller>,
    pub policy: Policy,
    pub tls: Arc<TlsClients>,
}

type Body = wasmtime_wasi_http::WasiBody;
type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Sent = Result<(http::Response<Body>, IoFuture), Error>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<Body>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.policy.may_reach(&host, port) {
            let what = format!("http request to {host}:{port}");
            tracing::warn!(
                plugin = %self.caller.name,
                version = %self.caller.version,
                "refused {what}: not in the plugin's allow-list"
            );
            self.policy.record_denial(what);
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let target = Target {
            host,
            port,
            tls: https.then(|| self.tls.clone()),
            caller: self.caller.clone(),
            policy: self.policy.clone(),
        };
        Box::new(send(target, request, options.unwrap_or_default()))
    }
}

/// Where one request goes.
struct Target {
    host: String,
    port: u16,
    /// Set for https.
    tls: Option<Arc<TlsClients>>,
    caller: Arc<Caller>,
    /// Judges each address the host resolves to.
    policy: Policy,
}

/// Resolves the target and connects to the first address its policy allows that
/// answers; refuses when it allows none of them.
async fn connect(target: &Target, host: &str, limit: Duration) -> Result<TcpStream, Error> {
    let resolved: Vec<SocketAddr> =
        tokio::time::timeout(limit, tokio::net::lookup_host((host, target.port)))
            .await
            .map_err(|_| Error::DnsTimeout)?
            .map_err(Error::Connect)?
            .collect();
    let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
        .into_iter()
        .partition(|addr| target.policy.allows_connect(host, target.port, *addr));
    if allowed.is_empty() {
        let addresses: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
        let what = format!(
            "http request to {}:{} (resolves to {}, not a public address)",
            target.host,
            target.port,
            addresses.join(", ")
        );
        tracing::warn!(
            plugin = %target.caller.name,
            version = %target.caller.version,
            "refused {what}"
        );
        target.policy.record_denial(what);
        return Err(Error::DestinationIpProhibited);
    }
    let mut last = None;
    for addr in allowed {
        match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Err(_) => last = Some(Error::ConnectionTimeout),
            Ok(Err(e)) => last = Some(Error::Connect(e)),
            Ok(Ok(tcp)) => return Ok(tcp),
        }
    }
    Err(last.unwrap_or(Error::ConnectionRefused))
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Connects (TCP, then TLS for https), sends the request over HTTP/1.1 and returns the
/// response once its head has arrived, with a body that fails when it stalls longer than
/// the between-bytes timeout. The returned future drives the connection to its end.
async fn send(target: Target, mut request: http::Request<Body>, options: RequestOptions) -> Sent {
    let limit = |set: Option<Duration>| set.unwrap_or(DEFAULT_TIMEOUT);
    let connect_limit = limit(options.connect_timeout);
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let tcp = connect(&target, host, connect_limit).await?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = match &target.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let name = ServerName::try_from(host.to_owned()).map_err(Error::InvalidDnsNameError)?;
            let handshake = tls.verified().connect(name, tcp);
            let stream = tokio::time::timeout(connect_limit, handshake)
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(|e| {
                    // The plugin only sees an error code; the operator sees why.
                    tracing::warn!(
                        plugin = %target.caller.name,
                        "https request to {}:{}: TLS handshake failed: {e}",
                        target.host,
                        target.port
                    );
                    tls_error(&e)
                })?;
            Box::new(stream)
        }
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_limit,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // The request line carries the path only; the authority travels in `Host`.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    *request.uri_mut() = path;

    let response = tokio::time::timeout(limit(options.first_byte_timeout), async {
        let mut connection = Some(connection);
        let mut response = std::pin::pin!(sender.send_request(request));
        let head = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = response.as_mut().poll(cx) {
                return Poll::Ready(result.map_err(Error::from));
            }
            // Drive the connection until the head arrives; if it ends first, the
            // response has either arrived with it or never will.
            if let Some(running) = connection.as_mut()
                && let Poll::Ready(ended) = Pin::new(running).poll(cx)
            {
                connection = None;
                ended.map_err(Error::from)?;
                return response.as_mut().poll(cx).map_err(Error::from);
            }
            Poll::Pending
        })
        .await?;
        Ok::<_, Error>((head, connection))
    })
    .await
    .map_err(|_| Error::ConnectionReadTimeout)??;
    let (head, connection) = response;
    let stall = limit(options.between_bytes_timeout).max(Duration::from_millis(1));
    let head = head.map(|incoming| {
        Timed {
            incoming,
            stall,
            deadline: Box::pin(tokio::time::sleep(stall)),
        }
        .boxed_unsync()
    });
    let io: IoFuture = Box::new(async move {
        match connection {
            Some(connection) => connection.await.map_err(Error::from),
            None => Ok(()),
        }
    });
    Ok((head, io))
}

/// The wasi:http error code for a failed handshake: a certificate that does not verify,
/// an alert from the server, or anything else.
fn tls_error(error: &std::io::Error) -> Error {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_)) => Error::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => Error::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => Error::TlsProtocolError,
    }
}

/// A response body that fails once no frame has come for `stall`.
struct Timed {
    incoming: Incoming,
    stall: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for Timed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.stall;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.deadline.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::plugins::net::Grant;

    fn target(host: &str, port: u16, grants: Vec<Grant>) -> Target {
        Target {
            host: host.to_owned(),
            port,
            tls: None,
            caller: Arc::new(Caller {
                name: "webhook".into(),
                version: "1.0.0".into(),
            }),
            policy: Policy::new(grants),
        }
    }

    /// Connections the listener has been offered so far.
    fn offered(listener: &TcpListener) -> usize {
        let mut n = 0;
        while listener.accept().is_ok() {
            n += 1;
        }
        n
    }

    #[tokio::test]
    async fn a_public_only_grant_never_connects_to_a_name_that_resolves_to_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let limit = Duration::from_secs(10);

        for host in ["localhost", "127.0.0.1"] {
            let guarded = target(host, port, vec![Grant::public_only(host, port)]);
            let refused = connect(&guarded, host, limit).await;
            assert!(
                matches!(refused, Err(Error::DestinationIpProhibited)),
                "{host}: {refused:?}"
            );
            let denials = guarded.policy.denials();
            assert_eq!(denials.len(), 1, "{denials:?}");
            assert!(
                denials[0].contains(&format!("{host}:{port}"))
                    && denials[0].contains("127.0.0.1")
                    && denials[0].contains("not a public address"),
                "{denials:?}"
            );
        }
        assert_eq!(offered(&listener), 0, "a refused request connected");

        // The same name, listed by the operator, is reached: the refusal above was the
        // guard's, not a failure to connect.
        let listed = target(
            "localhost",
            port,
            vec![
                Grant::public_only("localhost", port),
                Grant::host("localhost").expect("a host"),
            ],
        );
        let stream = connect(&listed, "localhost", limit)
            .await
            .expect("connects");
        assert!(stream.peer_addr().expect("peer").ip().is_loopback());
        let mut seen = 0;
        for _ in 0..200 {
            seen += offered(&listener);
            if seen > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen, 1);
        drop(stream);
    }
}
