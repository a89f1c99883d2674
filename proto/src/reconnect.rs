//! What an agent does after its connection ends: the one decision the agent
//! and the stress tester's simulated agents share.
//!
//! A close code from the broker, a refusal, or a lost connection goes in;
//! out comes whether to redial (at once or after a backoff), to refresh the
//! sign-in first, or to stop because nothing a redial can do will help
//! (the device was revoked, the sign-in was ended, the certificate ran
//! out). Pure: no clock and no randomness; the backoff's delays are the
//! caller's.

use crate::close;
use crate::messages::ErrorCode;

/// How a connection (or an attempt at one) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The broker closed the connection with this application close code.
    Closed { code: u32, reason: String },
    /// The broker refused the session's hello.
    Refused { code: ErrorCode, message: String },
    /// The broker refused to refresh the sign-in.
    RefreshRefused { code: ErrorCode, message: String },
    /// The connection was lost or could not be made (timeout, reset,
    /// unreachable): nothing was said about why.
    Lost { reason: String },
    /// The agent closed it to use a renewed certificate.
    Renewed,
}

/// Why an agent stops for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    #[error("this device has been revoked: {0}")]
    DeviceRevoked(String),
    #[error("the sign-in was ended: {0}")]
    SignInEnded(String),
    #[error("the device certificate has expired: {0}")]
    CertificateExpired(String),
    #[error("the broker refused this agent: {0}")]
    Refused(String),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Redial. `at_once` skips the backoff (nothing is wrong at the broker);
    /// `reset_backoff` when the lost connection had carried a session.
    Redial {
        reason: String,
        at_once: bool,
        reset_backoff: bool,
    },
    /// Refresh the sign-in, then redial at once.
    RefreshFirst {
        reason: String,
    },
    Stop(Stop),
}

/// Refreshes in a row, without a session opening, before the sign-in is
/// taken as ended.
pub const MAX_REFRESHES_IN_A_ROW: u8 = 2;

/// The redial decision, with the little it remembers between connections.
#[derive(Debug, Default, Clone)]
pub struct Redial {
    refreshes_in_a_row: u8,
}

impl Redial {
    pub fn new() -> Self {
        Self::default()
    }

    /// What to do after `ending`; `had_session` if a session had been open
    /// on the connection that ended.
    pub fn after(&mut self, ending: Ending, had_session: bool) -> Next {
        if had_session {
            self.refreshes_in_a_row = 0;
        }
        let retry = |reason: String| Next::Redial {
            reason,
            at_once: false,
            reset_backoff: had_session,
        };
        let next = match ending {
            Ending::Closed { code, reason } => match code {
                close::DEVICE_REVOKED => Next::Stop(Stop::DeviceRevoked(reason)),
                close::SIGN_IN_ENDED => Next::Stop(Stop::SignInEnded(reason)),
                close::SIGNED_OUT => Next::RefreshFirst { reason },
                // A renewed certificate may be waiting: the next attempt
                // uses it, or stops if it too has expired.
                close::CERT_EXPIRED => Next::Redial {
                    reason,
                    at_once: true,
                    reset_backoff: false,
                },
                close::SHUTDOWN if reason.is_empty() => retry("the broker is stopping".into()),
                _ => retry(reason),
            },
            Ending::Refused { code, message } => match code {
                ErrorCode::Revoked => Next::Stop(Stop::DeviceRevoked(message)),
                ErrorCode::Unauthorized => Next::RefreshFirst { reason: message },
                ErrorCode::AtCapacity | ErrorCode::Unavailable | ErrorCode::Internal => {
                    retry(message)
                }
                _ => Next::Stop(Stop::Refused(message)),
            },
            Ending::RefreshRefused { code, message } => match code {
                ErrorCode::Unauthorized | ErrorCode::Forbidden => {
                    Next::Stop(Stop::SignInEnded(message))
                }
                ErrorCode::Revoked => Next::Stop(Stop::DeviceRevoked(message)),
                ErrorCode::AtCapacity | ErrorCode::Unavailable | ErrorCode::Internal => {
                    retry(message)
                }
                _ => Next::Stop(Stop::Refused(message)),
            },
            Ending::Lost { reason } => retry(reason),
            Ending::Renewed => Next::Redial {
                reason: "renewed the device certificate".into(),
                at_once: true,
                reset_backoff: false,
            },
        };
        match next {
            Next::RefreshFirst { reason } => {
                self.refreshes_in_a_row += 1;
                if self.refreshes_in_a_row > MAX_REFRESHES_IN_A_ROW {
                    Next::Stop(Stop::SignInEnded(reason))
                } else {
                    Next::RefreshFirst { reason }
                }
            }
            other => {
                if !matches!(other, Next::Redial { at_once: true, .. }) {
                    self.refreshes_in_a_row = 0;
                }
                other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(code: u32) -> Ending {
        Ending::Closed {
            code,
            reason: "why".into(),
        }
    }

    #[test]
    fn every_close_code_has_a_decision() {
        type Expect = fn(&Next) -> bool;
        let cases: [(u32, Expect); 9] = [
            (close::NORMAL, |n| {
                matches!(n, Next::Redial { at_once: false, .. })
            }),
            (close::PROTOCOL, |n| {
                matches!(n, Next::Redial { at_once: false, .. })
            }),
            (close::DEVICE_REVOKED, |n| {
                matches!(n, Next::Stop(Stop::DeviceRevoked(_)))
            }),
            (close::SIGNED_OUT, |n| {
                matches!(n, Next::RefreshFirst { .. })
            }),
            (close::SHUTDOWN, |n| {
                matches!(n, Next::Redial { at_once: false, .. })
            }),
            (close::CERT_EXPIRED, |n| {
                matches!(n, Next::Redial { at_once: true, .. })
            }),
            (close::STALE_STATE, |n| {
                matches!(n, Next::Redial { at_once: false, .. })
            }),
            (close::AT_CAPACITY, |n| {
                matches!(n, Next::Redial { at_once: false, .. })
            }),
            (close::SIGN_IN_ENDED, |n| {
                matches!(n, Next::Stop(Stop::SignInEnded(_)))
            }),
        ];
        for (code, expected) in cases {
            let next = Redial::new().after(closed(code), true);
            assert!(expected(&next), "close code {code}: {next:?}");
        }
        // A code this agent does not know: redial with backoff.
        assert!(matches!(
            Redial::new().after(closed(99), false),
            Next::Redial { at_once: false, .. }
        ));
    }

    #[test]
    fn a_lost_session_resets_the_backoff_and_a_failed_attempt_does_not() {
        let lost = || Ending::Lost {
            reason: "timed out".into(),
        };
        assert!(matches!(
            Redial::new().after(lost(), true),
            Next::Redial {
                reset_backoff: true,
                ..
            }
        ));
        assert!(matches!(
            Redial::new().after(lost(), false),
            Next::Redial {
                reset_backoff: false,
                ..
            }
        ));
    }

    #[test]
    fn refusals_decide_by_code() {
        let refused = |code| Ending::Refused {
            code,
            message: "m".into(),
        };
        let mut r = Redial::new();
        assert!(matches!(
            r.after(refused(ErrorCode::Revoked), false),
            Next::Stop(Stop::DeviceRevoked(_))
        ));
        assert!(matches!(
            r.after(refused(ErrorCode::AtCapacity), false),
            Next::Redial { at_once: false, .. }
        ));
        assert!(matches!(
            r.after(refused(ErrorCode::Forbidden), false),
            Next::Stop(Stop::Refused(_))
        ));
        let refresh_refused = Ending::RefreshRefused {
            code: ErrorCode::Unauthorized,
            message: "this sign-in was ended".into(),
        };
        assert_eq!(
            r.after(refresh_refused, false),
            Next::Stop(Stop::SignInEnded("this sign-in was ended".into()))
        );
    }

    #[test]
    fn an_unauthorized_hello_refreshes_twice_then_stops() {
        let unauthorized = || Ending::Refused {
            code: ErrorCode::Unauthorized,
            message: "token expired".into(),
        };
        let mut r = Redial::new();
        assert!(matches!(
            r.after(unauthorized(), false),
            Next::RefreshFirst { .. }
        ));
        assert!(matches!(
            r.after(unauthorized(), false),
            Next::RefreshFirst { .. }
        ));
        assert_eq!(
            r.after(unauthorized(), false),
            Next::Stop(Stop::SignInEnded("token expired".into()))
        );
        // A session in between starts the count again.
        let mut r = Redial::new();
        r.after(unauthorized(), false);
        r.after(unauthorized(), false);
        r.after(
            Ending::Lost {
                reason: "reset".into(),
            },
            true,
        );
        assert!(matches!(
            r.after(unauthorized(), false),
            Next::RefreshFirst { .. }
        ));
    }

    #[test]
    fn a_stopping_broker_says_so() {
        assert_eq!(
            Redial::new().after(
                Ending::Closed {
                    code: close::SHUTDOWN,
                    reason: String::new()
                },
                true
            ),
            Next::Redial {
                reason: "the broker is stopping".into(),
                at_once: false,
                reset_backoff: true
            }
        );
    }
}
