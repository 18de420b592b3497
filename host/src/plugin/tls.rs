//! TLS settings for plugins' outbound `https` requests, one client config per origin.
//!
//! An origin uses the built-in web PKI roots unless its `tls` entry names a CA file or
//! turns on `insecure`. vCenter usually presents a self-signed or private-CA certificate,
//! so the CA file is the normal case in production.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::Error as HttpError;

use crate::config::TlsConfig;

/// Client configs by `(host, port)`, with the web PKI default for the rest.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    by_origin: HashMap<(String, u16), Arc<ClientConfig>>,
    default: Arc<ClientConfig>,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Self {
            by_origin: HashMap::new(),
            default: Arc::new(
                builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            ),
        }
    }
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
}

impl TlsPolicy {
    /// Adds the settings for the origin `host:port`.
    ///
    /// # Errors
    ///
    /// A message naming the CA file when it cannot be read or contains no certificate.
    pub fn insert(&mut self, host: &str, port: u16, settings: &TlsConfig) -> Result<(), String> {
        let config = if settings.insecure {
            builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
                .with_no_client_auth()
        } else if let Some(ca_file) = &settings.ca_file {
            builder()
                .with_root_certificates(load_roots(ca_file)?)
                .with_no_client_auth()
        } else {
            return Ok(());
        };
        self.by_origin
            .insert((host.to_ascii_lowercase(), port), Arc::new(config));
        Ok(())
    }

    /// Runs the TLS handshake for `host:port` over `tcp`.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, HttpError> {
        let config = self
            .by_origin
            .get(&(host.to_ascii_lowercase(), port))
            .unwrap_or(&self.default);
        let server_name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::from(ip),
            Err(_) => ServerName::try_from(host.to_owned())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?,
        };
        TlsConnector::from(config.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|err| classify_handshake_error(host, port, err))
    }
}

fn classify_handshake_error(host: &str, port: u16, err: std::io::Error) -> HttpError {
    let tls_error = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    tracing::debug!(%host, port, error = %err, "TLS handshake failed");
    match tls_error {
        Some(rustls::Error::InvalidCertificate(_)) => HttpError::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => HttpError::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        Some(_) => HttpError::TlsProtocolError,
        None => HttpError::Tls(err),
    }
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let pem = std::fs::read(path)
        .map_err(|err| format!("cannot read CA file {}: {err}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert =
            cert.map_err(|err| format!("invalid PEM in CA file {}: {err}", path.display()))?;
        roots
            .add(cert)
            .map_err(|err| format!("invalid certificate in CA file {}: {err}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("CA file {} holds no certificate", path.display()));
    }
    Ok(roots)
}

/// The verifier behind `insecure = true`: accepts every certificate and signature.
#[derive(Debug)]
struct AcceptAnyCertificate;

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
