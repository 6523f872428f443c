//! GET requests through the SDK's wasi:http client: the engine opens the connection,
//! does the HTTPS and checks the plugin's allow-list.

use yardmaster_plugin_sdk::http::{HttpError, Request};
use yardmaster_plugin_sdk::script_source::SourceError;

use crate::{Fetch, Reply};

/// wasi:http GETs with the plugin's headers and limits.
pub(crate) struct WasiHttp {
    pub token: Option<String>,
    pub user_agent: String,
    pub timeout_ms: u64,
}

impl Fetch for WasiHttp {
    fn get(&self, url: &str, accept: &str, limit: u64) -> Result<Reply, SourceError> {
        let mut request = Request::get(url)
            .map_err(|e| error(e, url))?
            .header("accept", accept)
            .header("user-agent", &self.user_agent)
            .header("x-github-api-version", "2022-11-28")
            .timeout_ms(self.timeout_ms);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send(limit).map_err(|e| error(e, url))?;
        Ok(Reply {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

fn error(e: HttpError, url: &str) -> SourceError {
    match e {
        HttpError::InvalidUrl(_) => SourceError::InvalidUrl(format!("{url}: not http(s)")),
        HttpError::Invalid(what) => SourceError::Other(what),
        HttpError::Denied | HttpError::Prohibited => SourceError::Denied(format!(
            "{url}: the plugin's allow-list does not grant this host"
        )),
        HttpError::TooLarge(limit) => {
            SourceError::TooLarge(format!("{url}: larger than {limit} bytes"))
        }
        other => SourceError::Unavailable(format!("{url}: {other}")),
    }
}
