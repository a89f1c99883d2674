//! A small HTTPS client for the broker's admin API. It trusts only the CA
//! it is given (`--ca-cert`, the broker data dir's `ca.pem`), so a token is
//! never sent to a server that cannot prove it is the broker.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What went wrong talking to the broker, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Setup(String),
    #[error(
        "cannot reach the broker at {url}: {reason} (is lanyard-broker running? check --broker)"
    )]
    Connect { url: String, reason: String },
    #[error("TLS with the broker at {url} failed: {reason} (is --ca-cert the broker's ca.pem?)")]
    Tls { url: String, reason: String },
    #[error("the broker did not answer in time")]
    Timeout,
    /// The broker refused the request and said why.
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        rows: Vec<RowProblem>,
    },
    #[error("unexpected answer from the broker ({0})")]
    Protocol(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct RowProblem {
    pub line: u64,
    pub problem: String,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    rows: Vec<RowProblem>,
}

/// The error an unsuccessful answer carries.
pub fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError::Api {
            status,
            code: e.error.code,
            message: e.error.message,
            rows: e.error.rows,
        },
        Err(_) => ClientError::Protocol(format!("HTTP {status}")),
    }
}

#[derive(Clone)]
pub struct Client {
    url: String,
    host: String,
    port: u16,
    token: Option<String>,
    tls: TlsConnector,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes one path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The broker's address, checked: `https://HOST[:PORT]` (port 443 if left
/// out). Plain `http://` is refused: the token must only go over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub url: String,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some(rest) = url.trim().strip_prefix("https://") else {
            return Err(
                "it must start with https:// (e.g. https://127.0.0.1:8443): the broker's API is HTTPS only"
                    .into(),
            );
        };
        let rest = rest.trim_end_matches('/');
        let url = format!("https://{rest}");
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
                Ok(port) => (h.trim_matches(['[', ']']).to_owned(), port),
                Err(_) => (rest.trim_matches(['[', ']']).to_owned(), 443),
            },
            _ => (rest.trim_matches(['[', ']']).to_owned(), 443),
        };
        if host.is_empty() || host.contains('/') {
            return Err("it is not https://HOST:PORT".into());
        }
        Ok(Self { url, host, port })
    }
}

/// `--broker`'s value parser, so that a bad address is a usage mistake.
pub fn parse_broker(s: &str) -> Result<String, String> {
    BrokerUrl::parse(s).map(|b| b.url)
}

impl Client {
    /// `url` is `https://HOST:PORT`; `ca_pem` the broker CA certificate.
    pub fn new(url: &str, ca_pem: &[u8], token: Option<String>) -> Result<Self, ClientError> {
        let BrokerUrl { url, host, port } = BrokerUrl::parse(url)
            .map_err(|e| ClientError::Setup(format!("bad --broker {url:?}: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                ClientError::Setup(format!("--ca-cert is not a PEM certificate: {e:?}"))
            })?;
        if certs.is_empty() {
            return Err(ClientError::Setup("--ca-cert holds no certificate".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| {
                ClientError::Setup(format!("--ca-cert is not a usable CA certificate: {e}"))
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            url,
            host,
            port,
            token,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one request and returns the status and body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.send_inner(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn send_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let connect_err = |reason: String| ClientError::Connect {
            url: self.url.clone(),
            reason,
        };
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| connect_err("timed out".into()))?
        .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.host.clone())
            .map_err(|_| ClientError::Setup(format!("{:?} is not a valid host name", self.host)))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| ClientError::Tls {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, format!("{}:{}", self.host, self.port))
            .header(
                http::header::USER_AGENT,
                concat!("lanyard/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header(http::header::CONTENT_TYPE, content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Sends a request and decodes a JSON answer, or the API's error.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.send(method, path, body).await?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => ClientError::Api {
                    status,
                    code: e.error.code,
                    message: e.error.message,
                    rows: e.error.rows,
                },
                Err(_) => ClientError::Protocol(format!("HTTP {status}")),
            });
        }
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"null")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("bad JSON: {e}")))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        json: &serde_json::Value,
    ) -> Result<T, ClientError> {
        self.call(
            Method::POST,
            path,
            Some(("application/json", json.to_string().into_bytes())),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::DELETE, path, None)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode("j.smith"), "j.smith");
        assert_eq!(encode("a/b c?%"), "a%2Fb%20c%3F%25");
    }

    #[test]
    fn refuses_plain_http() {
        let err = Client::new("http://x:1", b"", None).unwrap_err();
        assert!(err.to_string().contains("https://"));
    }

    #[test]
    fn broker_urls() {
        let b = BrokerUrl::parse("https://broker.example:8443/").unwrap();
        assert_eq!(
            (b.url.as_str(), b.host.as_str(), b.port),
            ("https://broker.example:8443", "broker.example", 8443)
        );
        assert_eq!(BrokerUrl::parse("https://[::1]:9").unwrap().host, "::1");
        assert_eq!(BrokerUrl::parse("https://h").unwrap().port, 443);
        assert!(BrokerUrl::parse("http://h:1")
            .unwrap_err()
            .contains("https://"));
        assert!(BrokerUrl::parse("https://")
            .unwrap_err()
            .contains("HOST:PORT"));
        assert!(BrokerUrl::parse("https://h/api").is_err());
    }
}
