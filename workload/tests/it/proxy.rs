//! A tiny HTTP forward proxy on loopback for the sync tests: it records every request line it is
//! asked to forward (absolute-form `GET http://…` and `CONNECT host:port`) and can stall a
//! response after a number of bytes, to stop a download mid-file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<String>>,
    /// (path fragment, bytes of the response to let through before stalling).
    stall: Mutex<Option<(String, u64)>>,
    /// Response bytes passed on stalled paths.
    stalled_passed: AtomicU64,
}

pub(crate) struct Proxy {
    pub(crate) port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream, s.clone()));
            }
        });
        Self { port, shared, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request line forwarded so far (`GET http://127.0.0.1:…/v1/sync/snapshot?…`).
    pub(crate) fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// From now on, responses to paths containing `fragment` stop after `bytes` bytes.
    pub(crate) fn stall_after(&self, fragment: &str, bytes: u64) {
        *self.shared.stall.lock().unwrap() = Some((fragment.to_string(), bytes));
    }

    /// Response bytes let through on stalled paths.
    pub(crate) fn stalled_bytes(&self) -> u64 {
        self.shared.stalled_passed.load(Ordering::SeqCst)
    }
}

async fn handle(client: TcpStream, shared: Arc<Shared>) {
    let mut client = BufReader::new(client);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let end = line == "\r\n";
        head.push(line);
        if end {
            break;
        }
    }
    let request_line = head[0].trim_end().to_string();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    shared
        .requests
        .lock()
        .unwrap()
        .push(format!("{method} {target}"));
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(&target).await else {
            let _ = client
                .get_mut()
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        };
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await;
        let _ = tokio::io::copy_bidirectional(client.get_mut(), &mut upstream).await;
        return;
    }
    let Some(rest) = target.strip_prefix("http://") else {
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Ok(mut upstream) = TcpStream::connect(authority).await else {
        return;
    };
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    let mut length = 0usize;
    for h in &head[1..head.len() - 1] {
        let name = h
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "connection" | "proxy-connection" | "keep-alive"
        ) {
            continue;
        }
        if name == "content-length" {
            length = h
                .split(':')
                .nth(1)
                .unwrap_or("0")
                .trim()
                .parse()
                .unwrap_or(0);
        }
        out.push_str(h);
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut body = vec![0u8; length];
    if client.read_exact(&mut body).await.is_err() {
        return;
    }
    if upstream.write_all(out.as_bytes()).await.is_err() || upstream.write_all(&body).await.is_err()
    {
        return;
    }
    let stall = shared
        .stall
        .lock()
        .unwrap()
        .clone()
        .filter(|(fragment, _)| path.contains(fragment.as_str()));
    match stall {
        None => {
            let _ = tokio::io::copy(&mut upstream, client.get_mut()).await;
        }
        Some((_, limit)) => {
            let mut passed = 0u64;
            let mut buf = vec![0u8; 16 * 1024];
            while passed < limit {
                let want = buf.len().min((limit - passed) as usize);
                let Ok(n) = upstream.read(&mut buf[..want]).await else {
                    return;
                };
                if n == 0 || client.get_mut().write_all(&buf[..n]).await.is_err() {
                    return;
                }
                passed += n as u64;
                shared.stalled_passed.fetch_add(n as u64, Ordering::SeqCst);
            }
            // Hold the connection open, sending nothing more, until the peer goes away.
            let mut sink = [0u8; 1];
            let _ = client.read(&mut sink).await;
        }
    }
}
