//! Enrolment over QUIC (a connection with no client certificate) and
//! certificate renewal (over a device's own connection).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use data_encoding::BASE64;
use lanyard_proto::enrol::SECRET_LEN;
use lanyard_proto::{close, ErrorCode, KeyAlg, Message};
use lanyard_relay::{read_frame, write_frame};

use super::device::{DeviceConn, FIRST_FRAME_TIMEOUT, STORE_UNAVAILABLE};
use crate::auth::device::DevicePublicKey;
use crate::clock::now_ms;
use crate::state::AppState;
use crate::store::devices::NewDevice;
use crate::store::enrol::{ConsumeError, EnrolFor};
use crate::store::StoreError;

/// Serves a connection without a client certificate: one enrolment, then
/// the agent closes (or is closed after a few seconds).
pub(super) async fn serve(conn: quinn::Connection, state: AppState) {
    let accepted = tokio::time::timeout(FIRST_FRAME_TIMEOUT, conn.accept_bi()).await;
    let Ok(Ok((mut send, mut recv))) = accepted else {
        conn.close(close::PROTOCOL.into(), b"no enrolment request");
        return;
    };
    let from = conn.remote_address().ip();
    let reply = match read_frame(&mut recv, FIRST_FRAME_TIMEOUT).await {
        // An address that keeps failing waits, before any work is done.
        Ok(_) if state.throttle.enrolments_locked(from, now_ms()) => Message::refused(
            ErrorCode::Unavailable,
            "too many failed enrolments from this address; wait a minute and try again",
        ),
        Ok(Message::EnrolRequest {
            secret,
            key_alg,
            public_key,
            proof,
            agent_version,
            os,
        }) => {
            let enrolled = enrol(
                &state,
                &secret,
                key_alg,
                &public_key,
                &proof,
                &agent_version,
                &os,
            );
            // The store's link may have gone silent: answer all the same.
            match tokio::time::timeout(crate::store::ANSWER_WITHIN, enrolled).await {
                Ok(reply) => reply,
                Err(_) => {
                    tracing::warn!("an enrolment waited too long on the store");
                    Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE)
                }
            }
        }
        Ok(_) => Message::refused(
            ErrorCode::Unauthorized,
            "no device certificate was presented: only enrolment is possible; run `lanyard-agent enroll CODE`",
        ),
        Err(e) => Message::refused(ErrorCode::BadRequest, format!("bad enrolment request: {e}")),
    };
    match &reply {
        Message::Certificate { .. } => {
            state.metrics.enrolments.fetch_add(1, Relaxed);
        }
        Message::Refused { message, .. } => {
            state.metrics.enrolment_failures.fetch_add(1, Relaxed);
            // Counted against the address (guessing), and audited in
            // aggregate: a caller with no good code proved nothing. Losing
            // a race for a good code is no guess.
            let now = now_ms();
            if *message != ConsumeError::Used.to_string() {
                state.throttle.enrolment_failed(from, now);
            }
            state.failures.note(
                Some(from),
                "enrol_code.consume",
                "enrolment refused",
                message,
                now,
            );
        }
        _ => {}
    }
    let _ = write_frame(&mut send, &reply).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
}

async fn enrol(
    state: &AppState,
    secret: &[u8; SECRET_LEN],
    key_alg: KeyAlg,
    public_key: &[u8],
    proof: &[u8],
    agent_version: &str,
    os: &str,
) -> Message {
    let key = match DevicePublicKey::parse(key_alg, public_key) {
        Ok(k) => k,
        Err(e) => return Message::refused(ErrorCode::BadRequest, e.to_string()),
    };
    // The proof is checked before the code is used, so a bad request
    // cannot burn a good code.
    if let Err(e) = key.verify_proof(secret, proof) {
        return Message::refused(ErrorCode::BadRequest, e.to_string());
    }
    let fingerprint = crate::secrets::sha256_hex(&key.spki_der());
    let mut issued = None;
    let result = state
        .store
        .enrol_code_consume_with(&crate::secrets::hash_secret(secret), now_ms(), |what| {
            let (label, asset_tag, owner) = match what {
                EnrolFor::Laptop(tag) => (tag.to_string(), Some(tag.to_string()), None),
                EnrolFor::Personal(user) => {
                    (format!("personal:{user}"), None, Some(user.to_string()))
                }
            };
            let (cert, expires_at) =
                match state
                    .ca
                    .issue_device_cert(&key, &label, state.live().device_cert_ttl)
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot issue a device certificate");
                        return None;
                    }
                };
            issued = Some((cert, expires_at));
            Some(NewDevice {
                fingerprint: fingerprint.clone(),
                kind: what.kind(),
                asset_tag,
                owner,
                public_key: BASE64.encode(key.raw()),
                cert_expires_at: expires_at,
                agent_version: agent_version.chars().take(64).collect(),
                os: os.chars().take(64).collect(),
            })
        })
        .await;
    match (result, issued) {
        (Ok(consumed), Some((cert, expires_at))) => {
            tracing::info!(code_id = %consumed.id, device = %fingerprint, "device enrolled");
            Message::Certificate {
                certificate: cert.to_vec(),
                expires_at: (expires_at / 1000) as u64,
            }
        }
        (Ok(_), None) => Message::refused(
            ErrorCode::Internal,
            "the broker could not issue a certificate; ask ICT for a new code",
        ),
        (Err(ConsumeError::Store(StoreError::Conflict(m))), _) => {
            Message::refused(ErrorCode::BadRequest, m)
        }
        (Err(ConsumeError::Store(e)), _) => {
            tracing::warn!(error = %e, "enrolment failed in the store");
            Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE)
        }
        (Err(ConsumeError::Refused(why)), _) => Message::refused(ErrorCode::Forbidden, why),
        (Err(e), _) => Message::refused(ErrorCode::Unauthorized, e.to_string()),
    }
}

/// Issues a fresh certificate for the device on this connection.
pub(super) async fn renew(ctx: &DeviceConn) -> Message {
    let state = &ctx.state;
    let key = match BASE64
        .decode(ctx.device.public_key.as_bytes())
        .ok()
        .and_then(|raw| DevicePublicKey::parse(KeyAlg::EcdsaP256, &raw).ok())
    {
        Some(k) => k,
        None => {
            return Message::refused(
                ErrorCode::BadRequest,
                "this device was enrolled without a renewable key; enrol it again",
            )
        }
    };
    let (cert, expires_at) =
        match state
            .ca
            .issue_device_cert(&key, &ctx.device.label(), state.live().device_cert_ttl)
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot issue a device certificate");
                return Message::refused(ErrorCode::Internal, "cannot issue a certificate now");
            }
        };
    match state
        .store
        .device_renew(&ctx.device.fingerprint, expires_at, now_ms())
        .await
    {
        Ok(()) => {
            // The session on this connection may run on to the new end:
            // the certificate is for the key this connection proved.
            if let Some(session) = ctx.session.get() {
                session.cert_expires_at.store(expires_at, Relaxed);
            }
            Message::Certificate {
                certificate: cert.to_vec(),
                expires_at: (expires_at / 1000) as u64,
            }
        }
        Err(StoreError::NotFound(m)) => Message::refused(ErrorCode::Revoked, m),
        Err(e) => {
            tracing::warn!(error = %e, "renewal failed in the store");
            Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE)
        }
    }
}
