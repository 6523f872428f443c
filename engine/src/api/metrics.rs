//! `GET /metrics`: the engine's figures in the Prometheus text format (version 0.0.4),
//! open like `/healthz` so a scraper needs no token.
//!
//! - `yardmaster_build_info{version}` and `yardmaster_uptime_seconds`;
//! - `yardmaster_jobs{status}`: jobs in each status, from counts the store keeps with
//!   every change (no scan per scrape);
//! - `yardmaster_plugins{status}`: plugin files active and failed;
//! - `yardmaster_plugin_calls_total{plugin,operation}` and
//!   `yardmaster_plugin_call_failures_total{plugin,operation,reason}` (`reason` is
//!   `plugin` for the plugin's own error, `host` for a trap, timeout or memory limit);
//! - `yardmaster_http_request_duration_seconds{route,method,status_class}`: a histogram
//!   per route template (`/sites/{id}`, never the raw path, so ids do not make series).
//!
//! The request histogram is a small registry of atomics fed by [`track`], a middleware
//! layered over every route in [`super::app`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::support::blocking;
use super::{ApiError, AppState};
use crate::store::Operations;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// When the engine built its API; uptime counts from here.
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

/// One histogram: a count per bucket (not cumulative; summed when rendered), the number
/// of observations and their sum in microseconds.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

/// (route template, method, status class) of a request.
type RequestKey = (String, &'static str, &'static str);

static REQUESTS: LazyLock<RwLock<BTreeMap<RequestKey, Arc<Histogram>>>> =
    LazyLock::new(Default::default);

/// Starts the uptime clock; called when the API is built.
pub(super) fn start_clock() {
    LazyLock::force(&STARTED);
}

/// Times every request and files it under its route template.
pub(super) async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    observe((route, method, class), start.elapsed().as_secs_f64());
    response
}

/// Methods other than the standard ones are one label, so a client cannot make series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn observe(key: RequestKey, seconds: f64) {
    let known = match REQUESTS.read() {
        Ok(map) => map.get(&key).cloned(),
        Err(poisoned) => poisoned.into_inner().get(&key).cloned(),
    };
    let histogram = match known {
        Some(histogram) => histogram,
        None => {
            let mut map = match REQUESTS.write() {
                Ok(map) => map,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.entry(key).or_default().clone()
        }
    };
    histogram.observe(seconds);
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition.
fn render(state: &AppState, jobs: &[(crate::store::JobStatus, u64)]) -> String {
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "yardmaster_build_info",
        "gauge",
        "The running engine's version.",
    );
    let _ = writeln!(
        out,
        "yardmaster_build_info{{version=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION"))
    );
    family(
        &mut out,
        "yardmaster_uptime_seconds",
        "gauge",
        "Seconds since the engine started serving its API.",
    );
    let _ = writeln!(
        out,
        "yardmaster_uptime_seconds {:.3}",
        STARTED.elapsed().as_secs_f64()
    );

    family(&mut out, "yardmaster_jobs", "gauge", "Jobs in each status.");
    for (status, n) in jobs {
        let _ = writeln!(out, "yardmaster_jobs{{status=\"{}\"}} {n}", status.as_str());
    }

    let plugins = state.plugins.list();
    let active = plugins.iter().filter(|p| p.status == "active").count();
    family(
        &mut out,
        "yardmaster_plugins",
        "gauge",
        "Plugin files in the plugins folder, by state.",
    );
    let _ = writeln!(out, "yardmaster_plugins{{status=\"active\"}} {active}");
    let _ = writeln!(
        out,
        "yardmaster_plugins{{status=\"failed\"}} {}",
        plugins.len() - active
    );

    let calls = state.plugins.call_counts();
    family(
        &mut out,
        "yardmaster_plugin_calls_total",
        "counter",
        "Plugin calls, by plugin and operation.",
    );
    for (plugin, operation, count) in &calls {
        let _ = writeln!(
            out,
            "yardmaster_plugin_calls_total{{plugin=\"{}\",operation=\"{}\"}} {}",
            label(plugin),
            label(operation),
            count.calls
        );
    }
    family(
        &mut out,
        "yardmaster_plugin_call_failures_total",
        "counter",
        "Failed plugin calls: reason=plugin for the plugin's own error, reason=host for a trap, timeout or memory limit.",
    );
    for (plugin, operation, count) in &calls {
        for (reason, n) in [("plugin", count.plugin_errors), ("host", count.host_errors)] {
            let _ = writeln!(
                out,
                "yardmaster_plugin_call_failures_total{{plugin=\"{}\",operation=\"{}\",reason=\"{reason}\"}} {n}",
                label(plugin),
                label(operation),
            );
        }
    }

    family(
        &mut out,
        "yardmaster_http_request_duration_seconds",
        "histogram",
        "Time to answer an API request, by route template, method and status class.",
    );
    let requests: Vec<(RequestKey, Arc<Histogram>)> = match REQUESTS.read() {
        Ok(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Err(poisoned) => poisoned
            .into_inner()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    for ((route, method, class), histogram) in &requests {
        let labels = format!(
            "route=\"{}\",method=\"{method}\",status_class=\"{class}\"",
            label(route)
        );
        // Read the count first: buckets then sum at least what it says, never less.
        let count = histogram.count.load(Ordering::Relaxed);
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&histogram.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "yardmaster_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                cumulative.min(count)
            );
        }
        let _ = writeln!(
            out,
            "yardmaster_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "yardmaster_http_request_duration_seconds_sum{{{labels}}} {:.6}",
            histogram.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "yardmaster_http_request_duration_seconds_count{{{labels}}} {count}"
        );
    }
    out
}

/// The engine's metrics in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Metrics for Prometheus",
    description = "Jobs by status, plugins by state, plugin calls and failures by plugin and operation, request latency by route template, build info and uptime, in the Prometheus text format 0.0.4. Needs no token.",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 500, description = "The job counts could not be read; the log has the details", body = super::error::ErrorBody),
    )
)]
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let jobs = blocking(&state.store, move |store| async move {
        Ok(store.job_counts().await?)
    })
    .await?;
    let body = render(&state, &jobs);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(metrics),
    components(schemas(super::error::ErrorBody)),
    tags((name = "operations", description = "Health and metrics; open, no token."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    start_clock();
    Router::new().route("/metrics", get(metrics))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::api::app;
    use crate::api::test_support::state;

    async fn scrape(state: &AppState) -> (StatusCode, String, String) {
        let response = app(state.clone())
            .oneshot(
                Request::get("/metrics")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .expect("body");
        (
            status,
            content_type,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    /// The value of the sample whose name and labels are exactly `series`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[tokio::test]
    async fn the_scrape_is_open_and_counts_jobs_and_requests() {
        let test = state();
        let (status, content_type, text) = scrape(&test.state).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, CONTENT_TYPE);
        assert_eq!(
            sample(&text, "yardmaster_jobs{status=\"pending\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "yardmaster_jobs{status=\"deleted\"}"),
            Some(0.0)
        );
        assert!(text.contains("# TYPE yardmaster_http_request_duration_seconds histogram"));
        assert!(text.contains(&format!(
            "yardmaster_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));

        test.state
            .store
            .create_job(
                serde_json::from_value(serde_json::json!({
                    "organization": "acme",
                    "site_id": "site-1",
                    "description": "Log a line",
                    "script": ":log info hello",
                }))
                .expect("job input"),
                chrono::Utc::now(),
            )
            .await
            .expect("job");
        // A route with a parameter is filed under its template, whatever the id.
        for name in ["one", "two"] {
            let response = app(test.state.clone())
                .oneshot(
                    Request::get(format!("/plugins/{name}"))
                        .body(Body::empty())
                        .expect("request"),
                )
                .await
                .expect("response");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        let (_, _, text) = scrape(&test.state).await;
        assert_eq!(
            sample(&text, "yardmaster_jobs{status=\"pending\"}"),
            Some(1.0)
        );
        let series = "yardmaster_http_request_duration_seconds_count{route=\"/plugins/{name}\",method=\"GET\",status_class=\"4xx\"}";
        assert!(sample(&text, series).is_some_and(|n| n >= 2.0), "{text}");
        assert!(!text.contains("route=\"/plugins/one\""));
        let inf = "yardmaster_http_request_duration_seconds_bucket{route=\"/plugins/{name}\",method=\"GET\",status_class=\"4xx\",le=\"+Inf\"}";
        assert_eq!(sample(&text, inf), sample(&text, series));
    }

    #[test]
    fn buckets_are_cumulative_and_labels_escaped() {
        let histogram = Histogram::default();
        for seconds in [0.0001, 0.003, 0.003, 42.0] {
            histogram.observe(seconds);
        }
        assert_eq!(histogram.count.load(Ordering::Relaxed), 4);
        assert_eq!(histogram.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(histogram.buckets[3].load(Ordering::Relaxed), 2);
        assert_eq!(
            histogram
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .sum::<u64>(),
            3,
            "42 s is only in +Inf"
        );
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").expect("method")),
            "other"
        );
    }
}
