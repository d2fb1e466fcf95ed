//! Fault injection in front of real servers: a proxy that corrupts or truncates what
//! is written through it, and moto, a real S3 server that keeps storage classes.

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
}

/// An HTTP proxy to one S3 server whose write path can be sabotaged.
pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: SocketAddr,
    mode: Arc<AtomicU8>,
    client: reqwest::Client,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a random port.
    pub async fn start(upstream: SocketAddr, mode: Mode) -> Self {
        let mode = Arc::new(AtomicU8::new(mode as u8));
        let state = ProxyState {
            upstream,
            mode: Arc::clone(&mode),
            client: reqwest::Client::new(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, mode, task }
    }

    /// Changes what the proxy does from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
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
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
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
    out.body(Body::from(response.bytes().await.unwrap()))
        .unwrap()
}

/// A moto S3 server on a random port, stopped on drop.
pub struct Moto {
    pub addr: SocketAddr,
    child: Child,
}

impl Moto {
    /// Starts `moto_server` (installed by `.ci/test`) and waits until it answers.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
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
