//! Log output: one subscriber for the process, pretty on a terminal, JSON otherwise;
//! and, when `events.webhook-url` is set, every operator event (a line with an
//! `event` field, see [`crate::observe::events`]) posted there as JSON.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Events the webhook queue holds before it drops new ones.
const WEBHOOK_QUEUE: usize = 1024;
/// Tries per event, with a doubling pause between them from one second on.
const WEBHOOK_TRIES: u32 = 5;

static WEBHOOK_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Events queued for the webhook whose delivery has not ended yet.
static WEBHOOK_PENDING: AtomicU64 = AtomicU64::new(0);

/// Events the webhook did not deliver, since the process started.
pub fn webhook_dropped() -> u64 {
    WEBHOOK_DROPPED.load(Ordering::Relaxed)
}

/// Waits, at most `within`, until every event queued for the webhook is delivered or
/// given up; returns how many were still under way. A command that ends right after
/// an event (`museum scrub` finding a lost object) calls it before it exits, or the
/// event would die with the process.
pub async fn flush_webhook(within: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let pending = WEBHOOK_PENDING.load(Ordering::Acquire);
        if pending == 0 || tokio::time::Instant::now() >= deadline {
            return pending;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides the default filter. Calling it
/// again is harmless (the first subscriber stays). The embedded S3 server's library
/// logs are off by default: it logs refused requests as errors, and the server's own
/// layer logs its answers at the right level instead.
pub fn init(format: Option<LogFormat>, webhook: Option<&SecretString>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,s3s=off,s3s_fs=warn,hyper=warn,tower_http=info")
    });
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let output = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let webhook = webhook.and_then(|url| WebhookLayer::start(url.clone()));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .with(webhook)
        .try_init();
}

/// Queues each event for the delivery thread; drops (and counts) it when the queue
/// is full, so a slow or dead receiver never slows what logs.
struct WebhookLayer {
    queue: tokio::sync::mpsc::Sender<serde_json::Value>,
}

impl WebhookLayer {
    /// Starts the delivery thread. `None` if no thread could be started, which is
    /// logged once the subscriber is up.
    fn start(url: SecretString) -> Option<Self> {
        let (queue, events) = tokio::sync::mpsc::channel(WEBHOOK_QUEUE);
        let started = std::thread::Builder::new()
            .name("museum-webhook".to_owned())
            .spawn(move || deliver_all(&url, events));
        match started {
            Ok(_) => Some(Self { queue }),
            Err(e) => {
                eprintln!("cannot start the event webhook's thread: {e}");
                None
            }
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for WebhookLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.fields().field("event").is_none() {
            return;
        }
        let mut fields = JsonFields(serde_json::Map::new());
        event.record(&mut fields);
        let mut body = fields.0;
        body.insert("level".to_owned(), meta.level().as_str().into());
        body.insert(
            "timestamp".to_owned(),
            jiff::Timestamp::now().to_string().into(),
        );
        WEBHOOK_PENDING.fetch_add(1, Ordering::AcqRel);
        if self
            .queue
            .try_send(serde_json::Value::Object(body))
            .is_err()
        {
            WEBHOOK_PENDING.fetch_sub(1, Ordering::AcqRel);
            WEBHOOK_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An event's fields as a JSON object; `message` holds the line's text.
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// The delivery thread: posts each event in turn, retrying a failed post with a
/// doubling pause; an event still undelivered after the last try is dropped and
/// counted. Failures are logged without the URL, which may carry a secret.
fn deliver_all(url: &SecretString, mut events: tokio::sync::mpsc::Receiver<serde_json::Value>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the event webhook's runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        // No redirect is followed and no Referer sent: the URL may carry a secret,
        // and the event goes to the configured address or nowhere.
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error.message = %e.without_url(), "cannot build the event webhook's client; events go to the log only");
                return;
            }
        };
        while let Some(event) = events.recv().await {
            let body = bytes::Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
            if !deliver(&client, url, body).await {
                WEBHOOK_DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            WEBHOOK_PENDING.fetch_sub(1, Ordering::AcqRel);
        }
    });
}

/// Posts `body` until it is taken or the tries run out; each try shares the bytes.
/// A redirect, like a refusal, fails the delivery at once.
async fn deliver(client: &reqwest::Client, url: &SecretString, body: bytes::Bytes) -> bool {
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=WEBHOOK_TRIES {
        let sent = client
            .post(url.expose_secret())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let why = match sent {
            Ok(answer) if answer.status().is_success() => return true,
            Ok(answer) if answer.status().is_redirection() => {
                tracing::warn!(
                    status = answer.status().as_u16(),
                    "the event webhook answered a redirect, which is not followed; dropped (set events.webhook-url to the final address)"
                );
                return false;
            }
            Ok(answer) => {
                let status = answer.status();
                // A refusal other than "too many" or a server error will not change.
                if status.is_client_error() && status != http::StatusCode::TOO_MANY_REQUESTS {
                    tracing::warn!(
                        status = status.as_u16(),
                        "the event webhook refused an event; dropped"
                    );
                    return false;
                }
                format!("HTTP {}", status.as_u16())
            }
            Err(e) => e.without_url().to_string(),
        };
        tracing::warn!(attempt, error.message = %why, "the event webhook did not take an event");
        if attempt < WEBHOOK_TRIES {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    false
}
