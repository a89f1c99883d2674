//! What an agent does after its connection ends: the one decision the agent
//! and the stress tester's simulated agents share.
//!
//! A close code from the broker, a refusal, or a lost connection goes in;
//! out comes whether to redial (at once or after a backoff), to refresh the
//! sign-in first, or to stop because nothing a redial can do will help
//! (the device was revoked, the sign-in was ended, the certificate ran
//! out). Pure: no clock and no randomness; the backoff's delays are the
//! caller's.
//!
//! [`Addresses`] is where to redial: the broker nodes the agent knows (from
//! its enrolment code, then from each `Welcome`), the last one that worked
//! first, and the one whose connection was just lost last, so a dead or
//! restarted node moves its agents to the others at the next attempt.

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

/// The broker addresses an agent knows and the order it tries them in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    known: Vec<String>,
    last_good: Option<String>,
    /// The address whose connection was lost last: tried after the others.
    lost: Option<String>,
}

impl Addresses {
    /// `known` as the enrolment code or the broker listed them; `last_good`
    /// as the agent remembered it.
    pub fn new(known: Vec<String>, last_good: Option<String>) -> Self {
        let mut a = Self {
            known: Vec::new(),
            last_good,
            lost: None,
        };
        a.update(known);
        a
    }

    pub fn known(&self) -> &[String] {
        &self.known
    }

    pub fn last_good(&self) -> Option<&str> {
        self.last_good.as_deref()
    }

    /// The broker listed its nodes again (a `Welcome`); an empty list
    /// (an older broker) changes nothing. Whether anything changed.
    pub fn update(&mut self, listed: Vec<String>) -> bool {
        let mut known: Vec<String> = Vec::with_capacity(listed.len());
        for a in listed {
            if !a.is_empty() && !known.contains(&a) {
                known.push(a);
            }
        }
        if known.is_empty() || known == self.known {
            return false;
        }
        self.known = known;
        true
    }

    /// A connection to `addr` was made. Whether the last good one changed.
    pub fn worked(&mut self, addr: &str) -> bool {
        if self.lost.as_deref() == Some(addr) {
            self.lost = None;
        }
        if self.last_good.as_deref() == Some(addr) {
            return false;
        }
        self.last_good = Some(addr.to_owned());
        true
    }

    /// The connection to `addr` was lost (or refused): the next attempt
    /// tries the other addresses first.
    pub fn lost(&mut self, addr: &str) {
        self.lost = Some(addr.to_owned());
    }

    /// The order of the next attempt: the last good address first, then
    /// the others starting from the `spread`-th (so that agents leaving one
    /// node spread over the rest), and the address just lost last.
    pub fn order(&self, spread: usize) -> Vec<String> {
        let mut order: Vec<String> = Vec::with_capacity(self.known.len() + 1);
        if let Some(good) = &self.last_good {
            order.push(good.clone());
        }
        let n = self.known.len();
        for i in 0..n {
            let a = &self.known[(spread.wrapping_add(i)) % n];
            if !order.contains(a) {
                order.push(a.clone());
            }
        }
        if let Some(lost) = &self.lost {
            if let Some(i) = order.iter().position(|a| a == lost) {
                let a = order.remove(i);
                order.push(a);
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn the_last_good_address_comes_first_and_a_lost_one_last() {
        let mut a = Addresses::new(addrs(&["a:1", "b:1", "c:1"]), None);
        assert_eq!(a.order(0), addrs(&["a:1", "b:1", "c:1"]));
        assert!(a.worked("b:1"));
        assert!(!a.worked("b:1"));
        assert_eq!(a.order(0), addrs(&["b:1", "a:1", "c:1"]));
        // Its connection is lost: the others first, spread by the agent.
        a.lost("b:1");
        assert_eq!(a.order(0), addrs(&["a:1", "c:1", "b:1"]));
        assert_eq!(a.order(2), addrs(&["c:1", "a:1", "b:1"]));
        // Another one works: it leads from now on.
        a.worked("c:1");
        assert_eq!(a.order(0), addrs(&["c:1", "a:1", "b:1"]));
        // One address only: it is always tried.
        let mut one = Addresses::new(addrs(&["a:1"]), None);
        one.lost("a:1");
        assert_eq!(one.order(5), addrs(&["a:1"]));
    }

    #[test]
    fn a_listed_set_replaces_the_known_one_but_not_the_last_good() {
        let mut a = Addresses::new(addrs(&["a:1"]), Some("a:1".into()));
        assert!(a.update(addrs(&["a:1", "b:1", "b:1", ""])));
        assert_eq!(a.known(), addrs(&["a:1", "b:1"]).as_slice());
        assert!(!a.update(addrs(&["a:1", "b:1"])));
        assert!(!a.update(vec![]), "an older broker lists none");
        assert_eq!(a.known().len(), 2);
        // A node no longer listed is still tried if it was the last good.
        a.update(addrs(&["b:1", "c:1"]));
        assert_eq!(a.order(0), addrs(&["a:1", "b:1", "c:1"]));
        assert_eq!(a.last_good(), Some("a:1"));
    }

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
