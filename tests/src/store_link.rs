//! A TCP relay between a broker and its database that a test can cut: while
//! cut, nothing passes either way and nothing is closed (a link gone
//! silent, the hard case: no error, only waiting); restored, what was held
//! is delivered and new connections go through again.

#![allow(clippy::unwrap_used)] // a test helper: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

pub struct StoreLink {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

impl StoreLink {
    /// Relays 127.0.0.1:PORT (see `addr`) to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let held = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let cut = held.clone();
                std::thread::spawn(move || {
                    wait_while(&cut);
                    let Ok(server) = TcpStream::connect(target) else {
                        return;
                    };
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let back = cut.clone();
                    std::thread::spawn(move || pump(s2, c2, &back));
                    pump(client, server, &cut);
                });
            }
        });
        Self { addr, cut }
    }

    /// A link in front of the database at `url` (`postgres://USER@HOST:PORT/...`),
    /// and the URL that reaches it through the link.
    pub fn in_front_of(url: &str) -> (Self, String) {
        let (scheme_user, rest) = url.split_once('@').expect("a URL with USER@HOST");
        let (host, path) = rest.split_once('/').expect("a URL with a path");
        let link = Self::start(host.parse().expect("HOST:PORT as an address"));
        let linked = format!("{scheme_user}@{}/{path}", link.addr);
        (link, linked)
    }

    /// Nothing passes from now on.
    pub fn cut(&self) {
        self.cut.store(true, SeqCst);
    }

    /// Everything passes again.
    pub fn restore(&self) {
        self.cut.store(false, SeqCst);
    }
}

fn wait_while(cut: &AtomicBool) {
    while cut.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies `from` to `to`, holding each chunk while the link is cut.
fn pump(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        wait_while(cut);
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        wait_while(cut);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
