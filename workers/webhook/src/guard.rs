//! `--deny-private-networks`: refuse to connect to loopback, private, link-local and other
//! non-public addresses, checked on the addresses actually connected to (after DNS), so a
//! public name that resolves to `127.0.0.1` or `169.254.169.254` is refused too.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A target refused by the guard. Travels through reqwest's error chain from the resolver,
/// where [`refused_in`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) host: String,
    pub(crate) addr: IpAddr,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused: {} is {}, a non-public address (--deny-private-networks)",
            self.host, self.addr
        )
    }
}

impl std::error::Error for Refused {}

/// Finds a [`Refused`] in an error's source chain.
pub(crate) fn refused_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = err.source();
    }
    None
}

/// Checks a URL whose host is an IP literal (reqwest connects to those without asking the
/// resolver). The URL parser has already normalised odd forms such as `http://2130706433/`.
pub(crate) fn check_literal(url: &reqwest::Url) -> Result<(), Refused> {
    let host = url.host_str().unwrap_or_default();
    let Ok(addr) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_public(addr) {
        Ok(())
    } else {
        Err(Refused {
            host: host.to_owned(),
            addr,
        })
    }
}

/// The system resolver, refusing names with any non-public address (a name that mixes
/// public and private records is refused rather than trimmed).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(Box::new(Refused {
                    host,
                    addr: bad.ip(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether `addr` is a globally routable unicast address.
pub(crate) fn is_public(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    !(v4.is_unspecified()
        || v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let segments = v6.segments();
    !(v6.is_unspecified()
        || v6.is_loopback()
        || v6.is_multicast()
        || v6.is_unique_local()
        || v6.is_unicast_link_local()
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || (segments[0] == 0x0064 && segments[1] == 0xff9b) // NAT64: embeds an IPv4 address
        || (segments[0] == 0x2002)) // 6to4: embeds an IPv4 address
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_non_public_addresses() {
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for private in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.1.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_and_names_left_to_the_resolver() {
        let check = |url: &str| check_literal(&reqwest::Url::parse(url).unwrap());
        assert_eq!(
            check("http://[::1]:8080/x").unwrap_err().addr,
            IpAddr::from(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            check("http://10.1.2.3/x").unwrap_err().addr,
            IpAddr::from([10, 1, 2, 3])
        );
        assert_eq!(
            check("http://2130706433/x").unwrap_err().addr,
            IpAddr::from([127, 0, 0, 1])
        );
        assert!(check("http://1.1.1.1/x").is_ok());
        assert!(check("http://[2606:4700::1111]/x").is_ok());
        assert!(
            check("http://localhost/x").is_ok(),
            "names are the resolver's job"
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_loopback_addresses() {
        let resolving = PublicOnlyResolver.resolve("localhost".parse().unwrap());
        let err = match resolving.await {
            Ok(addrs) => panic!("resolved: {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err,
        };
        let refused = refused_in(&*err).expect("a Refused error");
        assert_eq!(refused.host, "localhost");
        assert!(refused.addr.is_loopback());
    }
}
