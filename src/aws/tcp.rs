//! The TCP connections of kms-env's own HTTP clients: the HTTPS client's direct ones
//! ([`super::https`]) and the plain-HTTP client's ([`super::plain`]). The host's addresses come
//! from the shared name lookup ([`super::dns`]) and are tried in order; when they are of both
//! families, the other family's are tried too once the first family's have had
//! [`FALLBACK_DELAY`] (or at once when those fail), as hyper's connector does (RFC 8305's
//! fallback). hyper's connector, which reaches an `HTTPS_PROXY` still, cost a start's
//! connections more than these (BENCHMARKS.md, thirteenth session): its per-connection
//! futures, and two `fcntl` calls a socket that `SOCK_NONBLOCK` makes needless.

use super::BoxError;
use super::dns::SharedDns;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long the first family's addresses are tried alone (hyper's default).
pub const FALLBACK_DELAY: Duration = Duration::from_millis(300);

/// The host's name could not be looked up; messages say so apart from a refused connection.
#[derive(Debug, thiserror::Error)]
#[error("the name lookup failed")]
pub struct LookupFailed(#[source] pub io::Error);

/// `uri`'s host, an IPv6 address without its brackets.
pub fn host_of(uri: &http::Uri) -> Result<&str, BoxError> {
    Ok(uri
        .host()
        .ok_or("the endpoint URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']'))
}

/// A TCP connection (`TCP_NODELAY` set) to `uri`'s host and port (the scheme's default port
/// when it has none).
pub async fn connect(dns: &SharedDns, uri: &http::Uri) -> Result<TcpStream, BoxError> {
    let host = host_of(uri)?;
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let ips = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => dns.addresses(host).await.map_err(LookupFailed)?,
    };
    let addrs: Vec<SocketAddr> = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    Ok(race(&addrs).await?)
}

/// `addrs` split by family: the first address's family, in order, then the other's.
fn families(addrs: &[SocketAddr]) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let v4 = addrs.first().is_some_and(SocketAddr::is_ipv4);
    addrs.iter().partition(|a| a.is_ipv4() == v4)
}

/// A connection to one of `addrs`: the first family's in order, and the other family's from
/// [`FALLBACK_DELAY`] on (or once the first family's all failed); the first made wins.
async fn race(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let (first, other) = families(addrs);
    if other.is_empty() {
        return in_order(&first).await;
    }
    let primary = in_order(&first);
    let fallback = async {
        tokio::time::sleep(FALLBACK_DELAY).await;
        in_order(&other).await
    };
    tokio::pin!(primary, fallback);
    tokio::select! {
        made = &mut primary => match made {
            Ok(stream) => Ok(stream),
            Err(e) => in_order(&other).await.map_err(|_| e),
        },
        made = &mut fallback => match made {
            Ok(stream) => Ok(stream),
            Err(_) => primary.await,
        },
    }
}

/// A connection to the first of `addrs` that accepts one, or the last one's error.
async fn in_order(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(*addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host has no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_are_tried_by_the_first_ones_family_then_the_other() {
        let addrs = [
            addr("[2001:db8::1]:443"),
            addr("192.0.2.1:443"),
            addr("[2001:db8::2]:443"),
            addr("192.0.2.2:443"),
        ];
        let (first, other) = families(&addrs);
        assert_eq!(first, [addrs[0], addrs[2]]);
        assert_eq!(other, [addrs[1], addrs[3]]);
        let (first, other) = families(&addrs[1..]);
        assert_eq!(first, [addrs[1], addrs[3]]);
        assert_eq!(other, [addrs[2]]);
        assert_eq!(families(&[]), (vec![], vec![]));
    }

    /// A port on 127.0.0.1 that refuses connections.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn a_name_is_looked_up_and_a_refused_address_gives_way_to_the_next() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dns = SharedDns::default();
        let uri: http::Uri = format!("http://localhost:{port}/").parse().unwrap();
        let stream = connect(&dns, &uri).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
        assert!(stream.nodelay().unwrap());
        let refused = addr(&format!("127.0.0.2:{}", closed_port()));
        let open = addr(&format!("127.0.0.1:{port}"));
        let stream = race(&[refused, open]).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), open);
    }

    #[tokio::test]
    async fn the_other_family_is_tried_at_once_when_the_first_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        // An IPv6 address that refuses (or whose family this machine lacks) and an IPv4 one
        // that listens: well before the fallback delay.
        let refused = addr(&format!("[::1]:{}", closed_port()));
        let started = std::time::Instant::now();
        let stream = race(&[refused, open]).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), open);
        assert!(
            started.elapsed() < FALLBACK_DELAY,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn every_address_refused_is_the_first_familys_error() {
        let refused = addr(&format!("127.0.0.1:{}", closed_port()));
        let err = race(&[refused]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let dns = SharedDns::default();
        let uri: http::Uri = "http://kms-env-test.invalid/".parse().unwrap();
        let err = connect(&dns, &uri).await.unwrap_err();
        assert!(err.is::<LookupFailed>(), "{err}");
    }
}
