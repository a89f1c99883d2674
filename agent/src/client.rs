//! Reaching the broker: the QUIC endpoint, the TLS configurations (pinned
//! to the CA fingerprint from the enrolment code before enrolment, and
//! mutual TLS with the device certificate after), and one-shot requests
//! (enrol, sign in, refresh, renew), each on a stream of its own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lanyard_proto::{ErrorCode, Message};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::identity::{sha256, Device};
use lanyard_relay::{read_frame, write_frame, FramedError};

/// Time allowed for the QUIC and TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the handshake with one broker node while others are
/// left to try: a dead node is passed over within this.
pub const FAILOVER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for the broker to answer a request.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The agent keeps its connection alive at this interval, well inside the
/// broker's 30 s idle timeout (and it surfaces a restarted broker's
/// stateless reset within this time).
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad broker address {0:?}: use HOST:PORT")]
    Address(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("cannot reach the broker at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("cannot reach the broker at {0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("the broker refused: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("the broker answered with an unexpected message")]
    Unexpected,
    #[error("lost the broker: {0}")]
    Wire(#[from] FramedError),
    #[error("lost the broker: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The broker closed the connection with a code and a reason.
    #[error("the broker closed the connection: {reason}")]
    Closed { code: u32, reason: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client transport: keepalives, idle timeout, generous receive
/// windows (the agent has one connection).
pub fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE))
        .max_concurrent_uni_streams(0u32.into())
        .max_concurrent_bidi_streams(0u32.into())
        .receive_window((16u32 * 1024 * 1024).into())
        .stream_receive_window((4u32 * 1024 * 1024).into())
        .send_window(16 * 1024 * 1024)
        .datagram_receive_buffer_size(Some(1024 * 1024))
        .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("idle timeout fits")));
    t
}

/// A client endpoint on an ephemeral UDP port, with raised socket buffers.
pub fn endpoint(broker: SocketAddr) -> Result<quinn::Endpoint, ClientError> {
    let bind: SocketAddr = if broker.is_ipv6() {
        "[::]:0".parse().expect("literal address")
    } else {
        "0.0.0.0:0".parse().expect("literal address")
    };
    let socket = std::net::UdpSocket::bind(bind).map_err(ClientError::Socket)?;
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_recv_buffer_size(4 * 1024 * 1024);
    let _ = sock.set_send_buffer_size(4 * 1024 * 1024);
    let socket = lanyard_relay::udp::wrap(socket).map_err(ClientError::Socket)?;
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(ClientError::Socket)
}

/// Splits `host:port` and resolves it.
pub async fn resolve(broker: &str) -> Result<(SocketAddr, String), ClientError> {
    let (host, port) = broker
        .rsplit_once(':')
        .ok_or_else(|| ClientError::Address(broker.into()))?;
    let host = host.trim_matches(['[', ']']).to_owned();
    port.parse::<u16>()
        .map_err(|_| ClientError::Address(broker.into()))?;
    let addr = tokio::net::lookup_host(broker)
        .await
        .map_err(|_| ClientError::Resolve(broker.into()))?
        .next()
        .ok_or_else(|| ClientError::Resolve(broker.into()))?;
    Ok((addr, host))
}

fn client_config(mut tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, ClientError> {
    // The broker sends no session tickets (every connection is a full
    // handshake with the device's certificate): no cache for them.
    tls.resumption = rustls::client::Resumption::disabled();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

/// Trusts a server chain only if it carries the CA whose SHA-256 is
/// `fingerprint` and the server certificate verifies under that CA. The CA
/// found is kept, to be saved as the device's trust anchor.
#[derive(Debug)]
pub struct PinnedCa {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
    found: Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedCa {
    pub fn new(fingerprint: [u8; 32]) -> Arc<Self> {
        Arc::new(Self {
            fingerprint,
            provider: provider(),
            found: Mutex::new(None),
        })
    }

    /// The CA certificate, once a handshake has verified it.
    pub fn ca(&self) -> Option<CertificateDer<'static>> {
        self.found.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| sha256(c) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the broker's CA does not match the fingerprint in the enrolment code".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        *self.found.lock().unwrap_or_else(|p| p.into_inner()) = Some(ca.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Before enrolment: no client certificate, the broker pinned by its CA.
pub fn enrolment_config(pin: Arc<PinnedCa>) -> Result<quinn::ClientConfig, ClientError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(pin)
        .with_no_client_auth();
    tls.alpn_protocols = vec![lanyard_proto::ALPN.to_vec()];
    client_config(tls)
}

/// After enrolment: the broker's CA as the only root, the device
/// certificate as the client's.
pub fn device_config(device: &Device) -> Result<quinn::ClientConfig, ClientError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(device.ca.clone())
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![device.cert.clone()], device.key_der())
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![lanyard_proto::ALPN.to_vec()];
    client_config(tls)
}

/// Connects within [`CONNECT_TIMEOUT`].
pub async fn connect(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
) -> Result<quinn::Connection, ClientError> {
    connect_within(endpoint, config, addr, server_name, CONNECT_TIMEOUT).await
}

/// Connects to the first of `addrs` (`host:port`, in the order given) whose
/// handshake completes: each but the last within
/// [`FAILOVER_CONNECT_TIMEOUT`], the last within [`CONNECT_TIMEOUT`]. Over
/// `endpoint` if given, else over a new endpoint per address. Returns the
/// endpoint, the connection and the address it reached; with every address
/// failing, the last failure.
pub async fn connect_first(
    endpoint: Option<&quinn::Endpoint>,
    config: &quinn::ClientConfig,
    addrs: &[String],
) -> Result<(quinn::Endpoint, quinn::Connection, String), ClientError> {
    let mut last = ClientError::Address(String::new());
    for (i, broker) in addrs.iter().enumerate() {
        let within = if i + 1 < addrs.len() {
            FAILOVER_CONNECT_TIMEOUT
        } else {
            CONNECT_TIMEOUT
        };
        let attempt = async {
            let (addr, host) = resolve(broker).await?;
            let endpoint = match endpoint {
                Some(e) => e.clone(),
                None => self::endpoint(addr)?,
            };
            let conn = connect_within(&endpoint, config.clone(), addr, &host, within).await?;
            Ok::<_, ClientError>((endpoint, conn))
        };
        match attempt.await {
            Ok((endpoint, conn)) => return Ok((endpoint, conn, broker.clone())),
            Err(e) => {
                tracing::debug!(broker = %broker, error = %e, "broker node not reached; trying the next");
                last = e;
            }
        }
    }
    Err(last)
}

async fn connect_within(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
    within: Duration,
) -> Result<quinn::Connection, ClientError> {
    let connecting = endpoint
        .connect_with(config, addr, server_name)
        .map_err(|e| ClientError::Connect {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    match tokio::time::timeout(within, connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(ClientError::Connect {
            addr: addr.to_string(),
            reason: e.to_string(),
        }),
        Err(_) => Err(ClientError::Timeout(addr.to_string(), within)),
    }
}

/// Sends one request on a stream of its own and reads the one answer.
/// A `Refused` answer becomes [`ClientError::Refused`]; a connection the
/// broker closed before answering, [`ClientError::Closed`] with its reason.
pub async fn request(conn: &quinn::Connection, msg: &Message) -> Result<Message, ClientError> {
    request_within(conn, msg, ANSWER_TIMEOUT).await
}

/// As [`request`], waiting up to `within` for the answer (a device code
/// sign-in waits for the person).
pub async fn request_within(
    conn: &quinn::Connection,
    msg: &Message,
    within: Duration,
) -> Result<Message, ClientError> {
    let answer = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        write_frame(&mut send, msg).await?;
        let _ = send.finish();
        Ok::<_, ClientError>(read_frame(&mut recv, within).await?)
    };
    match (answer.await, conn.close_reason()) {
        (Ok(Message::Refused { code, message }), _) => Err(ClientError::Refused { code, message }),
        (Ok(other), _) => Ok(other),
        // Closed by the broker before it answered: say what it said.
        (Err(_), Some(quinn::ConnectionError::ApplicationClosed(c))) => Err(ClientError::Closed {
            code: c.error_code.into_inner() as u32,
            reason: String::from_utf8_lossy(&c.reason).into_owned(),
        }),
        (Err(e), _) => Err(e),
    }
}
