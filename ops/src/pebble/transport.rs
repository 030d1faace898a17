//! Moving protocol requests over Pebble's Unix socket.
//!
//! [`Transport`] is the seam between [`super::protocol`] (pure) and the
//! socket: [`UnixTransport`] speaks HTTP/1.1 with hyper over a
//! `tokio::net::UnixStream`, one connection per request (Unix sockets make
//! that cheap and it keeps a half-closed keep-alive connection from ever
//! surprising a hook), and opens exec websockets with tokio-tungstenite over
//! the same socket.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio_tungstenite::WebSocketStream;

use super::Error;

/// Any byte stream a websocket can run over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An exec websocket.
pub type WebSocket = WebSocketStream<Box<dyn Io>>;

/// Sends requests to one Pebble.
pub trait Transport: Send + Sync {
    /// Sends `req` and returns the whole response.
    fn send(
        &self,
        req: Request<Bytes>,
    ) -> impl Future<Output = Result<Response<Bytes>, Error>> + Send;

    /// Opens the websocket at `path` (for example
    /// `/v1/tasks/3/websocket/stdio`).
    fn websocket(&self, path: &str) -> impl Future<Output = Result<WebSocket, Error>> + Send;
}

/// HTTP over Pebble's Unix socket.
#[derive(Clone, Debug)]
pub struct UnixTransport {
    socket: PathBuf,
}

impl UnixTransport {
    /// A transport to the socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> UnixTransport {
        UnixTransport {
            socket: socket.into(),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn connect(&self) -> Result<UnixStream, Error> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| Error::Connection {
                socket: self.socket.clone(),
                source,
            })
    }
}

fn broken(socket: &Path, e: impl std::fmt::Display) -> Error {
    Error::Connection {
        socket: socket.to_owned(),
        source: io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string()),
    }
}

impl Transport for UnixTransport {
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, Error> {
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| broken(&self.socket, e))?;
        // The connection task drives the socket; it ends when the response
        // is read and the sender dropped.
        let driver = tokio::spawn(conn);
        let (parts, body) = req.into_parts();
        let resp = sender
            .send_request(Request::from_parts(parts, Full::new(body)))
            .await
            .map_err(|e| broken(&self.socket, e))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| broken(&self.socket, e))?
            .to_bytes();
        drop(sender);
        driver.abort();
        Ok(Response::from_parts(parts, body))
    }

    async fn websocket(&self, path: &str) -> Result<WebSocket, Error> {
        let stream = self.connect().await?;
        let io: Box<dyn Io> = Box::new(stream);
        match tokio_tungstenite::client_async(format!("ws://localhost{path}"), io).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status();
                let body = resp.body().clone().unwrap_or_default();
                // Pebble answers a refused upgrade with its usual error
                // envelope; surface that as an API error.
                match super::protocol::decode(status, Some("application/json"), &body) {
                    Err(e) => Err(e),
                    Ok(_) => Err(Error::Protocol(format!(
                        "websocket {path} refused with HTTP {status}"
                    ))),
                }
            }
            Err(e) => Err(Error::Protocol(format!(
                "cannot open websocket {path}: {e}"
            ))),
        }
    }
}
