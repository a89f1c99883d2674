//! The UDP socket under quinn, for the broker and the agent alike.
//!
//! quinn's own tokio socket costs two system calls per datagram that do
//! nothing, and on a round trip through the tunnel each is paid at both
//! ends:
//!
//! - It is registered for writability, and on Linux every UDP send whose
//!   buffer the kernel frees (at once, on loopback) reports the socket
//!   writable again: one more `epoll_wait` that wakes for nothing after
//!   every send. This socket is registered for reading only, and is taken
//!   to have room to send until a send finds its buffer full; only then is
//!   writability asked for, once, until the kernel says there is room.
//! - After each batch of datagrams it reads again until the kernel says
//!   there is no more. A batch that did not fill every slot already says
//!   so (`recvmmsg` stops at an empty queue), so this socket takes that as
//!   the end and waits for the next readiness event instead.
//!
//! Readiness set by an event newer than the read is never lost: tokio only
//! clears what it had seen when the read began.
//!
//! It also offers GSO batches (several datagrams in one send) only to the
//! connections that need them. quinn reserves a connection's send buffer
//! for a whole batch (up to ten datagrams, about 15 KiB) the first time it
//! has more than one datagram to send, and keeps it for the connection's
//! life. Every server handshake is such a time, so every idle agent held
//! that buffer. Here a connection is offered batches once it has sent
//! several datagrams in one go ([`BATCH_AFTER`]): a download in its first
//! round, never a handshake. quinn runs each connection's sending in one
//! tokio task, so the task is the connection.

use std::hash::{Hash, Hasher};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use quinn::udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Wraps a bound socket for `quinn::Endpoint::new_with_abstract_socket`.
/// Must be called inside a tokio runtime.
pub fn wrap(socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
    Ok(quiet(socket)?)
}

fn quiet(socket: std::net::UdpSocket) -> io::Result<Arc<QuietSocket>> {
    socket.set_nonblocking(true)?;
    let state = UdpSocketState::new((&socket).into())?;
    let io = register(socket, Interest::READABLE)?;
    Ok(Arc::new(QuietSocket {
        io,
        state,
        full: AtomicBool::new(false),
        batching: Batching::default(),
    }))
}

/// Registers `socket` with the runtime for `interest` only.
///
/// tokio 1.54 deprecated the safe constructor because a type whose
/// `as_raw_fd` could change, or close its descriptor early, would make it
/// unsound; its replacement is `unsafe`. A `std::net::UdpSocket` owns its
/// one descriptor until it is dropped, with the `AsyncFd`, so the safe
/// constructor is sound here and the project stays free of `unsafe`.
#[allow(deprecated)]
fn register(
    socket: std::net::UdpSocket,
    interest: Interest,
) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    AsyncFd::with_interest(socket, interest)
}

/// A UDP socket whose epoll registration only ever reports reads.
#[derive(Debug)]
struct QuietSocket {
    io: AsyncFd<std::net::UdpSocket>,
    state: UdpSocketState,
    /// A send found the kernel's buffer full, and no wait has seen room
    /// since.
    full: AtomicBool,
    batching: Batching,
}

/// Datagrams one connection sends in one go before it is offered batches:
/// more than a server's handshake flight (two or three), fewer than
/// quinn's most in one go (twenty) when it has much to send.
pub const BATCH_AFTER: usize = 4;

/// Connections (their tasks) recently offered batches.
const BATCHING_SLOTS: usize = 16;

/// Which connections are offered GSO batches. quinn asks how many
/// datagrams it may batch when a connection begins to send, then sends
/// them one transmit at a time, all within that one call: the asking task
/// is the sender until the next one asks.
#[derive(Debug, Default)]
struct Batching {
    /// Tasks that sent [`BATCH_AFTER`] datagrams in one go; the oldest
    /// place is taken by the next. 0 is an empty place.
    recent: [AtomicU64; BATCHING_SLOTS],
    next: AtomicUsize,
    /// The task now sending, and its transmits so far.
    sender: AtomicU64,
    sent: AtomicUsize,
}

impl Batching {
    /// Called when `task` begins to send: whether it may batch.
    fn begin(&self, task: u64) -> bool {
        self.sender.store(task, Relaxed);
        self.sent.store(0, Relaxed);
        task != 0 && self.recent.iter().any(|t| t.load(Relaxed) == task)
    }

    /// Called for each transmit `task` sends.
    fn sent(&self, task: u64) {
        if task == 0 || self.sender.load(Relaxed) != task {
            return;
        }
        if self.sent.fetch_add(1, Relaxed) + 1 == BATCH_AFTER
            && !self.recent.iter().any(|t| t.load(Relaxed) == task)
        {
            let place = self.next.fetch_add(1, Relaxed) % BATCHING_SLOTS;
            self.recent[place].store(task, Relaxed);
        }
    }
}

/// The current tokio task as a number, 0 outside one.
fn current_task() -> u64 {
    /// Keeps the number a task id hashes as.
    struct Number(u64);
    impl Hasher for Number {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(*b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }
    tokio::task::try_id().map_or(0, |id| {
        let mut n = Number(0);
        id.hash(&mut n);
        n.finish().max(1)
    })
}

impl AsyncUdpSocket for QuietSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(WhenWritable {
            socket: self,
            waiting: None,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.batching.sent(current_task());
        let sent = self.state.send(self.io.get_ref().into(), transmit);
        if matches!(&sent, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.full.store(true, Relaxed);
        }
        sent
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let slots = bufs.len().min(meta.len()).min(BATCH_SIZE);
        loop {
            let mut guard = ready!(self.io.poll_read_ready(cx))?;
            match self.state.recv(self.io.get_ref().into(), bufs, meta) {
                Ok(n) => {
                    if n < slots {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                // An error here would end quinn's endpoint for good; one
                // datagram's error (a pending ICMP error, an interrupted
                // call) is reported once and the next read goes on, as
                // quinn's own socket does.
                Err(_) => continue,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        if self.batching.begin(current_task()) {
            self.state.max_gso_segments()
        } else {
            1
        }
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

/// One connection's wait for room to send. quinn asks before every send;
/// the answer is yes at once unless a send found the socket's buffer full.
/// Then a second descriptor for the same socket is registered for
/// writability while the wait lasts: when it is added, epoll reports the
/// socket's state at that moment, so no wake-up can be missed, and once
/// room is reported it is dropped, so sends that follow do not each wake
/// the runtime.
#[derive(Debug)]
struct WhenWritable {
    socket: Arc<QuietSocket>,
    waiting: Option<AsyncFd<std::net::UdpSocket>>,
}

impl UdpPoller for WhenWritable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.socket.full.load(Relaxed) {
            this.waiting = None;
            return Poll::Ready(Ok(()));
        }
        if this.waiting.is_none() {
            let twin = this.socket.io.get_ref().try_clone()?;
            this.waiting = Some(register(twin, Interest::WRITABLE)?);
        }
        let waiting = this.waiting.as_ref().expect("registered above");
        // The registration goes with the guard: nothing is left to clear.
        drop(ready!(waiting.poll_write_ready(cx))?);
        this.waiting = None;
        this.socket.full.store(false, Relaxed);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> std::net::UdpSocket {
        std::net::UdpSocket::bind("127.0.0.1:0").expect("bind")
    }

    /// Receives through the socket as quinn does: a full batch of slots.
    async fn recv_batch(socket: &Arc<dyn AsyncUdpSocket>) -> Vec<Vec<u8>> {
        let mut storage = vec![[0u8; 1500]; BATCH_SIZE];
        let mut meta = vec![RecvMeta::default(); BATCH_SIZE];
        let n = {
            let mut bufs: Vec<IoSliceMut<'_>> =
                storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            std::future::poll_fn(|cx| socket.poll_recv(cx, &mut bufs, &mut meta))
                .await
                .expect("recv")
        };
        let mut out = Vec::new();
        for (m, buf) in meta[..n].iter().zip(&storage) {
            // With GRO one slot may hold several datagrams of `stride` bytes.
            for d in buf[..m.len].chunks(m.stride.max(1)) {
                out.push(d.to_vec());
            }
        }
        out
    }

    #[tokio::test]
    async fn datagrams_arriving_after_a_drained_batch_still_wake_the_reader() {
        let socket = wrap(bound()).expect("wrap");
        let addr = socket.local_addr().expect("addr");
        let peer = bound();
        for round in 0u8..50 {
            peer.send_to(&[round; 100], addr).expect("send");
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), recv_batch(&socket))
                .await
                .unwrap_or_else(|_| panic!("datagram {round} never woke the reader"));
            assert_eq!(got, vec![vec![round; 100]]);
            // Nothing more is queued: the next poll must wait, not spin or
            // report a datagram that is not there.
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut b = [0u8; 1500];
            let mut bufs = [IoSliceMut::new(&mut b)];
            let mut meta = [RecvMeta::default()];
            assert!(socket.poll_recv(&mut cx, &mut bufs, &mut meta).is_pending());
        }
    }

    #[tokio::test]
    async fn more_datagrams_than_one_batch_are_all_read() {
        let socket = wrap(bound()).expect("wrap");
        let addr = socket.local_addr().expect("addr");
        let peer = bound();
        let count = BATCH_SIZE * 3 + 5;
        for i in 0..count {
            peer.send_to(&(i as u32).to_be_bytes(), addr).expect("send");
        }
        let mut got = Vec::new();
        while got.len() < count {
            let batch =
                tokio::time::timeout(std::time::Duration::from_secs(5), recv_batch(&socket))
                    .await
                    .unwrap_or_else(|_| panic!("stalled after {} of {count}", got.len()));
            got.extend(batch);
        }
        let want: Vec<Vec<u8>> = (0..count)
            .map(|i| (i as u32).to_be_bytes().to_vec())
            .collect();
        assert_eq!(got, want);
    }

    /// One plain datagram of `contents` for `dest`.
    fn transmit_to(dest: SocketAddr, contents: &[u8]) -> Transmit<'_> {
        Transmit {
            destination: dest,
            ecn: None,
            contents,
            segment_size: None,
            src_ip: None,
        }
    }

    /// One go of a connection's sending as quinn does it: ask how many
    /// datagrams may be batched, then send `sends` transmits.
    fn go(socket: &QuietSocket, dest: SocketAddr, sends: usize) -> usize {
        let offered = socket.max_transmit_segments();
        for _ in 0..sends {
            socket
                .try_send(&transmit_to(dest, &[1u8; 32]))
                .expect("send");
        }
        offered
    }

    /// Runs `f` in a task of its own (quinn runs each connection in one).
    async fn in_task<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::spawn(async move { f() }).await.expect("task")
    }

    #[tokio::test]
    async fn batches_are_offered_only_to_a_connection_that_sent_several_datagrams_at_once() {
        let socket = quiet(bound()).expect("wrap");
        let peer = bound();
        let dest = peer.local_addr().expect("addr");
        let most = socket.state.max_gso_segments();
        if most < 2 {
            eprintln!("skipped: this kernel offers no UDP GSO, so there is nothing to offer");
            return;
        }
        // A handshake: a flight of three, then one datagram at a time. Never
        // offered batches, so quinn never reserves a batch's buffer for it.
        let s = socket.clone();
        let handshake = in_task(move || [go(&s, dest, 3), go(&s, dest, 1), go(&s, dest, 1)]).await;
        assert_eq!(handshake, [1, 1, 1]);
        // A download: its first go sends one at a time, the next are batched.
        let s = socket.clone();
        let download =
            in_task(move || [go(&s, dest, BATCH_AFTER), go(&s, dest, 2), go(&s, dest, 1)]).await;
        assert_eq!(download, [1, most, most]);
        // Sends in separate goes do not add up.
        let s = socket.clone();
        let trickle = in_task(move || {
            let mut offered = Vec::new();
            for _ in 0..BATCH_AFTER * 2 {
                offered.push(go(&s, dest, 1));
            }
            offered
        })
        .await;
        assert!(trickle.iter().all(|&n| n == 1), "{trickle:?}");
        // Sends from a task that did not ask (quinn's endpoint answering
        // for no connection) do not count for anyone.
        let s = socket.clone();
        in_task(move || go(&s, dest, 0)).await;
        let s = socket.clone();
        let endpoint = in_task(move || {
            for _ in 0..BATCH_AFTER {
                s.try_send(&transmit_to(dest, &[2u8; 32])).expect("send");
            }
            go(&s, dest, 1)
        })
        .await;
        assert_eq!(endpoint, 1);
        // The places are few: once as many newer downloads have taken them,
        // a connection starts again from one at a time.
        let (went, first_done) = tokio::sync::oneshot::channel::<()>();
        let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
        let s = socket.clone();
        let early = tokio::spawn(async move {
            let first = go(&s, dest, BATCH_AFTER);
            let _ = went.send(());
            let _ = wait.await;
            [first, go(&s, dest, 1)]
        });
        first_done.await.expect("early task went");
        for _ in 0..BATCHING_SLOTS {
            let s = socket.clone();
            in_task(move || go(&s, dest, BATCH_AFTER)).await;
        }
        go_on.send(()).expect("early task waits");
        assert_eq!(early.await.expect("task"), [1, 1]);
    }

    #[tokio::test]
    async fn a_send_is_delivered_and_the_writable_wait_ends_when_there_is_room() {
        let socket = quiet(bound()).expect("wrap");
        let peer = bound();
        let dest = peer.local_addr().expect("addr");
        let payload = [7u8; 64];
        socket.try_send(&transmit_to(dest, &payload)).expect("send");
        let mut buf = [0u8; 100];
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let (n, _) = peer.recv_from(&mut buf).expect("recv");
        assert_eq!(&buf[..n], &payload);
        // Until a send finds the buffer full, quinn's question before each
        // send is answered at once, with no registration.
        let mut poller = socket.clone().create_io_poller();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(poller.as_mut().poll_writable(&mut cx).is_ready());
        // After a full buffer, the answer waits for the kernel's word that
        // there is room (an empty buffer has it), then clears the mark.
        for _ in 0..3 {
            socket.full.store(true, Relaxed);
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx)),
            )
            .await
            .expect("writable wait ended")
            .expect("writable");
            assert!(!socket.full.load(Relaxed), "room seen, mark cleared");
        }
    }
}
