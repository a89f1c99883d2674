//! The admin API facing many connections from one host: one address
//! cannot take every connection slot, so ICT is still served (and can
//! revoke a device) while a slow-loris holds connections open.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use lanyard_e2e::world::World;

/// A TCP connection to `to` from the loopback address `from`, left silent.
fn silent_from(from: [u8; 4], to: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(2))
        .ok()?;
    Some(socket.into())
}

#[test]
fn a_slow_loris_from_one_address_does_not_lock_ict_out() {
    let tmp = tempfile::tempdir().unwrap();
    // 100 connections in all, at most 64 from one address.
    let config = tmp.path().join("broker.toml");
    std::fs::write(
        &config,
        "[limits]\nhttp_connections = 100\nhttp_connections_per_address = 64\n",
    )
    .unwrap();
    let w = World::with(&["--config", config.to_str().unwrap()], &[]);
    let api: SocketAddr = w.broker.api.trim_start_matches("https://").parse().unwrap();
    // 150 silent connections from 127.0.0.2: each would sit in the TLS
    // handshake for up to 10 s.
    let held: Vec<TcpStream> = (0..150)
        .filter_map(|_| silent_from([127, 0, 0, 2], api))
        .collect();
    assert!(held.len() >= 100, "only {} connections opened", held.len());
    // The broker has taken what it will from that address.
    assert!(w.broker.wait_metric(
        "lanyard_http_connections_refused_total",
        Duration::from_secs(5),
        |n| n >= 50.0
    ));
    // Meanwhile ICT, from another address, is served and revokes a laptop.
    let listed = w.broker.lanyard(&["staff", "list"], None, None);
    assert_eq!(listed.code, 0, "ICT was locked out: {}", listed.stderr);
    let revoked = w.broker.lanyard(
        &[
            "devices",
            "revoke",
            "LT-1",
            "--reason",
            "stolen during the flood",
        ],
        None,
        None,
    );
    assert_eq!(revoked.code, 0, "ICT could not revoke: {}", revoked.stderr);
    drop(held);
}
