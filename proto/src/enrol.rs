//! The enrolment code: one string that an admin hands to a laptop.
//!
//! It carries everything the agent needs to reach and trust the broker the
//! first time: the broker's QUIC address, the SHA-256 fingerprint of the
//! broker's CA certificate (so the agent pins the broker without any other
//! configuration) and a single-use secret.
//!
//! Text form: `lye1.` followed by base64url (no padding) of
//! `fingerprint (32 bytes) | secret (20 bytes) | address (UTF-8)`.

use std::fmt;

use data_encoding::BASE64URL_NOPAD;

const PREFIX: &str = "lye1.";
const FINGERPRINT_LEN: usize = 32;
/// Length of the secret part of a code, in bytes (160 bits).
pub const SECRET_LEN: usize = 20;
const MAX_ADDRESS_LEN: usize = 253 + 1 + 5;

/// A decoded enrolment code.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolmentCode {
    /// Where the broker's QUIC endpoint listens, as `host:port`.
    pub broker_addr: String,
    /// SHA-256 of the broker CA certificate's DER encoding.
    pub ca_fingerprint: [u8; FINGERPRINT_LEN],
    /// The single-use secret; the broker stores only its hash.
    pub secret: [u8; SECRET_LEN],
}

/// Why a string is not an enrolment code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrolmentCodeError {
    /// The string does not start with `lye1.`.
    #[error("not a Lanyard enrolment code (it should start with \"{PREFIX}\")")]
    Prefix,
    /// The part after the prefix is not base64url.
    #[error("the enrolment code is damaged (not base64url); copy it again in full")]
    Encoding,
    /// The decoded bytes are too short or too long.
    #[error("the enrolment code is damaged (wrong length); copy it again in full")]
    Length,
    /// The address inside is not `host:port`.
    #[error("the enrolment code carries a bad broker address")]
    Address,
}

impl EnrolmentCode {
    /// Encodes the code as the one string an admin hands out.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(FINGERPRINT_LEN + SECRET_LEN + self.broker_addr.len());
        raw.extend_from_slice(&self.ca_fingerprint);
        raw.extend_from_slice(&self.secret);
        raw.extend_from_slice(self.broker_addr.as_bytes());
        format!("{PREFIX}{}", BASE64URL_NOPAD.encode(&raw))
    }

    /// Parses a code; surrounding whitespace (from a copy and paste) is ignored.
    pub fn decode(text: &str) -> Result<Self, EnrolmentCodeError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(EnrolmentCodeError::Prefix)?;
        // Bound the work before decoding anything.
        if body.len() > (FINGERPRINT_LEN + SECRET_LEN + MAX_ADDRESS_LEN) * 4 / 3 + 4 {
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
        let broker_addr = std::str::from_utf8(addr).map_err(|_| EnrolmentCodeError::Address)?;
        if !valid_host_port(broker_addr) {
            return Err(EnrolmentCodeError::Address);
        }
        let mut code = EnrolmentCode {
            broker_addr: broker_addr.to_owned(),
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
            .field("broker_addr", &self.broker_addr)
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
            broker_addr: "broker.council.example:4433".into(),
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
        code.broker_addr = "[::1]:4433".into();
        assert_eq!(EnrolmentCode::decode(&code.encode()).unwrap(), code);
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
            code.broker_addr = addr.into();
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
