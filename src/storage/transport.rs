//! The HTTP transport under object_store: one reqwest client for every bucket (one
//! connection pool), and a watch on the requests that carry an object's bytes.
//!
//! object_store sends a PUT's payload itself, so museum cannot see its bytes move
//! from outside. A call that sends bytes runs inside [`watched`] with its
//! [`PeerClock`]; every request object_store makes for it (retries included) feeds
//! that clock: each time the connection asks for more of the body, the bucket has
//! taken what it had; once the body is sent, museum waits on the bucket until the
//! answer's headers arrive. The caller's watchdog reads the same clock, so a bucket
//! that goes silent fails the call after `s3.idle-timeout`, whatever the retries.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use tokio::time::Instant;

use super::watch::{PeerClock, lock};

/// The largest piece of a body handed to the connection at once, so that the
/// connection asks for more (and the clock sees progress) at least this often.
const SLICE: usize = 64 * 1024;

tokio::task_local! {
    static CLOCK: Arc<Mutex<PeerClock>>;
}

/// Runs `call` with every request it makes watched on `clock`.
pub(crate) async fn watched<F: Future>(clock: Arc<Mutex<PeerClock>>, call: F) -> F::Output {
    CLOCK.scope(clock, call).await
}

/// The client every bucket's data requests share.
pub(crate) fn shared_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

/// Sends object_store's requests through a shared reqwest client, each bounded by
/// `overall` when given.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    overall: Option<Duration>,
}

impl Transport {
    pub(crate) fn new(client: reqwest::Client, overall: Option<Duration>) -> Self {
        Self { client, overall }
    }
}

impl HttpConnector for Transport {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.clone()))
    }
}

#[async_trait::async_trait]
impl HttpService for Transport {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let clock = CLOCK.try_with(Arc::clone).ok();
        let (parts, body) = request.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        let mut out = reqwest::Request::new(parts.method, url);
        *out.headers_mut() = parts.headers;
        *out.timeout_mut() = self.overall;
        // Not `is_empty`: object_store 0.14.2 answers it inverted for a payload.
        if body.content_length() > 0 {
            *out.body_mut() = Some(reqwest::Body::wrap(WatchedBody {
                inner: body,
                pending: Bytes::new(),
                clock: clock.clone(),
            }));
        }
        let response = self.client.execute(out).await.map_err(http_error)?;
        if let Some(c) = &clock {
            lock(c).stop(Instant::now());
        }
        let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        Ok(HttpResponse::from_parts(
            parts,
            HttpResponseBody::new(body.map_err(http_error)),
        ))
    }
}

/// A reqwest failure, by kind (what object_store decides retries on), without the
/// request URL.
fn http_error(e: reqwest::Error) -> HttpError {
    let kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else if e.is_body() || e.is_request() {
        HttpErrorKind::Interrupted
    } else {
        HttpErrorKind::Unknown
    };
    HttpError::new(kind, e.without_url())
}

/// A request body whose pace the bucket sets: each time the connection asks for
/// more, the bucket has taken what it had.
struct WatchedBody {
    inner: HttpRequestBody,
    pending: Bytes,
    clock: Option<Arc<Mutex<PeerClock>>>,
}

impl WatchedBody {
    fn mark(&self, f: impl FnOnce(&mut PeerClock)) {
        if let Some(c) = &self.clock {
            f(&mut lock(c));
        }
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let now = Instant::now();
        self.mark(|c| c.stop(now));
        if self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.pending = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(None) => {
                    // The whole body is sent: the bucket's turn to answer.
                    self.mark(|c| c.wait(now));
                    return Poll::Ready(None);
                }
                other => return other,
            }
        }
        let piece = if self.pending.len() > SLICE {
            self.pending.split_to(SLICE)
        } else {
            std::mem::take(&mut self.pending)
        };
        self.mark(|c| c.wait(now));
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let pending = self.pending.len() as u64;
        match inner.exact() {
            Some(n) => SizeHint::with_exact(n + pending),
            None => {
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + pending);
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watched_body_sends_every_byte_in_slices() {
        let chunks: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![i; 100_000])).collect();
        let payload = object_store::PutPayload::from_iter(chunks);
        let body = WatchedBody {
            inner: HttpRequestBody::from(payload),
            pending: Bytes::new(),
            clock: None,
        };
        assert_eq!(body.size_hint().exact(), Some(300_000));
        let mut body = std::pin::pin!(body);
        let mut total = 0;
        let mut largest = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            total += data.len();
            largest = largest.max(data.len());
        }
        assert_eq!((total, largest), (300_000, SLICE));
    }
}
