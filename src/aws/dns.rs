//! Name resolution for the HTTPS client: one lookup per host, shared by the concurrent
//! connections of a start (50 `kms:` values were 50 `getaddrinfo` calls on 50 blocking
//! threads), kept for [`TTL`].

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
    fn lookup(&self, name: Name) -> Lookup {
        let mut lookups = self.lookups.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = |l: &Lookup| match l.peek() {
            None => true,
            Some(Ok((_, at))) => at.elapsed() < TTL,
            Some(Err(_)) => false,
        };
        if let Some(l) = lookups.get(name.as_str()).filter(|l| fresh(l)) {
            return l.clone();
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
        lookup
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
        let lookup = self.lookup(name);
        async move {
            match lookup.await {
                Ok((addrs, _)) => Ok(addrs.into_iter()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            }
        }
        .boxed()
    }
}
