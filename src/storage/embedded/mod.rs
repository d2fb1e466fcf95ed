//! The embedded S3 server: s3s-fs on a local folder, one sub-folder per bucket, so a
//! fresh checkout runs with no other process. Its writes go through museum's own path
//! (`durable`): atomic, checked and synced before they are acknowledged.

mod access;
mod disk;
mod durable;
pub mod keys;
mod layout;

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::service::TowerToHyperService;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower::util::MapResponseLayer;

use crate::cors::CorsPolicy;

/// Errors starting the embedded server.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot prepare the embedded S3 folder {path}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the embedded S3 server")]
    Start {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Serves S3 from `root` on `listener` until `cancel` fires. Every bucket in
/// `buckets` exists as `<root>/<bucket>` (created and synced) before this returns. A
/// PUT, part upload or completion is answered only once it is on disk, and one that
/// is refused changes nothing. Requests must be signed with one of `credentials`
/// (access key, secret key). CORS preflights are answered by `cors` before the
/// signature check, and every answer to an allowed origin exposes its `ETag`, so a
/// browser on another origin can upload.
pub async fn serve(
    root: &Path,
    listener: TcpListener,
    buckets: &[String],
    credentials: &[(String, String)],
    cors: CorsPolicy,
    cancel: CancellationToken,
) -> Result<SocketAddr, EmbeddedError> {
    let folder_failed = |path: &Path| {
        let path = path.display().to_string();
        move |source| EmbeddedError::Folder { path, source }
    };
    disk::create_dirs(root).await.map_err(folder_failed(root))?;
    for bucket in buckets {
        let path = root.join(bucket);
        disk::create_dirs(&path)
            .await
            .map_err(folder_failed(&path))?;
    }
    let fs = durable::DurableFs::new(root).map_err(folder_failed(root))?;
    let mut builder = S3ServiceBuilder::new(fs);
    let mut auth = SimpleAuth::new();
    for (key, secret) in credentials {
        auth.register(key.clone(), secret.clone().into());
    }
    builder.set_auth(auth);
    builder.set_access(access::MuseumAccess);
    // s3s logs every refused request at ERROR, though a 404 or 403 is a client's
    // business; its own logs are off by default (telemetry), and answers are logged
    // here instead: server errors at WARN, refusals at DEBUG. Never the URI, which
    // carries a presigned URL's signature.
    let logged = MapResponseLayer::new(|response: http::Response<s3s::Body>| {
        let status = response.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "embedded S3 failed a request");
        } else if status.is_client_error() {
            tracing::debug!(status = status.as_u16(), "embedded S3 refused a request");
        }
        response
    });
    let service =
        TowerToHyperService::new(logged.layer(cors.bucket_layer().layer(builder.build())));
    let addr = listener.local_addr().map_err(|e| EmbeddedError::Start {
        source: Box::new(e),
    })?;

    tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let socket = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => {
                        // Answers go out as written: with Nagle's algorithm the tail of
                        // one waits for the client's delayed ACK (up to 40 ms).
                        let _ = socket.set_nodelay(true);
                        socket
                    }
                    Err(e) => {
                        tracing::warn!(error.message = %e, "embedded S3: accept failed");
                        continue;
                    }
                },
                () = cancel.cancelled() => break,
            };
            let conn = http.serve_connection(TokioIo::new(socket), service.clone());
            let conn = graceful.watch(conn.into_owned());
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    });
    Ok(addr)
}
