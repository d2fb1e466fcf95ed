//! Prometheus metrics: one registry per app, metric names, and the request-tracking
//! middleware. Labels never carry keys, users, tokens or URLs.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub const REQUESTS_TOTAL: &str = "museum_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "museum_request_duration_seconds";
pub const UPLOAD_URLS_ISSUED_TOTAL: &str = "museum_upload_urls_issued_total";
pub const UPLOADS_COMMITTED_TOTAL: &str = "museum_uploads_committed_total";
pub const REPLICATION_COPIES_TOTAL: &str = "museum_replication_copies_total";
pub const REPLICATION_BYTES_TOTAL: &str = "museum_replication_bytes_total";
pub const REPLICATION_LAG_SECONDS: &str = "museum_replication_lag_seconds";
pub const REPLICATION_UPLOAD_SUCCESS_TOTAL: &str = "museum_replication_upload_success_total";
pub const REPLICATION_UPLOAD_FAILURE_TOTAL: &str = "museum_replication_upload_failure_total";
pub const REPLICATION_PENDING: &str = "museum_replication_pending";
pub const TAMPERED_TOTAL: &str = "museum_tampered_total";
pub const DB_POOL_CONNECTIONS: &str = "museum_db_pool_connections";
pub const DB_POOL_IDLE_CONNECTIONS: &str = "museum_db_pool_idle_connections";
pub const DB_POOL_MAX_CONNECTIONS: &str = "museum_db_pool_max_connections";
pub const TOKENS_ISSUED_TOTAL: &str = "museum_tokens_issued_total";
pub const TOKENS_REVOKED_TOTAL: &str = "museum_tokens_revoked_total";
pub const QUOTA_REFUSALS_TOTAL: &str = "museum_quota_refusals_total";
pub const STORAGE_USAGE_BYTES: &str = "museum_storage_usage_bytes";
pub const RATE_LIMITED_TOTAL: &str = "museum_rate_limited_total";
pub const EVENTS_TOTAL: &str = "museum_events_total";
pub const SCRUB_TIERS_TOTAL: &str = "museum_scrub_tiers_total";
pub const SCRUB_BYTES_READ_TOTAL: &str = "museum_scrub_bytes_read_total";
pub const OBJECTS_LOST: &str = "museum_objects_lost";
pub const EVENT_WEBHOOK_DROPPED_TOTAL: &str = "museum_event_webhook_dropped_total";
pub const JOB_ERRORS_TOTAL: &str = "museum_job_errors_total";

/// The app's metrics and the registry that holds them. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests_total: IntCounterVec,
    request_duration: HistogramVec,
    upload_urls_issued: IntCounterVec,
    uploads_committed: IntCounterVec,
    copies_total: IntCounterVec,
    copy_bytes: IntCounterVec,
    copy_lag: HistogramVec,
    upload_success: IntCounterVec,
    upload_failure: IntCounterVec,
    pending: IntGaugeVec,
    tampered: IntCounterVec,
    pool_connections: IntGauge,
    pool_idle: IntGauge,
    pool_max: IntGauge,
    accounts: AccountMetrics,
    ops: OpsMetrics,
}

/// Events and the scrub. Never labelled by object, key or user.
struct OpsMetrics {
    events: IntCounterVec,
    scrub_tiers: IntCounterVec,
    scrub_bytes: IntCounter,
    lost: IntGauge,
    webhook_dropped: IntCounter,
    job_errors: IntCounterVec,
}

impl OpsMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                EVENTS_TOTAL,
                "Operator events by name (tampered, lost, copy_failed, copy_late), as logged with the same event field.",
            ),
            &["event"],
        )?;
        let scrub_tiers = IntCounterVec::new(
            Opts::new(
                SCRUB_TIERS_TOTAL,
                "Tiers the scrub checked, by result (intact, missing, damaged, unreachable).",
            ),
            &["result"],
        )?;
        let scrub_bytes = IntCounter::new(
            SCRUB_BYTES_READ_TOTAL,
            "Bytes the scrub read in full to check their MD5.",
        )?;
        let lost = IntGauge::new(
            OBJECTS_LOST,
            "Live objects no tier holds intact any more, as the last scrub pass counted them.",
        )?;
        let webhook_dropped = IntCounter::new(
            EVENT_WEBHOOK_DROPPED_TOTAL,
            "Events not delivered to events.webhook-url: its queue was full, or every retry failed.",
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(scrub_tiers.clone()))?;
        registry.register(Box::new(scrub_bytes.clone()))?;
        registry.register(Box::new(lost.clone()))?;
        let job_errors = IntCounterVec::new(
            Opts::new(
                JOB_ERRORS_TOTAL,
                "Steps of a background job that failed and were retried after a backoff, by job (cleanup, purge, primary_follow, late_watch, heartbeat, scrub).",
            ),
            &["job"],
        )?;
        registry.register(Box::new(webhook_dropped.clone()))?;
        registry.register(Box::new(job_errors.clone()))?;
        Ok(Self {
            events,
            scrub_tiers,
            scrub_bytes,
            lost,
            webhook_dropped,
            job_errors,
        })
    }
}

/// Tokens, quotas and rate limits. Never labelled by user or token.
struct AccountMetrics {
    tokens_issued: IntCounter,
    tokens_revoked: IntCounter,
    quota_refusals: IntCounterVec,
    usage: IntGauge,
    rate_limited: IntCounterVec,
}

impl AccountMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let tokens_issued = IntCounter::new(
            TOKENS_ISSUED_TOTAL,
            "API tokens created through the admin API.",
        )?;
        let tokens_revoked = IntCounter::new(
            TOKENS_REVOKED_TOTAL,
            "API tokens revoked through the admin API.",
        )?;
        let quota_refusals = IntCounterVec::new(
            Opts::new(
                QUOTA_REFUSALS_TOTAL,
                "Uploads refused by a quota, by code (STORAGE_LIMIT_EXCEEDED, NO_ACTIVE_SUBSCRIPTION).",
            ),
            &["code"],
        )?;
        let usage = IntGauge::new(
            STORAGE_USAGE_BYTES,
            "Bytes held by every user's recorded objects together (file and thumbnail, deleted ones excluded).",
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                RATE_LIMITED_TOTAL,
                "Requests answered 429, by limit (upload_urls, failed_auth).",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(tokens_issued.clone()))?;
        registry.register(Box::new(tokens_revoked.clone()))?;
        registry.register(Box::new(quota_refusals.clone()))?;
        registry.register(Box::new(usage.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        Ok(Self {
            tokens_issued,
            tokens_revoked,
            quota_refusals,
            usage,
            rate_limited,
        })
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new(
                REQUESTS_TOTAL,
                "API requests by method (other for non-standard ones), matched route (unmatched if none) and status.",
            ),
            &["method", "route", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                REQUEST_DURATION_SECONDS,
                "API request latency by matched route.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )?;
        let upload_urls_issued = IntCounterVec::new(
            Opts::new(
                UPLOAD_URLS_ISSUED_TOTAL,
                "Upload URLs issued, by kind (single, multipart).",
            ),
            &["kind"],
        )?;
        let uploads_committed = IntCounterVec::new(
            Opts::new(
                UPLOADS_COMMITTED_TOTAL,
                "Upload reports by result (ok, size_mismatch, checksum_mismatch, tampered, not_found, deleted, error).",
            ),
            &["result"],
        )?;
        let copies_total = IntCounterVec::new(
            Opts::new(
                REPLICATION_COPIES_TOTAL,
                "Copy attempts by destination bucket and result (done, retry, failed).",
            ),
            &["destination", "result"],
        )?;
        let copy_bytes = IntCounterVec::new(
            Opts::new(
                REPLICATION_BYTES_TOTAL,
                "Bytes of verified copies, by destination bucket.",
            ),
            &["destination"],
        )?;
        let copy_lag = HistogramVec::new(
            HistogramOpts::new(
                REPLICATION_LAG_SECONDS,
                "Time from a live copy being queued (by its report, or a read's restore) to its being verified, by destination; background copies are not counted.",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                21600.0, 86400.0,
            ]),
            &["destination"],
        )?;
        let upload_success = IntCounterVec::new(
            Opts::new(
                REPLICATION_UPLOAD_SUCCESS_TOTAL,
                "Verified copies (Ente's name), by destination.",
            ),
            &["destination"],
        )?;
        let upload_failure = IntCounterVec::new(
            Opts::new(
                REPLICATION_UPLOAD_FAILURE_TOTAL,
                "Failed copy attempts (Ente's name), by destination.",
            ),
            &["destination"],
        )?;
        let pending = IntGaugeVec::new(
            Opts::new(
                REPLICATION_PENDING,
                "Copies not yet verified (pending or in progress), by destination.",
            ),
            &["destination"],
        )?;
        let tampered = IntCounterVec::new(
            Opts::new(
                TAMPERED_TOTAL,
                "Reads that found a bucket holding other bytes than an object's record, by bucket.",
            ),
            &["bucket"],
        )?;
        let pool_connections = IntGauge::new(DB_POOL_CONNECTIONS, "Open database connections.")?;
        let pool_idle = IntGauge::new(DB_POOL_IDLE_CONNECTIONS, "Idle database connections.")?;
        let pool_max = IntGauge::new(
            DB_POOL_MAX_CONNECTIONS,
            "Most database connections the pool opens.",
        )?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(tampered.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(pool_idle.clone()))?;
        registry.register(Box::new(pool_max.clone()))?;
        registry.register(Box::new(copies_total.clone()))?;
        registry.register(Box::new(copy_bytes.clone()))?;
        registry.register(Box::new(copy_lag.clone()))?;
        registry.register(Box::new(upload_success.clone()))?;
        registry.register(Box::new(upload_failure.clone()))?;
        registry.register(Box::new(requests_total.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upload_urls_issued.clone()))?;
        registry.register(Box::new(uploads_committed.clone()))?;
        let accounts = AccountMetrics::register(&registry)?;
        let ops = OpsMetrics::register(&registry)?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                requests_total,
                request_duration,
                upload_urls_issued,
                uploads_committed,
                copies_total,
                copy_bytes,
                copy_lag,
                upload_success,
                upload_failure,
                pending,
                tampered,
                pool_connections,
                pool_idle,
                pool_max,
                accounts,
                ops,
            }),
        })
    }

    /// The registry, for modules that add their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Counts `n` issued upload URLs of `kind`.
    pub fn upload_urls_issued(&self, kind: &str, n: u64) {
        self.inner
            .upload_urls_issued
            .with_label_values(&[kind])
            .inc_by(n);
    }

    /// Counts one report outcome.
    pub fn upload_committed(&self, result: &str) {
        self.inner
            .uploads_committed
            .with_label_values(&[result])
            .inc();
    }

    /// Counts a verified copy of `bytes` to `destination`; a live copy's lag (from its
    /// report, or the read that queued its restore) goes to the lag histogram.
    pub fn copy_done(&self, destination: &str, bytes: u64, lag_seconds: Option<f64>) {
        let i = &self.inner;
        i.copies_total
            .with_label_values(&[destination, "done"])
            .inc();
        i.copy_bytes.with_label_values(&[destination]).inc_by(bytes);
        if let Some(lag) = lag_seconds {
            i.copy_lag.with_label_values(&[destination]).observe(lag);
        }
        i.upload_success.with_label_values(&[destination]).inc();
    }

    /// Counts a failed copy attempt; `permanent` ones are marked failed, others retried.
    pub fn copy_failed(&self, destination: &str, permanent: bool) {
        let result = if permanent { "failed" } else { "retry" };
        self.inner
            .copies_total
            .with_label_values(&[destination, result])
            .inc();
        self.inner
            .upload_failure
            .with_label_values(&[destination])
            .inc();
    }

    /// Counts a read that found `bucket` holding other bytes than the record.
    pub fn tampered(&self, bucket: &str) {
        self.inner.tampered.with_label_values(&[bucket]).inc();
    }

    /// Sets the pending-copies gauge of `destination`.
    pub fn set_pending(&self, destination: &str, n: i64) {
        self.inner.pending.with_label_values(&[destination]).set(n);
    }

    /// Sets the database pool gauges.
    pub fn set_pool(&self, open: u32, idle: usize, max: u32) {
        self.inner.pool_connections.set(i64::from(open));
        self.inner
            .pool_idle
            .set(i64::try_from(idle).unwrap_or(i64::MAX));
        self.inner.pool_max.set(i64::from(max));
    }

    /// Counts a token created through the admin API.
    pub fn token_issued(&self) {
        self.inner.accounts.tokens_issued.inc();
    }

    /// Counts `n` tokens revoked through the admin API.
    pub fn tokens_revoked(&self, n: u64) {
        self.inner.accounts.tokens_revoked.inc_by(n);
    }

    /// Counts an upload refused by a quota with `code`.
    pub fn quota_refused(&self, code: &str) {
        self.inner
            .accounts
            .quota_refusals
            .with_label_values(&[code])
            .inc();
    }

    /// Sets the gauge of every user's usage together.
    pub fn set_usage(&self, bytes: i64) {
        self.inner.accounts.usage.set(bytes);
    }

    /// Counts a request refused by rate limit `limit`.
    pub fn rate_limited(&self, limit: &str) {
        self.inner
            .accounts
            .rate_limited
            .with_label_values(&[limit])
            .inc();
    }

    /// Counts an operator event (see [`crate::observe::events`]).
    pub fn event(&self, name: &str) {
        self.inner.ops.events.with_label_values(&[name]).inc();
    }

    /// Counts a tier the scrub checked, with its `result`.
    pub fn scrub_tier(&self, result: &str) {
        self.inner
            .ops
            .scrub_tiers
            .with_label_values(&[result])
            .inc();
    }

    /// Counts bytes the scrub read in full.
    pub fn scrub_bytes_read(&self, n: u64) {
        self.inner.ops.scrub_bytes.inc_by(n);
    }

    /// Counts a failed step of background job `job`.
    pub fn job_error(&self, job: &str) {
        self.inner.ops.job_errors.with_label_values(&[job]).inc();
    }

    /// Sets the gauge of live objects known lost.
    pub fn set_lost(&self, n: i64) {
        self.inner.ops.lost.set(n);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let dropped = crate::observe::telemetry::webhook_dropped();
        let counted = self.inner.ops.webhook_dropped.get();
        if dropped > counted {
            self.inner.ops.webhook_dropped.inc_by(dropped - counted);
        }
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.inner.registry.gather(), &mut buf) {
            tracing::error!(error.message = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The `method` label of a request: the method's name for the standard ones, and
/// `other` for any name a client invents, so anonymous requests cannot add series
/// without bound.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", Method::as_str)
}

/// Middleware: counts and times every request by method, matched route and status.
/// Every label comes from a fixed set: methods outside HTTP's standard ones are
/// `other`, requests no route matched are `unmatched`.
pub async fn track_requests(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics
        .inner
        .requests_total
        .with_label_values(&[method, route.as_str(), status.as_str()])
        .inc();
    metrics
        .inner
        .request_duration
        .with_label_values(&[route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}
