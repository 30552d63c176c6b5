//! Name resolution for the HTTPS client: one lookup per host, shared by the concurrent
//! connections of a start (50 `kms:` values were 50 `getaddrinfo` calls on 50 blocking
//! threads), kept for [`TTL`]. A lookup can be started before any connection needs it
//! ([`SharedDns::prefetch`]), so that it runs while the first call waits for its credentials.

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long a lookup is reused (a long `--init --refresh` run looks up again).
pub const TTL: Duration = Duration::from_secs(30);

type Lookup = Shared<BoxFuture<'static, Result<(Vec<SocketAddr>, Instant), Arc<io::Error>>>>;

/// A resolver that shares lookups.
#[derive(Clone, Default)]
pub struct SharedDns {
    lookups: Arc<Mutex<HashMap<String, Lookup>>>,
}

impl std::fmt::Debug for SharedDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedDns")
    }
}

impl SharedDns {
    /// The lookup of `name`: a fresh one under way or done, or a new one (`true`), which runs
    /// once polled.
    fn lookup(&self, name: Name) -> (Lookup, bool) {
        let mut lookups = self.lookups.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = |l: &Lookup| match l.peek() {
            None => true,
            Some(Ok((_, at))) => at.elapsed() < TTL,
            Some(Err(_)) => false,
        };
        if let Some(l) = lookups.get(name.as_str()).filter(|l| fresh(l)) {
            return (l.clone(), false);
        }
        let host = name.as_str().to_owned();
        let lookup = async move {
            let mut gai = GaiResolver::new();
            let addrs = tower_service::Service::call(&mut gai, name)
                .await
                .map_err(Arc::new)?;
            Ok((addrs.collect(), Instant::now()))
        }
        .boxed()
        .shared();
        lookups.insert(host, lookup.clone());
        (lookup, true)
    }

    /// Starts looking `host` up now, on the current runtime's blocking threads, unless a fresh
    /// lookup of it is under way or done; the connection that needs it later takes its result
    /// (or its error). The lookup is polled once here, which hands it to a blocking thread at
    /// once (a task spawned to drive it would run only when the caller next waits, after it has
    /// started its credentials request).
    pub fn prefetch(&self, host: &str) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let Ok(name) = host.parse::<Name>() else {
            return;
        };
        if let (lookup, true) = self.lookup(name) {
            let _ = lookup.now_or_never();
        }
    }

    /// The addresses of `host`, looked up once for every connection to it (within [`TTL`]).
    pub async fn addresses(&self, host: &str) -> io::Result<Vec<std::net::IpAddr>> {
        let name = host
            .parse::<Name>()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (lookup, _) = self.lookup(name);
        Ok(found(lookup).await?.iter().map(SocketAddr::ip).collect())
    }
}

/// The addresses `lookup` found, or its error (an `io::Error` of the same kind and text).
async fn found(lookup: Lookup) -> io::Result<Vec<SocketAddr>> {
    match lookup.await {
        Ok((addrs, _)) => Ok(addrs),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

impl tower_service::Service<Name> for SharedDns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (lookup, _) = self.lookup(name);
        async move { found(lookup).await.map(Vec::into_iter) }.boxed()
    }
}

#[cfg(test)]
impl SharedDns {
    /// The hosts looked up or being looked up, and whether each lookup's result is there to
    /// take without waiting.
    pub fn hosts(&self) -> Vec<(String, bool)> {
        let lookups = self.lookups.lock().unwrap_or_else(PoisonError::into_inner);
        let mut hosts: Vec<_> = lookups
            .iter()
            .map(|(host, l)| (host.clone(), l.clone().now_or_never().is_some()))
            .collect();
        hosts.sort();
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_prefetched_lookup_runs_unawaited_and_serves_the_connection_after() {
        let dns = SharedDns::default();
        dns.prefetch("localhost");
        // Nothing polls the lookup meanwhile (`hosts` does): ready at the first poll after, it
        // ran on its own.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            dns.hosts(),
            [("localhost".to_owned(), true)],
            "ran unawaited"
        );
        dns.prefetch("localhost");
        let mut dns2 = dns.clone();
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<_> = tower_service::Service::call(&mut dns2, name)
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
        assert_eq!(dns.hosts().len(), 1, "one lookup for the host");
    }

    #[test]
    fn without_a_runtime_nothing_is_started() {
        let dns = SharedDns::default();
        dns.prefetch("localhost");
        assert!(dns.hosts().is_empty());
    }
}
