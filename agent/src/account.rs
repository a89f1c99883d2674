//! The one-shot exchanges with the broker: enrol this device, sign a person
//! in, refresh the tokens, sign out, renew the certificate.

use std::time::Duration;

use lanyard_proto::reconnect::Addresses;
use lanyard_proto::{close, EnrolmentCode, KeyAlg, Message};

use crate::backoff::Backoff;
use crate::client::{self, ClientError, PinnedCa};
use crate::identity::{self, now_secs, Device, Enrolment, IdentityError, Tokens};
use crate::state::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("this device is already enrolled with {0}; to enrol it again, use a fresh --state-dir or remove the state dir first")]
    AlreadyEnrolled(String),
    #[error("the broker did not show its CA during the handshake")]
    NoCa,
}

/// What an enrolment produced.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub broker: String,
    pub cert_expires_at: u64,
}

pub fn agent_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

pub fn os_name() -> String {
    std::env::consts::OS.to_owned()
}

/// Enrols this device: makes its key pair here, proves it holds the key,
/// and stores the certificate the broker issues. Nothing is written unless
/// the broker accepts.
pub async fn enrol(state: &StateDir, code: &EnrolmentCode) -> Result<Enrolled, AccountError> {
    if let Some(e) = state.enrolment()? {
        return Err(AccountError::AlreadyEnrolled(e.broker));
    }
    let (device, endpoint) = enrol_first(None, code).await?;
    endpoint.wait_idle().await;
    state.save_key(device.key.secret_pkcs8_der())?;
    state.save_cert(identity::CERT_FILE, &device.cert)?;
    state.save_cert(identity::CA_FILE, &device.ca)?;
    state.save_enrolment(&device.enrolment)?;
    let mut addrs = Addresses::new(code.broker_addrs.clone(), None);
    addrs.worked(&device.enrolment.broker);
    state.save_addresses(&addrs)?;
    Ok(Enrolled {
        broker: device.enrolment.broker.clone(),
        cert_expires_at: device.enrolment.cert_expires_at,
    })
}

/// How long an enrolment keeps asking while the broker says it is busy
/// (too many enrolments at once from this address, or in all).
const BUSY_PATIENCE: Duration = Duration::from_secs(60);

/// Enrols a device over `endpoint` and returns it without writing
/// anything (the stress tester keeps its simulated devices in memory).
/// A broker too busy for another enrolment is asked again after a short,
/// growing, random wait.
pub async fn enrol_on(
    endpoint: &quinn::Endpoint,
    code: &EnrolmentCode,
) -> Result<Device, AccountError> {
    Ok(enrol_first(Some(endpoint), code).await?.0)
}

/// Enrols over the first of the code's addresses that answers (the node
/// that made the code first); the device's enrolment names that address.
/// A broker too busy for another enrolment is asked again after a short,
/// growing, random wait.
async fn enrol_first(
    endpoint: Option<&quinn::Endpoint>,
    code: &EnrolmentCode,
) -> Result<(Device, quinn::Endpoint), AccountError> {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
    let until = tokio::time::Instant::now() + BUSY_PATIENCE;
    loop {
        match enrol_once(endpoint, code).await {
            Err(AccountError::Client(ClientError::Closed { code: c, .. }))
                if c == close::AT_CAPACITY && tokio::time::Instant::now() < until =>
            {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            done => return done,
        }
    }
}

async fn enrol_once(
    endpoint: Option<&quinn::Endpoint>,
    code: &EnrolmentCode,
) -> Result<(Device, quinn::Endpoint), AccountError> {
    let (pkcs8, public_key) = identity::generate_key()?;
    let proof = identity::prove(&pkcs8, &code.secret, &public_key)?;
    let pin = PinnedCa::new(code.ca_fingerprint);
    let config = client::enrolment_config(pin.clone())?;
    let (endpoint, conn, broker) =
        client::connect_first(endpoint, &config, &code.broker_addrs).await?;
    let answer = client::request(
        &conn,
        &Message::EnrolRequest {
            secret: code.secret,
            key_alg: KeyAlg::EcdsaP256,
            public_key,
            proof,
            agent_version: agent_version(),
            os: os_name(),
        },
    )
    .await;
    conn.close(0u32.into(), b"enrolled");
    let Message::Certificate {
        certificate,
        expires_at,
    } = answer?
    else {
        return Err(ClientError::Unexpected.into());
    };
    let ca = pin.ca().ok_or(AccountError::NoCa)?;
    let now = now_secs();
    let device = Device {
        enrolment: Enrolment {
            broker,
            ca_fingerprint: data_encoding::HEXLOWER.encode(&code.ca_fingerprint),
            enrolled_at: now,
            cert_issued_at: now,
            cert_expires_at: expires_at,
        },
        key: rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8),
        cert: rustls_pki_types::CertificateDer::from(certificate),
        ca,
    };
    Ok((device, endpoint))
}

/// A mutual-TLS connection as `device` over an existing endpoint, to the
/// first of `addrs` that answers; and the address it reached.
pub async fn connect_on(
    endpoint: &quinn::Endpoint,
    device: &Device,
    addrs: &[String],
) -> Result<(quinn::Connection, String), AccountError> {
    let config = client::device_config(device)?;
    let (_, conn, addr) = client::connect_first(Some(endpoint), &config, addrs).await?;
    Ok((conn, addr))
}

/// A mutual-TLS connection as this device to the broker it enrolled with.
pub async fn connect(
    device: &Device,
) -> Result<(quinn::Endpoint, quinn::Connection), AccountError> {
    let (endpoint, conn, _) =
        connect_any(device, std::slice::from_ref(&device.enrolment.broker)).await?;
    Ok((endpoint, conn))
}

/// A mutual-TLS connection as this device to the first of `addrs` that
/// answers (see [`Addresses::order`]); and the address it reached.
pub async fn connect_any(
    device: &Device,
    addrs: &[String],
) -> Result<(quinn::Endpoint, quinn::Connection, String), AccountError> {
    let config = client::device_config(device)?;
    Ok(client::connect_first(None, &config, addrs).await?)
}

/// A connection for one sign-in: the broker node that worked last first,
/// the others from this process's starting point; the node that answered
/// is remembered for next time.
pub async fn connect_for_sign_in(
    state: &StateDir,
    device: &Device,
) -> Result<(quinn::Endpoint, quinn::Connection), AccountError> {
    let mut addrs = state.addresses(&device.enrolment)?;
    let (endpoint, conn, addr) = connect_any(device, &addrs.order(spread())).await?;
    if addrs.worked(&addr) {
        state.save_addresses(&addrs)?;
    }
    Ok((endpoint, conn))
}

/// Ends a sign-in's connection; when the sign-in worked, the record of why
/// an earlier one was ended goes.
pub async fn after_sign_in<E>(
    state: &StateDir,
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    signed: Result<Tokens, E>,
) -> Result<Tokens, E> {
    conn.close(0u32.into(), b"signed in");
    endpoint.wait_idle().await;
    let tokens = signed?;
    let _ = state.remove(crate::up::ENDED_FILE);
    Ok(tokens)
}

/// Where this agent process starts among the other broker nodes when it
/// leaves one (see [`Addresses::order`]): drawn once, so that the agents of
/// a lost node spread over the rest.
pub fn spread() -> usize {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b) as usize
}

pub(crate) fn store_tokens(
    state: &StateDir,
    device: &Device,
    username: String,
    answer: Message,
) -> Result<Tokens, AccountError> {
    let Message::Tokens {
        access_token,
        refresh_token,
        expires_in,
    } = answer
    else {
        return Err(ClientError::Unexpected.into());
    };
    let now = now_secs();
    let tokens = Tokens {
        username,
        access_token,
        refresh_token,
        issued_at: now,
        expires_at: now + u64::from(expires_in),
        cert_thumbprint: device.thumbprint_hex(),
    };
    state.save_tokens(&tokens)?;
    Ok(tokens)
}

/// Signs `username` in on this device over `conn`.
pub async fn sign_in(
    state: &StateDir,
    device: &Device,
    conn: &quinn::Connection,
    username: &str,
    password: String,
    totp: Option<String>,
) -> Result<Tokens, AccountError> {
    let answer = client::request(
        conn,
        &Message::SignIn {
            username: username.to_owned(),
            password,
            totp,
        },
    )
    .await?;
    store_tokens(state, device, username.trim().to_ascii_lowercase(), answer)
}

/// Exchanges the refresh token for new tokens (bound to the certificate
/// this connection presents).
pub async fn refresh(
    state: &StateDir,
    device: &Device,
    conn: &quinn::Connection,
    tokens: &Tokens,
) -> Result<Tokens, AccountError> {
    let answer = client::request(
        conn,
        &Message::Refresh {
            refresh_token: tokens.refresh_token.clone(),
        },
    )
    .await?;
    store_tokens(state, device, tokens.username.clone(), answer)
}

/// Ends the sign-in behind `tokens` at the broker: its refresh family is
/// revoked and its live session closes. Writes nothing here.
pub async fn sign_out(conn: &quinn::Connection, tokens: &Tokens) -> Result<(), AccountError> {
    match client::request(
        conn,
        &Message::SignOut {
            refresh_token: tokens.refresh_token.clone(),
        },
    )
    .await?
    {
        Message::SignedOut => Ok(()),
        _ => Err(ClientError::Unexpected.into()),
    }
}

/// Gets a fresh certificate for this device's key and stores it. The new
/// certificate is used from the next connection on.
pub async fn renew(
    state: &StateDir,
    device: &Device,
    conn: &quinn::Connection,
) -> Result<Device, AccountError> {
    let Message::Certificate {
        certificate,
        expires_at,
    } = client::request(conn, &Message::Renew).await?
    else {
        return Err(ClientError::Unexpected.into());
    };
    state.save_cert(identity::CERT_FILE, &certificate)?;
    let mut enrolment = device.enrolment.clone();
    enrolment.cert_issued_at = now_secs();
    enrolment.cert_expires_at = expires_at;
    state.save_enrolment(&enrolment)?;
    Ok(state.device()?)
}
