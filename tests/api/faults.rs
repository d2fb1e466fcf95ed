//! Fault injection in front of real servers: a proxy that corrupts, truncates,
//! refuses, slows down or stalls what goes through it, a TCP proxy that cuts
//! connections, and moto, a real S3 server that keeps storage classes.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use tokio::net::TcpListener;

/// What the proxy does to request bodies of PUTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forward unchanged.
    Pass = 0,
    /// Flip one byte in the middle.
    Corrupt = 1,
    /// Drop the last byte (and say so in Content-Length).
    Truncate = 2,
    /// Answer every write 507 Insufficient Storage, as a full disk would.
    Full = 3,
    /// Send every answer's body slowly: [`TRICKLE_BYTES`] every [`TRICKLE_TICK`].
    Trickle = 4,
}

/// How much of a body a trickling proxy sends per tick.
pub const TRICKLE_BYTES: usize = 32 * 1024;
/// How often a trickling proxy sends a piece of a body.
pub const TRICKLE_TICK: Duration = Duration::from_millis(50);

/// Requests that get no answer: (method, a fragment of the path), and how many have
/// been held so far.
#[derive(Default)]
struct Stalls {
    rules: std::sync::Mutex<Vec<(http::Method, String)>>,
    held: std::sync::atomic::AtomicUsize,
}

/// An HTTP proxy to one S3 server whose write path can be sabotaged.
pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    stalls: Arc<Stalls>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: SocketAddr,
    mode: Arc<AtomicU8>,
    stalls: Arc<Stalls>,
    client: reqwest::Client,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a random port.
    pub async fn start(upstream: SocketAddr, mode: Mode) -> Self {
        let mode = Arc::new(AtomicU8::new(mode as u8));
        let stalls = Arc::new(Stalls::default());
        let state = ProxyState {
            upstream,
            mode: Arc::clone(&mode),
            stalls: Arc::clone(&stalls),
            client: reqwest::Client::new(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            mode,
            stalls,
            task,
        }
    }

    /// Changes what the proxy does from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// From now on, a `method` request whose path contains `fragment` is accepted and
    /// then met with silence: its body is never read and no answer ever comes.
    pub fn stall(&self, method: http::Method, fragment: &str) {
        self.stalls
            .rules
            .lock()
            .unwrap()
            .push((method, fragment.to_owned()));
    }

    /// Answers every request again (requests already stalled stay stalled).
    pub fn lift_stalls(&self) {
        self.stalls.rules.lock().unwrap().clear();
    }

    /// How many requests have been stalled so far.
    pub fn stalled(&self) -> usize {
        self.stalls.held.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let stalled = state
        .stalls
        .rules
        .lock()
        .unwrap()
        .iter()
        .any(|(method, fragment)| *method == parts.method && path.contains(fragment.as_str()));
    if stalled {
        state.stalls.held.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    let mut bytes = axum::body::to_bytes(body, 1 << 30).await.unwrap().to_vec();
    let mode = state.mode.load(Ordering::SeqCst);
    let writes = parts.method == http::Method::PUT || parts.method == http::Method::POST;
    if mode == Mode::Full as u8 && writes {
        return Response::builder()
            .status(507)
            .body(Body::from(
                "<?xml version=\"1.0\"?><Error><Code>InsufficientStorage</Code><Message>disk full</Message></Error>",
            ))
            .unwrap();
    }
    if parts.method == http::Method::PUT && !bytes.is_empty() {
        if mode == Mode::Corrupt as u8 {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
        } else if mode == Mode::Truncate as u8 {
            bytes.pop();
        }
    }
    let mut upstream = state.client.request(
        parts.method.clone(),
        format!("http://{}{path}", state.upstream),
    );
    for (name, value) in &parts.headers {
        if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
            upstream = upstream.header(name, value);
        }
    }
    let response = upstream
        .header(http::header::CONTENT_LENGTH, bytes.len())
        .body(bytes)
        .send()
        .await
        .unwrap();
    let mut out = Response::builder().status(response.status());
    for (name, value) in response.headers() {
        if name != http::header::TRANSFER_ENCODING && name != http::header::CONNECTION {
            out = out.header(name, value);
        }
    }
    let bytes = response.bytes().await.unwrap();
    if mode != Mode::Trickle as u8 {
        return out.body(Body::from(bytes)).unwrap();
    }
    let pieces = futures_util::stream::unfold(bytes, |mut rest| async move {
        if rest.is_empty() {
            return None;
        }
        tokio::time::sleep(TRICKLE_TICK).await;
        let piece = rest.split_to(TRICKLE_BYTES.min(rest.len()));
        Some((Ok::<_, std::io::Error>(piece), rest))
    });
    out.body(Body::from_stream(pieces)).unwrap()
}

/// A moto S3 server on a random port, stopped on drop.
pub struct Moto {
    pub addr: SocketAddr,
    child: Child,
}

impl Moto {
    /// Starts `moto_server` (installed by `.ci/test`) and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// [`Moto::start`] with moto's settings in `env` (e.g. `S3_UPLOAD_PART_MIN_SIZE`).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server must be installed (pip install 'moto[s3]' flask flask-cors; .ci/test does it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "moto did not start within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { addr, child }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy that can cut every connection through it and refuse new ones, to
/// take a database away from museum and give it back.
pub struct TcpCut {
    pub addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpCut {
    /// Starts a proxy to `upstream` on a random port, passing traffic.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = Arc::new(AtomicU8::new(0));
        let (up2, generation2) = (Arc::clone(&up), Arc::clone(&generation));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let born = generation2.load(Ordering::SeqCst);
                let generation = Arc::clone(&generation2);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let pump = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        while generation.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = pump => {},
                        () = cut => {},
                    }
                });
            }
        });
        Self {
            addr,
            up,
            generation,
            task,
        }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpCut {
    fn drop(&mut self) {
        self.task.abort();
    }
}
