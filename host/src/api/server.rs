//! Serving the API over plain HTTP or HTTPS, with a graceful shutdown.
//!
//! HTTPS uses rustls with the `ring` provider. The dependency graph compiles both `ring`
//! and `aws-lc-rs` into rustls, and poem 3.1 installs `aws-lc-rs` as the process default
//! when none is set. [`ApiServer::bind`] therefore installs `ring` first, so the plugins'
//! outbound TLS and the server use one provider.

use std::net::SocketAddr;
use std::time::Duration;

use poem::listener::{
    Acceptor, AcceptorExt, BoxAcceptor, Listener, RustlsCertificate, RustlsConfig, TcpListener,
};
use poem::{Endpoint, IntoEndpoint, Server};

use crate::config::{ServerConfig, ServerTls};

/// How long open requests may take to finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the TLS file {path}: {source}")]
    TlsFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound listener, ready to serve.
pub struct ApiServer {
    acceptor: BoxAcceptor,
    local_addr: SocketAddr,
    tls: bool,
}

impl ApiServer {
    /// Binds `config.listen`, with TLS when `config.tls` is set.
    ///
    /// # Errors
    ///
    /// [`ServeError::TlsFile`] when a certificate or key file cannot be read,
    /// [`ServeError::Bind`] when the address is taken or the certificate and key do not
    /// form a usable pair.
    pub async fn bind(config: &ServerConfig) -> Result<Self, ServeError> {
        let addr = config.listen;
        let bind_error = |source| ServeError::Bind { addr, source };
        let listener = TcpListener::bind(addr);
        let acceptor = match &config.tls {
            Some(tls) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let rustls = rustls_config(tls)?;
                listener
                    .rustls(rustls)
                    .into_acceptor()
                    .await
                    .map_err(bind_error)?
                    .boxed()
            }
            None => listener.into_acceptor().await.map_err(bind_error)?.boxed(),
        };
        let local_addr = acceptor
            .local_addr()
            .iter()
            .find_map(|local| local.as_socket_addr().copied())
            .unwrap_or(addr);
        Ok(Self {
            acceptor,
            local_addr,
            tls: config.tls.is_some(),
        })
    }

    /// Returns the bound address, with the port the system chose when `listen` had port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `endpoint` until `shutdown` completes, then lets open requests finish for up
    /// to 10 seconds.
    ///
    /// # Errors
    ///
    /// [`ServeError::Serve`] when accepting connections fails.
    pub async fn run<E>(
        self,
        endpoint: E,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError>
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        let addr = self.local_addr;
        let scheme = if self.tls { "https" } else { "http" };
        tracing::info!(%addr, scheme, "API listening");
        let result = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(endpoint, shutdown, Some(SHUTDOWN_GRACE))
            .await;
        tracing::info!(%addr, "API stopped");
        result.map_err(|source| ServeError::Serve { addr, source })
    }
}

/// Serves `endpoint` on `config.listen` until `shutdown` completes.
///
/// # Errors
///
/// Any [`ServeError`] of [`ApiServer::bind`] or [`ApiServer::run`].
pub async fn serve<E>(
    endpoint: E,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    E: Endpoint + 'static,
{
    ApiServer::bind(config).await?.run(endpoint, shutdown).await
}

fn rustls_config(tls: &ServerTls) -> Result<RustlsConfig, ServeError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServeError::TlsFile {
            path: path.to_owned(),
            source,
        })
    };
    let certificate = RustlsCertificate::new()
        .cert(read(&tls.cert_file)?)
        .key(read(&tls.key_file)?);
    Ok(RustlsConfig::new().fallback(certificate))
}
