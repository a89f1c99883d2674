//! Open connections per source address, so that one host cannot take
//! every place in a pool (the API's connections, certificate-less QUIC
//! connections).

use std::sync::Arc;

/// Open connections per source address, each at most `most`.
#[derive(Debug)]
pub struct PerAddress {
    most: usize,
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection's place in its address's count, given back on drop.
#[derive(Debug)]
pub struct AddressSlot {
    ip: std::net::IpAddr,
    of: Arc<PerAddress>,
}

impl PerAddress {
    pub fn new(most: usize) -> Self {
        Self {
            most,
            open: Default::default(),
        }
    }

    /// A place for one more connection from `ip`, if it has fewer than
    /// `most` open.
    pub fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.most {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            ip,
            of: self.clone(),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
