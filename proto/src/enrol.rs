//! The enrolment code: one string that an admin hands to a laptop.
//!
//! It carries everything the agent needs to reach and trust the broker the
//! first time: the QUIC address of every broker node (the one that made the
//! code first), the SHA-256 fingerprint of the broker's CA certificate (so
//! the agent pins the broker without any other configuration) and a
//! single-use secret.
//!
//! Text form: a version prefix, then base64url (no padding) of
//! `fingerprint (32 bytes) | secret (20 bytes) | addresses (UTF-8)`.
//! `lye1.` carries one address; `lye2.` carries one to
//! [`MAX_ADDRESSES`], separated by commas. A code with one address is
//! written as `lye1.`, so agents that know only that form can still use it.

use std::fmt;

use data_encoding::BASE64URL_NOPAD;

const PREFIX: &str = "lye1.";
const PREFIX_LIST: &str = "lye2.";
const FINGERPRINT_LEN: usize = 32;
/// Length of the secret part of a code, in bytes (160 bits).
pub const SECRET_LEN: usize = 20;
/// The longest `host:port` accepted.
pub const MAX_ADDRESS_LEN: usize = 253 + 1 + 5;
/// The most broker addresses a code (or a `Welcome`) carries.
pub const MAX_ADDRESSES: usize = 8;

/// A decoded enrolment code.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolmentCode {
    /// Where the broker nodes' QUIC endpoints listen, as `host:port`, the
    /// node that made the code first; never empty.
    pub broker_addrs: Vec<String>,
    /// SHA-256 of the broker CA certificate's DER encoding.
    pub ca_fingerprint: [u8; FINGERPRINT_LEN],
    /// The single-use secret; the broker stores only its hash.
    pub secret: [u8; SECRET_LEN],
}

/// Why a string is not an enrolment code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrolmentCodeError {
    /// The string does not start with `lye1.` or `lye2.`.
    #[error(
        "not a Lanyard enrolment code (it should start with \"{PREFIX}\" or \"{PREFIX_LIST}\")"
    )]
    Prefix,
    /// The part after the prefix is not base64url.
    #[error("the enrolment code is damaged (not base64url); copy it again in full")]
    Encoding,
    /// The decoded bytes are too short or too long.
    #[error("the enrolment code is damaged (wrong length); copy it again in full")]
    Length,
    /// An address inside is not `host:port`, or there are too many.
    #[error("the enrolment code carries a bad broker address")]
    Address,
}

impl EnrolmentCode {
    /// Encodes the code as the one string an admin hands out.
    pub fn encode(&self) -> String {
        let addrs = self.broker_addrs.join(",");
        let mut raw = Vec::with_capacity(FINGERPRINT_LEN + SECRET_LEN + addrs.len());
        raw.extend_from_slice(&self.ca_fingerprint);
        raw.extend_from_slice(&self.secret);
        raw.extend_from_slice(addrs.as_bytes());
        let prefix = if self.broker_addrs.len() == 1 {
            PREFIX
        } else {
            PREFIX_LIST
        };
        format!("{prefix}{}", BASE64URL_NOPAD.encode(&raw))
    }

    /// The address of the node that made the code.
    pub fn first_addr(&self) -> &str {
        self.broker_addrs.first().map_or("", String::as_str)
    }

    /// Parses a code; surrounding whitespace (from a copy and paste) is ignored.
    pub fn decode(text: &str) -> Result<Self, EnrolmentCodeError> {
        let text = text.trim();
        let (body, max_addrs) = match text.strip_prefix(PREFIX) {
            Some(body) => (body, 1),
            None => (
                text.strip_prefix(PREFIX_LIST)
                    .ok_or(EnrolmentCodeError::Prefix)?,
                MAX_ADDRESSES,
            ),
        };
        // Bound the work before decoding anything.
        let max_raw = FINGERPRINT_LEN + SECRET_LEN + max_addrs * (MAX_ADDRESS_LEN + 1);
        if body.len() > max_raw * 4 / 3 + 4 {
            return Err(EnrolmentCodeError::Length);
        }
        let raw = BASE64URL_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| EnrolmentCodeError::Encoding)?;
        if raw.len() <= FINGERPRINT_LEN + SECRET_LEN {
            return Err(EnrolmentCodeError::Length);
        }
        let (fingerprint, rest) = raw.split_at(FINGERPRINT_LEN);
        let (secret, addr) = rest.split_at(SECRET_LEN);
        let addrs = std::str::from_utf8(addr).map_err(|_| EnrolmentCodeError::Address)?;
        let broker_addrs: Vec<String> = addrs.split(',').map(str::to_owned).collect();
        if broker_addrs.len() > max_addrs || !broker_addrs.iter().all(|a| valid_host_port(a)) {
            return Err(EnrolmentCodeError::Address);
        }
        let mut code = EnrolmentCode {
            broker_addrs,
            ca_fingerprint: [0; FINGERPRINT_LEN],
            secret: [0; SECRET_LEN],
        };
        code.ca_fingerprint.copy_from_slice(fingerprint);
        code.secret.copy_from_slice(secret);
        Ok(code)
    }
}

/// The secret never appears in debug output.
impl fmt::Debug for EnrolmentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrolmentCode")
            .field("broker_addrs", &self.broker_addrs)
            .field("ca_fingerprint", &hex(&self.ca_fingerprint))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `host:port` or `[v6]:port`, with a non-zero port and no spaces or controls.
pub fn valid_host_port(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_ADDRESS_LEN {
        return false;
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = matches!(port.parse::<u16>(), Ok(p) if p != 0);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    port_ok && host_ok
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EnrolmentCode {
        EnrolmentCode {
            broker_addrs: vec!["broker.council.example:4433".into()],
            ca_fingerprint: [7; 32],
            secret: [9; SECRET_LEN],
        }
    }

    #[test]
    fn round_trips() {
        let code = sample();
        let text = code.encode();
        assert!(text.starts_with("lye1."));
        assert_eq!(EnrolmentCode::decode(&text).unwrap(), code);
        assert_eq!(EnrolmentCode::decode(&format!("  {text}\n")).unwrap(), code);
    }

    #[test]
    fn ipv6_address_round_trips() {
        let mut code = sample();
        code.broker_addrs = vec!["[::1]:4433".into()];
        assert_eq!(EnrolmentCode::decode(&code.encode()).unwrap(), code);
    }

    #[test]
    fn several_addresses_round_trip_as_the_second_form() {
        let mut code = sample();
        code.broker_addrs = vec![
            "a.council.example:4433".into(),
            "10.0.0.2:4433".into(),
            "[::1]:4433".into(),
        ];
        let text = code.encode();
        assert!(text.starts_with("lye2."), "{text}");
        assert_eq!(EnrolmentCode::decode(&text).unwrap(), code);
        assert_eq!(code.first_addr(), "a.council.example:4433");
        // Three short addresses still make a code that fits on a line.
        assert!(text.len() < 160, "{}", text.len());
        // One address keeps the first form, which older agents read.
        assert!(sample().encode().starts_with("lye1."));
    }

    #[test]
    fn a_code_of_the_first_form_still_parses() {
        // Written by a broker that knew only one address.
        let mut raw = vec![7u8; 32];
        raw.extend_from_slice(&[9; SECRET_LEN]);
        raw.extend_from_slice(b"127.0.0.1:4433");
        let text = format!("lye1.{}", BASE64URL_NOPAD.encode(&raw));
        let code = EnrolmentCode::decode(&text).unwrap();
        assert_eq!(code.broker_addrs, vec!["127.0.0.1:4433".to_owned()]);
        // The first form never carries a list.
        raw.extend_from_slice(b",10.0.0.2:4433");
        let text = format!("lye1.{}", BASE64URL_NOPAD.encode(&raw));
        assert_eq!(
            EnrolmentCode::decode(&text),
            Err(EnrolmentCodeError::Address)
        );
    }

    #[test]
    fn too_many_or_empty_addresses_are_refused() {
        let mut code = sample();
        code.broker_addrs = (1..=MAX_ADDRESSES + 1)
            .map(|i| format!("10.0.0.{i}:4433"))
            .collect();
        assert!(EnrolmentCode::decode(&code.encode()).is_err());
        code.broker_addrs = vec!["a:1".into(), String::new()];
        assert_eq!(
            EnrolmentCode::decode(&code.encode()),
            Err(EnrolmentCodeError::Address)
        );
    }

    #[test]
    fn refuses_damaged_codes() {
        let text = sample().encode();
        assert_eq!(
            EnrolmentCode::decode("abc"),
            Err(EnrolmentCodeError::Prefix)
        );
        assert_eq!(
            EnrolmentCode::decode(&text[..text.len() - 30]),
            Err(EnrolmentCodeError::Address),
        );
        assert_eq!(
            EnrolmentCode::decode("lye1.AAAA"),
            Err(EnrolmentCodeError::Length)
        );
        assert_eq!(
            EnrolmentCode::decode("lye1.!!!"),
            Err(EnrolmentCodeError::Encoding)
        );
        let huge = format!("lye1.{}", "A".repeat(10_000));
        assert_eq!(
            EnrolmentCode::decode(&huge),
            Err(EnrolmentCodeError::Length)
        );
    }

    #[test]
    fn refuses_bad_addresses() {
        for addr in [
            "nohost",
            "host:0",
            "host:99999",
            ":4433",
            "ho st:1",
            "h\n:1",
        ] {
            let mut code = sample();
            code.broker_addrs = vec![addr.into()];
            assert_eq!(
                EnrolmentCode::decode(&code.encode()),
                Err(EnrolmentCodeError::Address),
                "{addr:?}"
            );
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", sample());
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("9, 9"));
    }
}
