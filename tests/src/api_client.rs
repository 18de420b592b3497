//! A small HTTP/1.1 client for the REST API tests and benchmark: one request per
//! connection or many over a kept-alive one, over plain TCP or TLS, built on hyper.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A response as the tests read it.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    /// Parses the body as JSON, panicking with the body text when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "the body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct ApiClient {
    pub addr: SocketAddr,
    /// TLS settings for https; plain http when `None`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A request body.
pub enum RequestBody {
    Empty,
    Bytes(Vec<u8>),
    /// Sent with `Transfer-Encoding: chunked`, in chunks of this many bytes.
    Chunked {
        data: Vec<u8>,
        chunk: usize,
    },
}

/// One kept-alive connection.
pub struct Connection {
    sender: SendRequest<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>,
}

impl ApiClient {
    pub fn plain(addr: SocketAddr) -> Self {
        Self { addr, tls: None }
    }

    /// Opens a connection, with the TLS handshake for https.
    pub async fn connect(&self) -> std::io::Result<Connection> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let sender = match &self.tls {
            None => handshake(tcp).await?,
            Some(config) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                let stream = connector.connect(name, tcp).await?;
                handshake(stream).await?
            }
        };
        Ok(Connection { sender })
    }

    /// Sends one request on a new connection.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: RequestBody,
    ) -> ApiResponse {
        let mut connection = self.connect().await.expect("connect to the API");
        connection.send(method, path, headers, body).await
    }

    /// Sends a GET with a bearer token (when given) on a new connection.
    pub async fn get(&self, path: &str, token: Option<&str>) -> ApiResponse {
        let authorization = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|value| ("authorization", value))
            .into_iter()
            .collect();
        self.send(Method::GET, path, &headers, RequestBody::Empty)
            .await
    }
}

async fn handshake<S>(
    stream: S,
) -> std::io::Result<SendRequest<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

impl Connection {
    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: RequestBody,
    ) -> ApiResponse {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = match body {
            RequestBody::Empty => Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
            RequestBody::Bytes(data) => Full::new(Bytes::from(data))
                .map_err(|never| match never {})
                .boxed(),
            RequestBody::Chunked { data, chunk } => {
                let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = data
                    .chunks(chunk)
                    .map(|part| Ok(Frame::data(Bytes::copy_from_slice(part))))
                    .collect();
                StreamBody::new(futures::stream::iter(frames)).boxed()
            }
        };
        let request = builder.body(body).expect("a valid request");
        self.sender.ready().await.expect("connection ready");
        let response = self
            .sender
            .send_request(request)
            .await
            .expect("the API responds");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("read the response body")
            .to_bytes();
        ApiResponse {
            status,
            headers,
            body,
        }
    }
}
