//! One simulated agent: the agent library's enrolment, sign-in, session
//! and tunnel streams, timed, every echoed byte checked.

use std::time::{Duration, Instant};

use lanyard_agent::account;
use lanyard_agent::backoff::Backoff;
use lanyard_agent::client;
use lanyard_proto::reconnect::{Addresses, Ending, Next, Redial};
use lanyard_proto::session::{AgentControl, AgentEvent, Lifetimes, Millis};
use lanyard_proto::stream::StreamOpener;
use lanyard_proto::{EnrolmentCode, Message};
use lanyard_relay::read_frame;

/// What one simulated agent is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub code: EnrolmentCode,
    pub username: String,
    pub password: String,
    pub app: String,
    pub streams: u32,
    pub bytes_per_stream: u64,
    /// Checked streams a minute while it stays connected (0: none).
    pub streams_per_minute: u32,
    /// Stay connected until then.
    pub hold_until: Instant,
}

/// What it saw. Times are from the start of the run.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Connected at (since the run began), and how long it took.
    pub connected: Option<(Duration, Duration)>,
    /// Of that: the QUIC handshake, the sign-in (a password check; none
    /// when the agent held one), and the session's hello until welcome.
    pub handshake: Option<Duration>,
    pub sign_in: Option<Duration>,
    pub session: Option<Duration>,
    pub disconnected_at: Option<Duration>,
    /// Each time the connection was lost while it should have stayed up:
    /// when, and when the agent was back (None: it never came back).
    pub drops: Vec<(Duration, Option<Duration>)>,
    /// (when it started, when it finished, how long it took to open) per
    /// stream.
    pub streams_ok: Vec<(Duration, Duration, Duration)>,
    pub streams_failed: u64,
    pub bytes_verified: u64,
    /// Kind of each error, with when it happened.
    pub errors: Vec<(Duration, String)>,
}

fn kind(stage: &str, e: impl std::fmt::Display) -> String {
    let e = e.to_string();
    let short: String = e.chars().take(60).collect();
    format!("{stage}: {short}")
}

/// One checked stream, recorded in `out`.
async fn checked_stream(
    conn: &quinn::Connection,
    app: &str,
    data: &[u8],
    epoch: Instant,
    live: &super::Live,
    out: &mut Outcome,
) {
    let started = epoch.elapsed();
    match stream(conn, app, data).await {
        Ok(opened) => {
            out.streams_ok.push((started, epoch.elapsed(), opened));
            out.bytes_verified += data.len() as u64;
            live.bytes
                .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => {
            out.streams_failed += 1;
            out.errors.push((epoch.elapsed(), e));
        }
    }
}

/// Where in each period of the steady workload agent `id` opens its
/// stream, as a share of the period: spread evenly however many agents
/// there are (the golden-ratio sequence).
fn phase(id: u64) -> f64 {
    (id as f64 * 0.618_033_988_749_895).fract()
}

/// The next stream of the steady workload after `next`, skipping any whose
/// time has passed (a slow stream or a redial does not cause a burst).
fn due_after(
    next: Option<tokio::time::Instant>,
    period: Option<Duration>,
) -> Option<tokio::time::Instant> {
    let (mut next, period) = (next?, period?);
    let now = tokio::time::Instant::now();
    while next <= now {
        next += period;
    }
    Some(next)
}

/// A repeatable pattern, different per stream.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A simulated agent enrolled and signed in before the clock starts
/// (`--signed-in`): what staff whose agent already holds a sign-in have.
pub struct Prepared {
    device: lanyard_agent::identity::Device,
    access: String,
}

/// Enrols a device and signs in on it, untimed; the connection used is
/// closed again (no session was opened on it).
pub async fn prepare(endpoint: &quinn::Endpoint, plan: &Plan) -> Result<Prepared, String> {
    let device = account::enrol_on(endpoint, &plan.code)
        .await
        .map_err(|e| kind("enrol", e))?;
    let addrs = Addresses::new(
        plan.code.broker_addrs.clone(),
        Some(device.enrolment.broker.clone()),
    );
    let (conn, _) = account::connect_on(endpoint, &device, &addrs.order(0))
        .await
        .map_err(|e| kind("connect", e))?;
    let access = sign_in(&conn, plan).await;
    conn.close(0u32.into(), b"signed in");
    Ok(Prepared {
        device,
        access: access?,
    })
}

/// A password sign-in on `conn`: the access token.
async fn sign_in(conn: &quinn::Connection, plan: &Plan) -> Result<String, String> {
    match client::request(
        conn,
        &Message::SignIn {
            username: plan.username.clone(),
            password: plan.password.clone(),
            totp: None,
        },
    )
    .await
    {
        Ok(Message::Tokens { access_token, .. }) => Ok(access_token),
        Ok(_) => Err("sign-in: unexpected answer".into()),
        Err(e) => Err(kind("sign-in", e)),
    }
}

/// One simulated agent's run: enrol and sign in (unless `prepared`, when it
/// only connects and opens its session with the sign-in it holds), streams,
/// then hold.
pub async fn run(
    endpoint: quinn::Endpoint,
    plan: Plan,
    prepared: Option<Prepared>,
    epoch: Instant,
    id: u64,
    live: &super::Live,
) -> Outcome {
    let mut out = Outcome::default();
    let (device, held) = match prepared {
        Some(p) => (p.device, Some(p.access)),
        None => match account::enrol_on(&endpoint, &plan.code).await {
            Ok(d) => (d, None),
            Err(e) => {
                out.errors.push((epoch.elapsed(), kind("enrol", e)));
                return out;
            }
        },
    };
    let start = Instant::now();
    // As the agent does: the node it enrolled through first.
    let mut addrs = Addresses::new(
        plan.code.broker_addrs.clone(),
        Some(device.enrolment.broker.clone()),
    );
    let conn = match account::connect_on(&endpoint, &device, &addrs.order(id as usize)).await {
        Ok((c, addr)) => {
            addrs.worked(&addr);
            c
        }
        Err(e) => {
            out.errors.push((epoch.elapsed(), kind("connect", e)));
            return out;
        }
    };
    out.handshake = Some(start.elapsed());
    let access = match held {
        Some(access) => access,
        None => {
            let signing_in = Instant::now();
            let signed = sign_in(&conn, &plan).await;
            out.sign_in = Some(signing_in.elapsed());
            match signed {
                Ok(access) => access,
                Err(e) => {
                    out.errors.push((epoch.elapsed(), e));
                    return out;
                }
            }
        }
    };
    let opening = Instant::now();
    let control = match open_session(&conn, &access).await {
        Ok(c) => c,
        Err(e) => {
            out.errors.push((epoch.elapsed(), e));
            return out;
        }
    };
    out.session = Some(opening.elapsed());
    out.connected = Some((epoch.elapsed(), start.elapsed()));
    live.connected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    for k in 0..plan.streams {
        let data = pattern(id * 1_000 + u64::from(k), plan.bytes_per_stream as usize);
        checked_stream(&conn, &plan.app, &data, epoch, live, &mut out).await;
    }
    hold(
        &endpoint, &device, &access, conn, control, &plan, epoch, id, live, &mut out, addrs,
    )
    .await;
    out.disconnected_at = Some(epoch.elapsed());
    out
}

type Control = (quinn::SendStream, quinn::RecvStream);

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// How long a stream's answer may take.
const STREAM_ANSWER_MS: Millis = 30_000;

/// Opens the control stream and waits for the broker's welcome.
async fn open_session(conn: &quinn::Connection, access: &str) -> Result<Control, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| kind("session", e))?;
    // A simulated agent neither refreshes nor renews within a run: only
    // the hello's answer is timed.
    let now = now_ms();
    let far = now + 365 * 86_400_000;
    let life = Lifetimes {
        token_issued_at: now,
        token_expires_at: far,
        cert_issued_at: now,
        cert_expires_at: far,
    };
    let mut ctl = AgentControl::new(
        access.to_owned(),
        account::agent_version(),
        "stress".into(),
        life,
        now,
    );
    if let Some(bytes) = ctl.poll_transmit() {
        send.write_all(&bytes)
            .await
            .map_err(|e| kind("session", e))?;
    }
    loop {
        let left = ctl
            .poll_timeout()
            .map_or(0, |at| at.saturating_sub(now_ms()));
        match tokio::time::timeout(Duration::from_millis(left), recv.read_chunk(4096, true)).await {
            Ok(chunk) => {
                let chunk = chunk
                    .map_err(|e| kind("session", e))?
                    .ok_or_else(|| "session: closed by the broker".to_string())?;
                ctl.handle_bytes(&chunk.bytes)
                    .map_err(|e| kind("session", e))?;
            }
            Err(_) => ctl.handle_timeout(now_ms()),
        }
        match ctl.poll_event() {
            Some(AgentEvent::Welcome { .. }) => return Ok((send, recv)),
            Some(AgentEvent::Refused { message, .. }) => return Err(kind("refused", message)),
            Some(AgentEvent::TimedOut) => return Err("session: no answer to the hello".into()),
            _ => continue,
        }
    }
}

/// Stays connected until the plan's end, opening a checked stream every
/// `60 s / streams_per_minute` (each agent at its own phase, so the load is
/// steady). A lost connection is redialled as the real agent does (capped
/// exponential backoff with full jitter, the same certificate and sign-in,
/// the other broker nodes of the code first) unless its close says not to.
#[allow(clippy::too_many_arguments)]
async fn hold(
    endpoint: &quinn::Endpoint,
    device: &lanyard_agent::identity::Device,
    access: &str,
    mut conn: quinn::Connection,
    mut control: Control,
    plan: &Plan,
    epoch: Instant,
    id: u64,
    live: &super::Live,
    out: &mut Outcome,
    mut addrs: Addresses,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let end = tokio::time::Instant::from_std(plan.hold_until);
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut redial = Redial::new();
    let period =
        (plan.streams_per_minute > 0).then(|| Duration::from_secs(60) / plan.streams_per_minute);
    let mut next = period.map(|p| tokio::time::Instant::now() + p.mul_f64(phase(id)));
    let mut k = plan.streams;
    loop {
        let lost = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(end) => break,
            e = conn.closed() => e,
            _ = tokio::time::sleep_until(next.unwrap_or(end)), if next.is_some_and(|n| n < end) => {
                let data = pattern(id * 1_000 + u64::from(k), plan.bytes_per_stream as usize);
                k = k.wrapping_add(1);
                checked_stream(&conn, &plan.app, &data, epoch, live, out).await;
                next = due_after(next, period);
                continue;
            }
        };
        drop(control);
        live.connected.fetch_sub(1, Relaxed);
        out.drops.push((epoch.elapsed(), None));
        let ending = match &lost {
            quinn::ConnectionError::ApplicationClosed(c) => Ending::Closed {
                code: u32::try_from(c.error_code.into_inner()).unwrap_or(u32::MAX),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            other => Ending::Lost {
                reason: other.to_string(),
            },
        };
        // A simulated agent has no refresh of its own: only a stop ends it.
        if let Next::Stop(_) = redial.after(ending, true) {
            out.errors.push((epoch.elapsed(), kind("closed", &lost)));
            return;
        }
        backoff.reset();
        // As the agent does: the other broker nodes first.
        if let Some(addr) = addrs.last_good().map(str::to_owned) {
            addrs.lost(&addr);
        }
        let back = loop {
            let delay = backoff.next_delay();
            if tokio::time::Instant::now() + delay >= end {
                out.errors.push((epoch.elapsed(), kind("not back", &lost)));
                return;
            }
            tokio::time::sleep(delay).await;
            let order = addrs.order(id as usize);
            let Ok((c, addr)) = account::connect_on(endpoint, device, &order).await else {
                continue;
            };
            addrs.worked(&addr);
            match open_session(&c, access).await {
                Ok(ctl) => break (c, ctl),
                Err(_) => c.close(0u32.into(), b"retrying"),
            }
        };
        (conn, control) = back;
        next = due_after(next, period);
        live.connected.fetch_add(1, Relaxed);
        if let Some(d) = out.drops.last_mut() {
            d.1 = Some(epoch.elapsed());
        }
    }
    conn.close(0u32.into(), b"stress run over");
}

/// One tunnel stream: the header and the data at once, the answer timed,
/// then every byte back compared.
async fn stream(conn: &quinn::Connection, app: &str, data: &[u8]) -> Result<Duration, String> {
    let started = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| kind("stream", e))?;
    let mut opener = StreamOpener::new(app, 1, now_ms(), STREAM_ANSWER_MS);
    send.write_all(opener.frame())
        .await
        .map_err(|e| kind("stream", e))?;
    let writer = async {
        send.write_all(data).await.map_err(|e| kind("stream", e))?;
        send.finish().map_err(|e| kind("stream", e))
    };
    let reader = async {
        let answer = read_frame(&mut recv, Duration::from_millis(STREAM_ANSWER_MS))
            .await
            .map_err(|e| kind("stream", e))?;
        match opener.handle_answer(answer) {
            Ok(()) => {}
            Err(lanyard_proto::stream::StreamOpenError::Refused { message, .. }) => {
                return Err(kind("refused", message))
            }
            Err(e) => return Err(kind("stream", e)),
        }
        let opened = started.elapsed();
        let back = recv
            .read_to_end(data.len() + 1)
            .await
            .map_err(|e| kind("stream", e))?;
        if back != data {
            return Err(format!(
                "mismatch: {} bytes back of {} sent",
                back.len(),
                data.len()
            ));
        }
        Ok(opened)
    };
    let (written, opened) = tokio::join!(writer, reader);
    written?;
    opened
}
