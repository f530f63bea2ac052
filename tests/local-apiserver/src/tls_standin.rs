//! Network stand-ins for the operator's AWS path (not part of the API server): an HTTPS endpoint
//! with its own CA, made at start, that forwards each connection to a plain-HTTP upstream (moto),
//! so an AWS client reaches moto only if it trusts that CA; and an HTTP CONNECT proxy that
//! records where it was asked to connect, as a corporate proxy would see the operator.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// An HTTPS endpoint (`https://localhost:PORT`) in front of `upstream`, with a CA of its own.
pub struct TlsStandIn {
    /// `https://localhost:PORT` (the certificate names `localhost` and `127.0.0.1`).
    pub url: String,
    /// The CA that signed its certificate, PEM: what a client must trust to reach it.
    pub ca_pem: String,
    task: JoinHandle<()>,
}

impl TlsStandIn {
    /// Listens on 127.0.0.1 and forwards every TLS connection, decrypted, to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let tls = crate::auth::tls::generate().map_err(io::Error::other)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://localhost:{}", listener.local_addr()?.port());
        let acceptor = tls.acceptor.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that does not trust the CA ends the handshake: nothing is forwarded.
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    let Ok(mut up) = TcpStream::connect(upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        Ok(Self { url, ca_pem: tls.ca_pem, task })
    }
}

impl Drop for TlsStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP proxy that serves CONNECT only (what an HTTPS client sends through a proxy), records
/// each `host:port` it is asked for, and tunnels to it.
pub struct ConnectProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    connects: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let connects = Arc::new(Mutex::new(Vec::new()));
        let seen = connects.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = tunnel(stream, seen).await;
                });
            }
        });
        Ok(Self { url, connects, task })
    }

    /// The `host:port` of every CONNECT so far, in order.
    pub fn connects(&self) -> Vec<String> {
        self.connects.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tunnel(stream: TcpStream, seen: Arc<Mutex<Vec<String>>>) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        reader.get_mut().write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n").await?;
        return Ok(());
    };
    let target = target.to_string();
    // The request's headers, up to the empty line.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    if let Ok(mut s) = seen.lock() {
        s.push(target.clone());
    }
    let mut up = match TcpStream::connect(&target).await {
        Ok(up) => up,
        Err(_) => {
            reader.get_mut().write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await?;
            return Ok(());
        }
    };
    reader.get_mut().write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await?;
    // Bytes the client sent after the headers are still in the reader's buffer.
    let buffered = reader.buffer().to_vec();
    up.write_all(&buffered).await?;
    let mut client = reader.into_inner();
    tokio::io::copy_bidirectional(&mut client, &mut up).await?;
    Ok(())
}
