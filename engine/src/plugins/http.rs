//! Outgoing HTTP (wasi:http) for plugins, filtered by the plugin's allow-list.

use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiHttpHooks};

use super::host::Caller;
use super::net::Policy;

/// The engine's hooks into wasi:http: every request's authority is checked first.
pub(crate) struct Hooks {
    pub caller: Arc<Caller>,
    pub policy: Policy,
}

type Body = wasmtime_wasi_http::WasiBody;
type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<Body>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<Body>, IoFuture), Error>> + Send> {
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.policy.allows_name(&host, port) {
            let what = format!("http request to {host}:{port}");
            tracing::warn!(
                plugin = %self.caller.name,
                version = %self.caller.version,
                "refused {what}: not in the plugin's allow-list"
            );
            self.policy.record_denial(what);
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as IoFuture,
            ))
        })
    }
}
