//! The host's resolvers: parsed from /etc/resolv.conf (nameservers, search domains, options),
//! re-read when the file changes. Loopback resolvers (127.0.0.53) are kept: berthd forwards
//! from the host's namespace, where they answer.
//!
//! Parsing follows glibc where it matters: a keyword starts its line, `#` and `;` start
//! comments, the last `search` or `domain` line sets the search list, every `options` line adds
//! to the options. Unlike glibc, every nameserver is kept (not only the first three): more of
//! them only means more fallbacks. Lines that make no sense are skipped, never an error.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;

/// The port nameservers in resolv.conf listen on (the file cannot say another).
const DNS_PORT: u16 = 53;

/// What berth uses of a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// The `nameserver` lines, in order, on port 53.
    pub nameservers: Vec<SocketAddr>,
    /// The domains of the last `search` or `domain` line.
    pub search: Vec<String>,
    /// The words of every `options` line, in order.
    pub options: Vec<String>,
}

/// Parses the text of a resolv.conf; see the module docs. Never fails: what cannot be used is
/// skipped.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else { continue };
        match keyword {
            "nameserver" => {
                if let Some(address) = words.next().and_then(parse_nameserver) {
                    conf.nameservers.push(SocketAddr::new(address, DNS_PORT));
                }
            }
            "search" => conf.search = words.map(str::to_owned).collect(),
            "domain" => conf.search = words.next().map(str::to_owned).into_iter().collect(),
            "options" => conf.options.extend(words.map(str::to_owned)),
            _ => {}
        }
    }
    conf
}

/// A nameserver's address; an IPv6 zone (`fe80::1%eth0`) is dropped.
fn parse_nameserver(word: &str) -> Option<IpAddr> {
    let without_zone = word.split('%').next().unwrap_or_default();
    without_zone.parse().ok()
}

/// Calls `on_change` with the parsed file at `path` now and whenever its content changes
/// (checked every `interval`; a missing file counts as empty). Runs until the task is aborted.
/// A change is reported once two checks in a row agree on it, so a file caught while being
/// rewritten in place (empty, or half-written) is not taken for the new content: changes come
/// one to two intervals late. A file that exists but cannot be read is warned about and counts
/// as unchanged (at the start, nothing is reported until it can be read). Must be called from
/// within a tokio runtime.
pub fn watch_resolv_conf(
    path: PathBuf,
    interval: Duration,
    on_change: impl Fn(ResolvConf) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported: Option<ResolvConf> = None;
        // A content differing from the one reported, seen at the previous check.
        let mut pending: Option<ResolvConf> = None;
        // Whether the last check could not read the file (warned about once, not every check).
        let mut read_failing = false;
        loop {
            ticks.tick().await;
            let text = match tokio::fs::read(&path).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(error) => {
                    if !read_failing {
                        let path = path.display();
                        tracing::warn!(%path, %error, "cannot read resolv.conf; keeping what was read before");
                    }
                    read_failing = true;
                    continue;
                }
            };
            read_failing = false;
            let conf = parse_resolv_conf(&text);
            if reported.as_ref() == Some(&conf) {
                pending = None;
            } else if reported.is_none() || pending.as_ref() == Some(&conf) {
                tracing::debug!(path = %path.display(), ?conf, "resolv.conf changed");
                reported = Some(conf.clone());
                pending = None;
                on_change(conf);
            } else {
                pending = Some(conf);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(address: &str) -> SocketAddr {
        SocketAddr::new(address.parse().expect("a test address"), 53)
    }

    #[test]
    fn nameservers_search_and_options() {
        let conf = parse_resolv_conf(
            "# generated\n\
             nameserver 127.0.0.53\n\
             nameserver\t2001:db8::1\n\
             options edns0 trust-ad\n\
             search example.com corp.example.com\n\
             options ndots:2\n",
        );
        assert_eq!(conf.nameservers, vec![socket("127.0.0.53"), socket("2001:db8::1")]);
        assert_eq!(conf.search, vec!["example.com", "corp.example.com"]);
        assert_eq!(conf.options, vec!["edns0", "trust-ad", "ndots:2"]);
    }

    #[test]
    fn the_last_search_or_domain_line_wins() {
        let conf = parse_resolv_conf("search a.example b.example\ndomain c.example\n");
        assert_eq!(conf.search, vec!["c.example"]);
        let conf = parse_resolv_conf("domain c.example\nsearch a.example b.example\n");
        assert_eq!(conf.search, vec!["a.example", "b.example"]);
        let conf = parse_resolv_conf("search a.example\nsearch\n");
        assert!(conf.search.is_empty());
    }

    #[test]
    fn comments_are_ignored_whole_line_and_trailing() {
        let conf = parse_resolv_conf(
            "#nameserver 192.0.2.1\n\
             ; nameserver 192.0.2.2\n\
             nameserver 192.0.2.3 # the office\n\
             nameserver 192.0.2.4;backup\n\
             search a.example # b.example\n",
        );
        assert_eq!(conf.nameservers, vec![socket("192.0.2.3"), socket("192.0.2.4")]);
        assert_eq!(conf.search, vec!["a.example"]);
    }

    #[test]
    fn an_ipv6_zone_is_dropped() {
        let conf = parse_resolv_conf("nameserver fe80::1%eth0\n");
        assert_eq!(conf.nameservers, vec![socket("fe80::1")]);
    }

    #[test]
    fn garbage_is_skipped() {
        let conf = parse_resolv_conf(
            "nameserver not-an-address\n\
             nameserver 300.1.1.1\n\
             nameserver\n\
             nameservers 192.0.2.9\n\
             sortlist 130.155.160.0/255.255.240.0\n\
             \u{0}\u{ffff}%%%\n\
             \n   \n\
             nameserver 192.0.2.1:5353\n\
             nameserver 192.0.2.5\n",
        );
        assert_eq!(conf.nameservers, vec![socket("192.0.2.5")]);
        assert!(conf.search.is_empty());
        assert!(conf.options.is_empty());
    }

    #[test]
    fn empty_text_is_empty() {
        assert_eq!(parse_resolv_conf(""), ResolvConf::default());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            parse_resolv_conf(&text);
        }

        #[test]
        fn never_panics_on_resolv_conf_like_lines(
            lines in proptest::collection::vec(
                "(nameserver|search|domain|options|#|;)?[ \t]{0,2}[0-9a-f:.%# ;]{0,40}", 0..10)
        ) {
            parse_resolv_conf(&lines.join("\n"));
        }
    }
}
