//! The QUIC endpoint agents connect to (ALPN `lanyard/1`, TLS 1.3 with the
//! broker's CA-issued certificate). Laptops need only this one UDP port:
//! enrolment (no client certificate yet), sign-in, renewal and tunnels all
//! arrive here.
//!
//! A client certificate is optional at the TLS layer, so that a laptop
//! without one can enrol; anything else needs a device certificate issued
//! by the broker's CA, which rustls checks (chain, validity, client-auth
//! usage) before a byte of ours is read.

mod connection;
mod control;
mod device;
mod enrol;
mod signin;

use device::INITIAL_STREAMS;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::state::AppState;

/// Receive window per connection and per stream: with `limits.agents`
/// connections each filling its window, the total stays bounded
/// (10,000 agents x 1 MiB = 10 GiB at most, nothing when idle: quinn holds
/// only what has arrived and not been read). One stream may use the whole
/// connection's window: an upload through a stream limited to half of it
/// ran 12% slower on loopback (the tunnel bench), waiting for credit.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
pub const STREAM_WINDOW: u32 = CONNECTION_WINDOW;
/// Asked-for UDP socket buffers: a burst of connects must not drop
/// handshakes (the kernel's default of about 208 KiB overflows at 100).
pub const UDP_BUFFER: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot listen on UDP {addr} for agents (QUIC): {source}{hint}", hint = in_use_hint(source, "--quic-listen"))]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A hint for a bind that failed because the address is taken.
pub fn in_use_hint(e: &std::io::Error, flag: &str) -> String {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        format!("; is another broker running there? Stop it, or choose another address with {flag}")
    } else {
        String::new()
    }
}

/// Received datagrams held per connection (UDP apps), at most.
const DATAGRAM_BUFFER: usize = 256 * 1024;

/// Transport limits for agent connections; a connection silent for
/// `idle_timeout` (`[limits] quic_idle_timeout`) is closed.
pub fn transport(streams_per_agent: u32, idle_timeout: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(streams_per_agent.min(INITIAL_STREAMS).into())
        .max_concurrent_uni_streams(0u32.into())
        .receive_window(CONNECTION_WINDOW.into())
        .stream_receive_window(STREAM_WINDOW.into())
        .send_window(u64::from(CONNECTION_WINDOW))
        // UDP apps' datagrams; quinn holds this much at most per connection.
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        // The setting is checked to be at most 10 minutes: this cannot fail.
        .max_idle_timeout(Some(idle_timeout.try_into().expect("idle timeout fits")));
    t
}

/// The server side of the TLS handshake agents see.
pub fn server_config(
    certs: Arc<crate::tls::CertSlot>,
    ca: &CertificateDer<'static>,
    streams_per_agent: u32,
    idle_timeout: Duration,
) -> Result<quinn::ServerConfig, QuicError> {
    let tls = server_tls(certs, ca)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| QuicError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport(streams_per_agent, idle_timeout)));
    Ok(config)
}

/// The TLS 1.3 settings of the QUIC endpoint: the served certificate, a
/// client certificate asked for (enrolment comes without one) and checked
/// against the CA, and no session tickets. Every connection is a full
/// handshake with the device's certificate: a resumed one would skip it,
/// and with thousands of agents rustls's cache (256 sessions) would hold
/// almost none of their tickets anyway, while making and sending two per
/// handshake, each a copy of the client's certificate.
fn server_tls(
    certs: Arc<crate::tls::CertSlot>,
    ca: &CertificateDer<'static>,
) -> Result<rustls::ServerConfig, QuicError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| QuicError::Tls(e.to_string()))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| QuicError::Tls(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| QuicError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs);
    tls.alpn_protocols = vec![lanyard_proto::ALPN.to_vec()];
    tls.send_tls13_tickets = 0;
    Ok(tls)
}

/// Binds the endpoint's UDP socket, with big buffers; done first at start,
/// so that a port in use is found before anything is written.
pub fn bind_socket(addr: SocketAddr) -> Result<std::net::UdpSocket, QuicError> {
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|source| QuicError::Bind { addr, source })?;
    raise_buffers(&socket);
    Ok(socket)
}

/// The endpoint on a socket from [`bind_socket`]. `reset_key` keeps
/// stateless resets valid across restarts, so that after a crash agents
/// learn at their next packet that their connection is gone instead of
/// waiting out the idle timeout.
pub fn endpoint(
    socket: std::net::UdpSocket,
    config: quinn::ServerConfig,
    reset_key: &[u8],
) -> Result<quinn::Endpoint, QuicError> {
    let addr = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let bind_err = |source| QuicError::Bind { addr, source };
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_key);
    let cids = SignedCids::new(&hmac);
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(hmac));
    // quinn's default generator drops packets whose CIDs its per-process key
    // did not make, so a restarted broker would never answer an old
    // connection's packets with a reset. These CIDs are signed with a key
    // kept in the data dir, so a restarted broker knows its own.
    endpoint_config.cid_generator(move || Box::new(cids.clone()));
    // quinn sends at most one reset per 20 ms by default: after a restart
    // with 2,000 agents that is most of them waiting out the idle timeout.
    // Only packets with this broker's own CIDs earn a reset, so a flood of
    // made-up packets cannot turn the broker into a reflector.
    endpoint_config.min_reset_interval(MIN_RESET_INTERVAL);
    let socket = lanyard_relay::udp::wrap(socket).map_err(bind_err)?;
    quinn::Endpoint::new_with_abstract_socket(
        endpoint_config,
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(bind_err)
}

/// At most 5,000 stateless resets a second.
const MIN_RESET_INTERVAL: Duration = Duration::from_micros(200);

/// Connection IDs a broker with the same data dir recognises: eight random
/// bytes, then four bytes of an HMAC over them under a key derived from the
/// persistent reset key. An ID that does not verify is dropped unanswered.
#[derive(Clone)]
struct SignedCids {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for SignedCids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignedCids")
    }
}

impl SignedCids {
    const RANDOM: usize = 8;
    const TAG: usize = 4;

    fn new(reset_key: &ring::hmac::Key) -> Self {
        let derived = ring::hmac::sign(reset_key, b"lanyard quic connection ids");
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    fn tag(&self, random: &[u8]) -> [u8; Self::TAG] {
        let mac = ring::hmac::sign(&self.key, random);
        let mut tag = [0; Self::TAG];
        tag.copy_from_slice(&mac.as_ref()[..Self::TAG]);
        tag
    }
}

impl quinn::ConnectionIdGenerator for SignedCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut id = [0u8; Self::RANDOM + Self::TAG];
        id[..Self::RANDOM].copy_from_slice(&crate::secrets::random_bytes::<{ Self::RANDOM }>());
        let tag = self.tag(&id[..Self::RANDOM]);
        id[Self::RANDOM..].copy_from_slice(&tag);
        quinn::ConnectionId::new(&id)
    }

    fn validate(&self, cid: &quinn::ConnectionId) -> Result<(), quinn_proto::InvalidCid> {
        let (random, tag) = cid.split_at(Self::RANDOM.min(cid.len()));
        if cid.len() == Self::RANDOM + Self::TAG && tag == self.tag(random) {
            Ok(())
        } else {
            Err(quinn_proto::InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        Self::RANDOM + Self::TAG
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Asks for [`UDP_BUFFER`] each way; the kernel may give less
/// (`net.core.rmem_max`), which is logged.
pub fn raise_buffers(socket: &std::net::UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    let _ = sock.set_recv_buffer_size(UDP_BUFFER);
    let _ = sock.set_send_buffer_size(UDP_BUFFER);
    let got = sock.recv_buffer_size().unwrap_or(0);
    if got < UDP_BUFFER {
        tracing::info!(
            asked = UDP_BUFFER,
            got,
            "UDP receive buffer is smaller than asked; raise net.core.rmem_max for connect bursts"
        );
    }
}

/// Handshakes in flight at most: a flood of Initials cannot queue more key
/// exchanges than this on the runtime the tunnels share.
pub const MAX_HANDSHAKES: usize = 1024;
/// Past this many handshakes in flight, an address must prove itself with a
/// Retry round trip first (spoofed sources never answer it).
pub const RETRY_AT: usize = 64;
/// Connections without a device certificate (enrolments) at once: they have
/// a small pool of their own, so they never take an agent's place.
pub const MAX_ENROLMENTS: usize = 64;
/// Of those, at most this many from one source address (an address that
/// completed the handshake is a real one): one host cannot hold the pool.
pub const MAX_ENROLMENTS_PER_ADDRESS: usize = 8;

/// The places connections take: a handshake slot while the handshake runs,
/// then an agent slot (device certificate) or an enrolment slot (none).
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    pub handshakes: Arc<Semaphore>,
    pub agents: Arc<Semaphore>,
    pub enrolments: Arc<Semaphore>,
    pub enrolments_per_address: Arc<crate::per_address::PerAddress>,
}

impl Slots {
    fn in_flight(&self) -> usize {
        MAX_HANDSHAKES - self.handshakes.available_permits()
    }
}

/// Whether an incoming connection must answer a Retry before it is given a
/// handshake slot.
fn must_validate(validated: bool, in_flight: usize) -> bool {
    !validated && in_flight >= RETRY_AT
}

/// Accepts agent connections until shutdown: at most [`MAX_HANDSHAKES`]
/// handshaking, then `max_agents` agents and [`MAX_ENROLMENTS`] enrolments.
/// On shutdown, live sessions are told the broker is stopping.
pub async fn serve(
    endpoint: quinn::Endpoint,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let slots = Slots {
        handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
        agents: Arc::new(Semaphore::new(state.settings.max_agents)),
        enrolments: Arc::new(Semaphore::new(MAX_ENROLMENTS)),
        enrolments_per_address: Arc::new(crate::per_address::PerAddress::new(
            MAX_ENROLMENTS_PER_ADDRESS,
        )),
    };
    let mut tasks = JoinSet::new();
    let stop_rx = shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                if must_validate(incoming.remote_address_validated(), slots.in_flight())
                    && incoming.may_retry()
                {
                    state.metrics.quic_retries.fetch_add(1, Relaxed);
                    let _ = incoming.retry();
                    continue;
                }
                let Ok(handshake) = slots.handshakes.clone().try_acquire_owned() else {
                    state.metrics.quic_refused_capacity.fetch_add(1, Relaxed);
                    incoming.refuse();
                    continue;
                };
                let (state, stop, slots) = (state.clone(), stop_rx.clone(), slots.clone());
                tasks.spawn(connection::handle(incoming, state, stop, handshake, slots));
            }
        }
    }
    // Drain: connection tasks see the shutdown signal themselves. A new
    // connection meanwhile is refused at once (CONNECTION_REFUSED), so an
    // agent goes on to its backoff instead of waiting out its connect
    // timeout.
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            Some(incoming) = endpoint.accept() => incoming.refuse(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{must_validate, server_tls, SignedCids, RETRY_AT};

    #[test]
    fn addresses_prove_themselves_only_when_handshakes_pile_up() {
        assert!(!must_validate(false, 0));
        assert!(!must_validate(false, RETRY_AT - 1));
        assert!(must_validate(false, RETRY_AT));
        assert!(!must_validate(true, RETRY_AT * 10), "validated by a Retry");
    }
    use quinn::ConnectionIdGenerator;

    fn key(byte: u8) -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[byte; 32])
    }

    #[test]
    fn connection_ids_are_known_again_with_the_same_key_only() {
        let mut before = SignedCids::new(&key(1));
        let after_restart = SignedCids::new(&key(1));
        let other = SignedCids::new(&key(2));
        let id = before.generate_cid();
        assert_eq!(id.len(), before.cid_len());
        assert!(after_restart.validate(&id).is_ok());
        assert!(other.validate(&id).is_err());
        assert_ne!(before.generate_cid(), id, "random each time");
        // A flipped bit anywhere, a shorter or a made-up ID: not ours.
        for i in 0..id.len() {
            let mut bytes = id.to_vec();
            bytes[i] ^= 1;
            assert!(after_restart
                .validate(&quinn::ConnectionId::new(&bytes))
                .is_err());
        }
        assert!(after_restart
            .validate(&quinn::ConnectionId::new(&id[..8]))
            .is_err());
        assert!(after_restart
            .validate(&quinn::ConnectionId::new(&[0; 12]))
            .is_err());
        assert!(after_restart
            .validate(&quinn::ConnectionId::new(&[]))
            .is_err());
    }

    /// Counts the sessions rustls would keep for resumption.
    #[derive(Debug, Default)]
    struct Kept(std::sync::atomic::AtomicUsize);

    impl rustls::server::StoresServerSessions for Kept {
        fn put(&self, _key: Vec<u8>, _value: Vec<u8>) -> bool {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            true
        }
        fn get(&self, _key: &[u8]) -> Option<Vec<u8>> {
            None
        }
        fn take(&self, _key: &[u8]) -> Option<Vec<u8>> {
            None
        }
        fn can_cache(&self) -> bool {
            true
        }
    }

    /// Hands what `from` has to send to `to`, which reads it.
    fn deliver(from: &mut rustls::Connection, to: &mut rustls::Connection) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).expect("write");
        }
        let mut input = &wire[..];
        while !input.is_empty() {
            to.read_tls(&mut input).expect("read");
        }
        to.process_new_packets().expect("handshake");
    }

    #[test]
    fn a_handshake_leaves_no_session_ticket_behind() {
        use std::sync::Arc;
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = crate::datadir::DataDir::open(tmp.path()).expect("data dir");
        let ca = crate::auth::ca::Ca::load_or_create(&dir).expect("ca");
        let certs =
            crate::tls::ServerCerts::new(&ca, vec![], std::time::Duration::from_secs(3600), None)
                .expect("server certificate");
        let mut server = server_tls(certs.quic(), ca.cert_der()).expect("server config");
        let kept = Arc::new(Kept::default());
        server.session_storage = kept.clone();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).expect("ca root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let mut c = rustls::Connection::from(
            rustls::ClientConnection::new(Arc::new(client), name).expect("client"),
        );
        let mut s = rustls::Connection::from(
            rustls::ServerConnection::new(Arc::new(server)).expect("server"),
        );
        // Both ends' flights, in memory, until neither has more to say.
        for _ in 0..10 {
            deliver(&mut c, &mut s);
            deliver(&mut s, &mut c);
        }
        assert!(!c.is_handshaking() && !s.is_handshaking(), "handshake done");
        assert_eq!(
            kept.0.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "the server made session tickets"
        );
    }
}
