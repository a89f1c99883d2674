//! Which app a proxied request names, and the PAC file that sends exactly
//! those names to the local proxy. Pure: built from the apps the broker
//! last sent (`Welcome`, `AppsChanged`), no I/O.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use lanyard_proto::{AppGrant, AppProtocol};

/// One app the proxy can reach: its target's host and port, and the other
/// names it is known by (all lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    app: String,
    host: String,
    port: u16,
    names: Vec<String>,
}

/// The apps open to this person on this device, as the proxy matches them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    entries: Vec<Entry>,
}

/// A host as requests and targets are compared: lowercased, without a
/// final dot or the brackets of an IPv6 literal.
pub fn normalise_host(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// Splits `host:port` (the host may be a bracketed IPv6 literal).
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.is_empty() || (bare.contains(':') && bare.len() == host.len()) {
        // An IPv6 literal must be bracketed.
        return None;
    }
    Some((host, port))
}

/// Characters a name may have to be written into the PAC file: what host
/// names and IP literals use, nothing that could end a JavaScript string.
fn pac_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
}

/// A target host that means this laptop itself: reached through the proxy
/// only by its exact `host:port`, never sent there by the PAC file.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

impl Catalog {
    /// The TCP apps among `apps` whose target the broker sent.
    pub fn new(apps: &[AppGrant]) -> Self {
        let entries = apps
            .iter()
            .filter(|a| a.protocol == AppProtocol::Tcp)
            .filter_map(|a| {
                let (host, port) = split_host_port(&a.target)?;
                Some(Entry {
                    app: a.name.clone(),
                    host: normalise_host(host),
                    port,
                    names: a.hosts.iter().map(|h| normalise_host(h)).collect(),
                })
            })
            .collect();
        Self { entries }
    }

    /// The app that `host:port` names: its target exactly, or one of its
    /// names with the target's port; case does not matter.
    pub fn resolve(&self, host: &str, port: u16) -> Option<&str> {
        let host = normalise_host(host);
        let entries = || self.entries.iter().filter(|e| e.port == port);
        entries()
            .find(|e| e.host == host)
            .or_else(|| entries().find(|e| e.names.contains(&host)))
            .map(|e| e.app.as_str())
    }

    /// When `host` is an app's name but `port` is not its port: the app
    /// and the port it is reached on, to say so.
    pub fn near_miss(&self, host: &str) -> Option<(&str, u16)> {
        let host = normalise_host(host);
        self.entries
            .iter()
            .find(|e| e.host == host || e.names.contains(&host))
            .map(|e| (e.app.as_str(), e.port))
    }

    /// Every name the PAC file sends to the proxy: the apps' names and
    /// their targets' hosts (not loopback ones), sorted, once each.
    pub fn pac_names(&self) -> BTreeSet<&str> {
        self.entries
            .iter()
            .flat_map(|e| {
                let target = (!is_loopback(&e.host)).then_some(e.host.as_str());
                e.names.iter().map(String::as_str).chain(target)
            })
            .filter(|n| pac_safe(n))
            .collect()
    }

    /// The PAC file: the apps' names to `PROXY proxy`, everything else
    /// `DIRECT`.
    pub fn pac(&self, proxy: SocketAddr) -> String {
        let names: Vec<String> = self
            .pac_names()
            .into_iter()
            .map(|n| format!("    \"{n}\": true"))
            .collect();
        let names = if names.is_empty() {
            String::new()
        } else {
            format!("\n{}\n  ", names.join(",\n"))
        };
        format!(
            "// Lanyard: the apps open to you go through the agent's local proxy;\n\
             // everything else goes direct. Made again whenever your apps change.\n\
             function FindProxyForURL(url, host) {{\n  \
               var apps = {{{names}}};\n  \
               var h = host.toLowerCase();\n  \
               if (h.charAt(h.length - 1) == \".\") h = h.substring(0, h.length - 1);\n  \
               if (Object.prototype.hasOwnProperty.call(apps, h)) return \"PROXY {proxy}\";\n  \
               return \"DIRECT\";\n\
             }}\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(name: &str, target: &str, hosts: &[&str]) -> AppGrant {
        AppGrant {
            target: target.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..AppGrant::named(name)
        }
    }

    fn catalog() -> Catalog {
        Catalog::new(&[
            grant("hr-web", "10.0.0.5:8080", &["hr.council.internal", "hr"]),
            grant("intranet", "Intranet.Internal:443", &[]),
            grant("local", "127.0.0.1:9000", &["tools.council.internal"]),
            grant("v6", "[fd00::5]:443", &[]),
            AppGrant {
                protocol: AppProtocol::Udp,
                ..grant("pbx", "10.0.0.9:5060", &["pbx.council.internal"])
            },
            // From a broker that sends no details: nothing to match.
            AppGrant::named("old"),
        ])
    }

    #[test]
    fn a_request_names_an_app_by_target_or_name_with_the_target_s_port() {
        let c = catalog();
        assert_eq!(c.resolve("hr.council.internal", 8080), Some("hr-web"));
        assert_eq!(c.resolve("HR.Council.Internal.", 8080), Some("hr-web"));
        assert_eq!(c.resolve("hr", 8080), Some("hr-web"));
        assert_eq!(c.resolve("10.0.0.5", 8080), Some("hr-web"));
        assert_eq!(c.resolve("intranet.internal", 443), Some("intranet"));
        assert_eq!(c.resolve("[FD00::5]", 443), Some("v6"));
        assert_eq!(c.resolve("127.0.0.1", 9000), Some("local"));
        // Another port, a name not in the list, a name's suffix, a UDP app.
        assert_eq!(c.resolve("hr.council.internal", 443), None);
        assert_eq!(c.resolve("10.0.0.5", 80), None);
        assert_eq!(c.resolve("payroll.council.internal", 8080), None);
        assert_eq!(c.resolve("council.internal", 8080), None);
        assert_eq!(c.resolve("x.hr.council.internal", 8080), None);
        assert_eq!(c.resolve("pbx.council.internal", 5060), None);
        assert_eq!(c.resolve("old", 0), None);
        assert_eq!(c.near_miss("HR"), Some(("hr-web", 8080)));
        assert_eq!(c.near_miss("payroll"), None);
    }

    #[test]
    fn the_pac_file_sends_exactly_the_apps_names_to_the_proxy() {
        let c = catalog();
        let names: Vec<&str> = c.pac_names().into_iter().collect();
        // Not the loopback target, not the UDP app's name.
        assert_eq!(
            names,
            [
                "10.0.0.5",
                "fd00::5",
                "hr",
                "hr.council.internal",
                "intranet.internal",
                "tools.council.internal"
            ]
        );
        let pac = c.pac("127.0.0.1:3128".parse().unwrap());
        assert!(pac.contains("\"hr.council.internal\": true"), "{pac}");
        assert!(pac.contains("return \"PROXY 127.0.0.1:3128\";"), "{pac}");
        assert!(pac.contains("return \"DIRECT\";"), "{pac}");
        assert!(!pac.contains("127.0.0.1\""), "{pac}");
        assert!(!pac.contains("pbx"), "{pac}");
        // No apps: everything direct.
        let empty = Catalog::default().pac("127.0.0.1:3128".parse().unwrap());
        assert!(empty.contains("var apps = {};"), "{empty}");
    }

    #[test]
    fn a_name_that_could_break_the_pac_file_is_left_out() {
        let c = Catalog::new(&[grant(
            "x",
            "10.0.0.1:80",
            &["a\";alert(1);//", "ok.internal"],
        )]);
        let names: Vec<&str> = c.pac_names().into_iter().collect();
        assert_eq!(names, ["10.0.0.1", "ok.internal"]);
    }

    #[test]
    fn host_and_port_split() {
        assert_eq!(split_host_port("hr:80"), Some(("hr", 80)));
        assert_eq!(split_host_port("[::1]:443"), Some(("[::1]", 443)));
        assert_eq!(split_host_port("::1:443"), None);
        assert_eq!(split_host_port("hr:0"), None);
        assert_eq!(split_host_port("hr"), None);
        assert_eq!(split_host_port(":80"), None);
    }
}
