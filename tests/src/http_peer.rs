//! A minimal HTTP/1.1 peer on 127.0.0.1 for plugin tests. It responds to every request with a
//! fixed body, or accepts and never responds, or trickles a body. It counts the connections it accepted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the peer responds.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `200 OK` with this body.
    Respond(String),
    /// Reads the request and never responds.
    Hang,
    /// Sends response headers, then one body byte every 100 ms, never finishing.
    Trickle,
}

/// A running peer; it stops when dropped.
pub struct HttpPeer {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpPeer {
    /// Starts a plain-HTTP peer on a free port.
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::start_with_tls(behaviour, None).await
    }

    /// Starts a peer that speaks TLS with `tls` when given.
    pub async fn start_with_tls(
        behaviour: Behaviour,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let behaviour = behaviour.clone();
                match tls.clone() {
                    None => drop(tokio::spawn(serve(stream, behaviour))),
                    Some(config) => drop(tokio::spawn(async move {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream, behaviour).await;
                        }
                    })),
                }
            }
        });
        Self {
            addr,
            connections,
            task,
        }
    }

    /// Returns `http://127.0.0.1:PORT` (or `https://` when `tls`).
    pub fn origin(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, behaviour: Behaviour) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    match behaviour {
        Behaviour::Respond(body) => {
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Behaviour::Hang => std::future::pending::<()>().await,
        Behaviour::Trickle => {
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            while stream.write_all(b"1").await.is_ok() && stream.flush().await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Creates a self-signed certificate for 127.0.0.1 and returns the server config and the PEM
/// to trust.
pub fn self_signed_tls() -> (Arc<rustls::ServerConfig>, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    (Arc::new(config), cert_pem)
}
