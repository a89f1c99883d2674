//! Host names an app is known by (`lanyard apps add --host`): DNS-name
//! syntax, lowercased, bounded. The broker parses them when they are set
//! and the agent's local proxy matches requests against them.

/// The most names one app may have.
pub const MAX_HOSTS_PER_APP: usize = 16;
/// The longest host name (DNS's limit, without the final dot).
pub const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Why a host name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostNameError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_HOST_LEN} characters")]
    TooLong,
    #[error("a label (between dots) is empty or longer than {MAX_LABEL_LEN} characters")]
    BadLabelLength,
    #[error("a label starts or ends with '-'")]
    Hyphen,
    #[error("use only a-z, 0-9, '-' and '.'")]
    BadCharacter,
}

/// Parses a host name: labels of a-z, 0-9 and '-' (not first or last),
/// 1-63 characters each, joined by dots, at most 253 in all. Upper case
/// is lowered and one final dot dropped, so equal names compare equal.
pub fn parse_host_name(s: &str) -> Result<String, HostNameError> {
    let s = s.trim();
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err(HostNameError::Empty);
    }
    if s.len() > MAX_HOST_LEN {
        return Err(HostNameError::TooLong);
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(HostNameError::BadLabelLength);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(HostNameError::BadCharacter);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostNameError::Hyphen);
        }
    }
    Ok(s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowered_and_checked() {
        assert_eq!(
            parse_host_name("HR.Council.Internal.").unwrap(),
            "hr.council.internal"
        );
        assert_eq!(parse_host_name("intranet").unwrap(), "intranet");
        assert_eq!(parse_host_name("10.0.0.5").unwrap(), "10.0.0.5");
        assert_eq!(parse_host_name(""), Err(HostNameError::Empty));
        assert_eq!(parse_host_name("a..b"), Err(HostNameError::BadLabelLength));
        assert_eq!(parse_host_name("-a.b"), Err(HostNameError::Hyphen));
        assert_eq!(parse_host_name("a_b.c"), Err(HostNameError::BadCharacter));
        assert_eq!(parse_host_name("a b"), Err(HostNameError::BadCharacter));
        assert_eq!(parse_host_name("hr:443"), Err(HostNameError::BadCharacter));
        assert_eq!(
            parse_host_name(&"a".repeat(64)),
            Err(HostNameError::BadLabelLength)
        );
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(parse_host_name(&long), Err(HostNameError::TooLong));
    }
}
