//! Building and running the application: database, embedded S3, buckets, the API and
//! metrics listeners, and the background jobs.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::accounts::QuotaRule;
use crate::accounts::jwt::JwtVerifier;
use crate::api::admin::AdminKey;
use crate::api::ratelimit::RateLimits;
use crate::api::state::{AppState, IssueLocks, Shared, TokenCache, UploadPolicy};
use crate::config::{BUCKET_IDS, Settings};
use crate::cors::CorsPolicy;
use crate::db::copies::pending_counts;
use crate::db::uploads::TempObjectWriter;
use crate::db::{Db, Open, PoolConfig};
use crate::jobs::Runner;
use crate::maintenance::primary::FollowPrimary;
use crate::maintenance::scrub::{ScrubLimits, Scrubber};
use crate::observe::events::FoundBy;
use crate::observe::metrics::Metrics;
use crate::replication::copy::Memory;
use crate::replication::instance::{Heartbeat, Instance};
use crate::replication::late::LateWatch;
use crate::replication::purge::Purger;
use crate::replication::{ReplicationWorker, WorkerConfig};
use crate::storage::{Buckets, embedded};
use crate::throttle::Throttle;
use crate::uploads::cleanup::CleanupJob;

/// How long shutdown waits, from the signal, for requests in flight and background
/// work before it cuts what is left: what the README promises ("exits within about
/// 10 seconds").
const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
/// How often an instance looks for a primary switched by `museum primary move`.
const PRIMARY_POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest pause between purge passes.
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// A built application, listening but not yet serving.
pub struct Application {
    api: TcpListener,
    metrics_listener: TcpListener,
    /// The admin API's listener and key; `None` when `admin.key` is not set.
    admin: Option<(TcpListener, AdminKey)>,
    state: AppState,
    settings: Settings,
    embedded_s3: Option<(SocketAddr, DropGuard)>,
}

/// Creates the configured database if missing and applies every migration: for
/// `serve` and `migrate`, the only commands that may bring a database into being.
pub async fn create_db(settings: &Settings) -> anyhow::Result<Db> {
    connect_db_with(
        settings,
        Open::Create,
        settings.db.max_connections,
        PoolConfig::SERVER_CACHE_MIB,
    )
    .await
}

/// Opens the configured database, which must exist and be migrated; every command
/// but `serve` and `migrate` uses this, and stops with an error naming the URL.
pub async fn open_db(settings: &Settings) -> anyhow::Result<Db> {
    connect_db_with(
        settings,
        Open::Existing,
        settings.db.max_connections,
        PoolConfig::SERVER_CACHE_MIB,
    )
    .await
}

/// [`open_db`] for a command that reads every row once, one query at a time
/// (`museum reconcile`): one connection, with a small SQLite page cache, so that its
/// memory does not grow with the database.
pub async fn open_db_for_scan(settings: &Settings) -> anyhow::Result<Db> {
    connect_db_with(settings, Open::Existing, 1, PoolConfig::SCAN_CACHE_MIB).await
}

async fn connect_db_with(
    settings: &Settings,
    open: Open,
    max_connections: u32,
    cache_mib: u32,
) -> anyhow::Result<Db> {
    let url = settings.db.connection_url();
    let engine = if url.expose_secret().starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let pool = PoolConfig {
        max_connections,
        acquire_timeout: settings.db.acquire_timeout.get(),
        cache_mib,
    };
    let db = match open {
        Open::Create => Db::create(&url, pool).await,
        Open::Existing => Db::open(&url, pool).await,
    }
    .with_context(|| format!("opening the {engine} database from db.* settings"))?;
    // Every timestamp compared across instances comes from the database's clock.
    crate::db::clock::sync(&db)
        .await
        .context("reading the database's clock")?;
    Ok(db)
}

impl Application {
    /// Connects the database (running migrations), starts the embedded S3 server when
    /// `s3.embedded` is on, and binds the API and metrics listeners.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        let db = create_db(&settings).await?;
        let embedded_s3 = if settings.s3.embedded {
            Some(start_embedded(&mut settings).await?)
        } else {
            None
        };
        let buckets = Buckets::from_config(&settings.s3).context("building bucket clients")?;
        if let Some(moved) = crate::maintenance::primary::follow(&db, &buckets).await? {
            tracing::warn!(
                primary = %moved,
                configured = %settings.s3.hot_storage.primary,
                "museum primary move switched the primary; set s3.hot_storage.primary to match"
            );
        }
        let metrics = Metrics::new().context("registering metrics")?;
        let api = TcpListener::bind((settings.http.host.as_str(), settings.http.port))
            .await
            .with_context(|| format!("binding http.port {}", settings.http.port))?;
        let metrics_listener = TcpListener::bind((
            settings.http.metrics_host.as_str(),
            settings.http.metrics_port,
        ))
        .await
        .with_context(|| {
            format!(
                "binding the metrics listener to http.metrics-host {} and http.metrics-port {}",
                settings.http.metrics_host, settings.http.metrics_port
            )
        })?;
        let admin = bind_admin(&settings).await?;
        let state = AppState::new(Shared {
            db: db.clone(),
            buckets,
            metrics,
            policy: UploadPolicy {
                presign_ttl: settings.s3.presign_expiry.get(),
                temp_grace: settings.jobs.temp_object_grace.get(),
                max_file_size: settings.max_file_size,
                serve_mode: settings.s3.serve_mode,
                max_unreported_keys: settings.quota.max_unreported_keys,
            },
            replication_wakeup: Arc::new(Notify::new()),
            temp_writer: TempObjectWriter::spawn(db.clone()),
            tokens: TokenCache::default(),
            quota: QuotaRule::from_config(&settings.quota),
            jwt: if settings.auth.jwt.is_enabled() {
                if settings
                    .auth
                    .jwt
                    .audience
                    .as_deref()
                    .is_none_or(str::is_empty)
                {
                    tracing::warn!(
                        "auth.jwt.audience is unset: any JWT signed with the same secret or key (one the auth server issued for another service included) is a museum credential; set auth.jwt.audience and have the auth server put it in aud"
                    );
                }
                // Validation already built it once; a failure here is a bug.
                Some(
                    JwtVerifier::from_config(&settings.auth.jwt)
                        .map_err(|why| anyhow::anyhow!("auth.jwt: {why}"))?,
                )
            } else {
                None
            },
            limits: RateLimits::from_config(&settings.rate_limit, &settings.internal),
            issuing: IssueLocks::default(),
        });
        Ok(Self {
            api,
            metrics_listener,
            admin,
            state,
            settings,
            embedded_s3,
        })
    }

    /// The API port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.api.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The metrics port actually bound.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(0)
    }

    /// The admin API port actually bound, when the admin API runs.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// The embedded S3 server's address, when it runs.
    pub fn embedded_s3_addr(&self) -> Option<SocketAddr> {
        self.embedded_s3.as_ref().map(|(addr, _)| *addr)
    }

    /// One replication worker per `replication.worker-count`, each with its own
    /// lease owner under `owner_prefix` (an instance's `<name>/`).
    pub fn replication_workers(&self, owner_prefix: &str) -> Vec<ReplicationWorker> {
        let r = &self.settings.replication;
        let config = WorkerConfig::from(r);
        // One memory budget, and one byte rate if set, for every worker of the process.
        let memory = Memory::new(config.memory_limit);
        let throttle = r.max_bytes_per_second.map(|n| Arc::new(Throttle::new(n)));
        (0..r.worker_count)
            .map(|i| {
                ReplicationWorker::new(
                    self.state.db.clone(),
                    self.state.buckets.clone(),
                    self.state.metrics.clone(),
                    config,
                    format!("{owner_prefix}{i}"),
                )
                .sharing_memory(memory.clone())
                .sharing_throttle(throttle.clone())
            })
            .collect()
    }

    /// The shared state, for tests and commands.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `cancel` fires, then stops taking requests and lets requests in
    /// flight and background jobs finish until `SHUTDOWN_DEADLINE` (10 s) after the signal.
    /// Requests still running then (a slow proxied download) are cut, copies still in
    /// hand go back to the queue, and the embedded S3 server stops.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let jobs = Runner::new(
            tracker.clone(),
            Some(self.state.metrics.clone()),
            cancel.clone(),
        );
        let instance = self.start_instance(&jobs).await;
        let cleanup = CleanupJob::new(self.state.db.clone(), self.state.buckets.clone())
            .every(self.settings.jobs.cleanup_interval.get());
        jobs.spawn(cleanup);
        let r = &self.settings.replication;
        let purge = Purger::new(
            self.state.db.clone(),
            self.state.buckets.clone(),
            r.delete_delay.get(),
        )
        .every(PURGE_INTERVAL.min(r.delete_delay.get().max(r.poll_interval.get())));
        jobs.spawn(purge);
        let follow = FollowPrimary::new(
            self.state.db.clone(),
            self.state.buckets.clone(),
            PRIMARY_POLL,
        );
        jobs.spawn(follow);
        let scrub = &self.settings.scrub;
        if scrub.interval.get().is_zero() {
            tracing::info!(
                "scrub.interval is 0: no background scrub (museum scrub runs one by hand)"
            );
        } else {
            let scrubber = Scrubber::new(
                self.state.db.clone(),
                self.state.buckets.clone(),
                Some(self.state.metrics.clone()),
                ScrubLimits::from_config(scrub),
                FoundBy::Scrub,
            );
            let scrub = scrubber.background(
                format!("{}scrub", instance.owner_prefix()),
                scrub.interval.get(),
                cancel.clone(),
            );
            jobs.spawn(scrub);
        }
        if r.enabled {
            let late = LateWatch::new(
                self.state.db.clone(),
                self.state.metrics.clone(),
                r.late_after.get(),
            );
            jobs.spawn(late);
            for worker in self.replication_workers(&instance.owner_prefix()) {
                tracker
                    .spawn(worker.run(Arc::clone(&self.state.replication_wakeup), cancel.clone()));
            }
        } else {
            tracing::info!("replication.enabled is false: copies queue up until it is turned on");
        }

        let metrics_app = Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(self.state.clone());
        let metrics_cancel = cancel.clone();
        let metrics_listener = self.metrics_listener;
        tracker.spawn(async move {
            if let Err(e) = axum::serve(metrics_listener, metrics_app)
                .with_graceful_shutdown(metrics_cancel.cancelled_owned())
                .await
            {
                tracing::error!(error.message = %e, "metrics listener failed");
            }
        });

        if let Some((listener, key)) = self.admin {
            let admin_app = crate::api::admin::router(self.state.clone(), key);
            let admin_cancel = cancel.clone();
            tracing::info!(
                port = listener.local_addr().map(|a| a.port()).unwrap_or(0),
                "admin API is serving"
            );
            tracker.spawn(async move {
                if let Err(e) = axum::serve(listener, admin_app)
                    .with_graceful_shutdown(admin_cancel.cancelled_owned())
                    .await
                {
                    tracing::error!(error.message = %e, "admin listener failed");
                }
            });
        } else {
            tracing::info!(
                "admin API disabled: set admin.key in credentials.yaml to create tokens and set quotas over HTTP"
            );
        }

        tracing::info!(
            port = self.api.local_addr().map(|a| a.port()).unwrap_or(0),
            primary = self.state.buckets.primary().id(),
            "museum is serving"
        );
        let http = &self.settings.http;
        let app = crate::api::router(
            self.state.clone(),
            http.request_timeout.get(),
            http.body_timeout.get(),
            &CorsPolicy::from_config(&http.cors),
        );
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        // Answers go out as written, not held for the client's delayed ACK.
        let api = self.api.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(api, app)
            .with_graceful_shutdown(cancel.clone().cancelled_owned())
            .into_future();
        tokio::pin!(serve);
        let deadline = tokio::select! {
            served = &mut serve => {
                served.context("serving the API")?;
                tokio::time::Instant::now() + SHUTDOWN_DEADLINE
            }
            () = cancel.cancelled() => {
                let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
                // Requests in flight may finish until the deadline; a slow download
                // (proxy mode streams through museum) must not hold shutdown open.
                match tokio::time::timeout_at(deadline, &mut serve).await {
                    Ok(served) => served.context("serving the API")?,
                    Err(_) => tracing::warn!(
                        "requests still in flight at the shutdown deadline are cut (slow downloads, most likely)"
                    ),
                }
                deadline
            }
        };

        tracker.close();
        if tokio::time::timeout_at(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "background work did not stop within the shutdown deadline; releasing its copies"
            );
        }
        match instance.retire(&self.state.db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "copies in hand returned to the queue"),
            Err(e) => tracing::warn!(
                error.message = %e,
                "could not release copies; the other instances will take them over"
            ),
        }
        self.state.db.close().await;
        drop(self.embedded_s3);
        Ok(())
    }
}

impl Application {
    /// Takes this process's instance name, takes back the copies its previous run
    /// left in hand, and keeps its heartbeat (which also takes over the copies of
    /// instances that died) until `cancel` fires.
    async fn start_instance(&self, jobs: &Runner) -> Instance {
        let instance = Instance::acquire();
        match instance.register(&self.state.db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                instance = instance.name(),
                copies = n,
                "took back the copies this instance's previous run left in hand"
            ),
            Err(e) => tracing::warn!(
                error.message = %e,
                "could not register this instance; its heartbeat will retry"
            ),
        }
        tracing::info!(instance = instance.name(), "replication instance started");
        let heartbeat = Heartbeat::new(
            self.state.db.clone(),
            instance.name().to_owned(),
            self.settings.replication.instance_timeout.get(),
            Arc::clone(&self.state.replication_wakeup),
        );
        jobs.spawn(heartbeat);
        instance
    }
}

/// Binds the admin listener when `admin.key` is set.
async fn bind_admin(settings: &Settings) -> anyhow::Result<Option<(TcpListener, AdminKey)>> {
    let Some(key) = AdminKey::from_config(settings.admin.key.as_ref()) else {
        return Ok(None);
    };
    let http = &settings.http;
    let listener = TcpListener::bind((http.admin_host.as_str(), http.admin_port))
        .await
        .with_context(|| {
            format!(
                "binding the admin API to http.admin-host {} and http.admin-port {}",
                http.admin_host, http.admin_port
            )
        })?;
    Ok(Some((listener, key)))
}

/// Starts the embedded S3 server for every present bucket. With port 0 in
/// `s3.embedded-address`, the buckets' endpoints are pointed at the port bound.
async fn start_embedded(settings: &mut Settings) -> anyhow::Result<(SocketAddr, DropGuard)> {
    let adopted = embedded::keys::adopt(&mut settings.s3, true)?;
    embedded::keys::check_exposure(&settings.s3)?;
    if adopted == embedded::keys::Adopted::Generated {
        tracing::info!(
            keys = %embedded::keys::keys_path(&settings.s3).display(),
            "the embedded S3 server uses the keys it made on its first start"
        );
    }
    let address = settings.s3.embedded_address.clone();
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("binding the embedded S3 server to s3.embedded-address {address} (is another museum running?)"))?;
    let mut names = Vec::new();
    let mut credentials = Vec::new();
    for id in BUCKET_IDS {
        if let Some(b) = settings.s3.bucket(id).filter(|b| b.is_present()) {
            names.push(b.bucket.clone().unwrap_or_default());
            credentials.push((
                b.key.clone().unwrap_or_default(),
                b.secret
                    .as_ref()
                    .map(|s| s.expose_secret().to_owned())
                    .unwrap_or_default(),
            ));
        }
    }
    let cancel = CancellationToken::new();
    let root = settings.s3.embedded_root.clone();
    let cors = CorsPolicy::from_config(&settings.http.cors);
    let addr = embedded::serve(&root, listener, &names, &credentials, cors, cancel.clone())
        .await
        .with_context(|| {
            format!(
                "starting the embedded S3 server in s3.embedded-root {}",
                root.display()
            )
        })?;
    if address.ends_with(":0") {
        for id in BUCKET_IDS {
            if let Some(b) = settings.s3.bucket_mut(id).filter(|b| b.is_present()) {
                b.endpoint = Some(format!("http://{addr}"));
            }
        }
    }
    tracing::info!(%addr, root = %root.display(), "embedded S3 server started");
    Ok((addr, cancel.drop_guard()))
}

/// `GET /metrics`: refreshes the gauges read from the database, then renders every
/// metric. A database error leaves the gauges at their last values.
async fn serve_metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    let pool = state.db.pool();
    state.metrics.set_pool(
        pool.size(),
        pool.num_idle(),
        pool.options().get_max_connections(),
    );
    match pending_counts(&state.db).await {
        Ok(counts) => {
            for bucket in state.buckets.all() {
                let n = counts
                    .iter()
                    .find(|(id, _)| id == bucket.id())
                    .map_or(0, |(_, n)| *n);
                state.metrics.set_pending(bucket.id(), n);
            }
        }
        Err(e) => tracing::warn!(error.message = %e, "metrics: cannot read pending copies"),
    }
    match crate::db::users::total_usage(&state.db).await {
        Ok(bytes) => state.metrics.set_usage(bytes),
        Err(e) => tracing::warn!(error.message = %e, "metrics: cannot read the usage"),
    }
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
