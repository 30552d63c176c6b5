//! X25519 key pairs made ahead, while connections wait for their turn.
//!
//! Every TLS connection makes a fresh X25519 key pair for its ClientHello (resumed or not: see
//! [`super::resume`]), about a twentieth of a start's CPU at 50 connections. Of the concurrent
//! connections to a host, all but the first wait for a session ticket, and while the
//! handshakes that bring tickets are under way the one thread has little to do. A connection
//! that waits says so ([`waiting`]), and a task of the runtime makes one pair for each waiting
//! connection when nothing else is ready to run ([`make_while_idle`]); [`X25519`], the
//! key-exchange group that the TLS configuration offers in place of ring's, hands out those
//! pairs before it makes new ones. Each pair is fresh (made a few milliseconds earlier, by this
//! process; one older than [`MAX_AGE`] is dropped, never used) and is moved out of the pool to
//! the one handshake that uses it, so forward secrecy is as with pairs made on the spot.
//! BENCHMARKS.md, fourteenth session, has the gain.

use rustls::crypto::ring::kx_group;
use rustls::crypto::{ActiveKeyExchange, SupportedKxGroup};
use rustls::{Error, NamedGroup, ProtocolVersion};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tracing::debug;

/// The most key pairs kept made: as many as TLS 1.3 tickets are kept a server, one for each
/// call that can be in flight (`source::max_in_flight`).
const MAX_AHEAD: usize = super::resume::MAX_TICKETS;

/// The oldest a pair made ahead may be when a handshake takes it: a start's connections take
/// theirs within milliseconds; one left over (its connection gave up before its handshake) is
/// dropped rather than used by a later round of `exec --init --refresh` (at least 10 s later).
const MAX_AGE: Duration = Duration::from_secs(5);

/// ring's X25519, drawing on the pairs made ahead.
pub static X25519: Ahead = Ahead {
    made: Mutex::new(Vec::new()),
};

/// A key-exchange group whose key pairs may be made before a handshake asks for one.
pub struct Ahead {
    /// The pairs made, oldest first, with when each was made.
    made: Mutex<Vec<(Instant, Box<dyn ActiveKeyExchange>)>>,
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ahead").finish_non_exhaustive()
    }
}

impl Ahead {
    /// Makes one key pair for a later handshake, unless [`MAX_AHEAD`] are made; whether it
    /// made one.
    fn make_one(&self) -> bool {
        if self.len() >= MAX_AHEAD {
            return false;
        }
        // A failure here (none is known for X25519) is met again, and reported, by the
        // handshake that makes its own pair.
        match kx_group::X25519.start() {
            Ok(pair) => {
                self.lock().push((Instant::now(), pair));
                true
            }
            Err(_) => false,
        }
    }

    /// The newest pair made ahead, if one was made within [`MAX_AGE`] of `now`; older ones
    /// are dropped.
    fn take(&self, now: Instant) -> Option<Box<dyn ActiveKeyExchange>> {
        let mut made = self.lock();
        made.retain(|(at, _)| now.saturating_duration_since(*at) <= MAX_AGE);
        made.pop().map(|(_, pair)| pair)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Instant, Box<dyn ActiveKeyExchange>)>> {
        self.made.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Connections waiting for their turn now.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Whether [`make_while_idle`] runs.
static MAKING: AtomicBool = AtomicBool::new(false);

/// A connection waiting for its turn, until dropped.
#[derive(Debug)]
pub struct Waiting(());

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection starts waiting for its turn: an X25519 key pair is made for it when the thread
/// has nothing else to do, for the next handshake that needs one.
pub fn waiting() -> Waiting {
    WAITING.fetch_add(1, Ordering::Relaxed);
    if !MAKING.swap(true, Ordering::AcqRel) {
        tokio::spawn(make_while_idle(Making));
    }
    Waiting(())
}

/// Whether fewer pairs are made than connections wait.
fn wanted() -> bool {
    X25519.len() < WAITING.load(Ordering::Relaxed)
}

/// Makes key pairs while fewer are made than connections wait, one at a time, each after the
/// runtime's other work that is ready (`yield_now` lets the I/O driver run first): a handshake
/// whose server answered goes before a pair that a waiting connection will need later.
async fn make_while_idle(mut making: Making) {
    loop {
        tokio::task::yield_now().await;
        if wanted() && X25519.make_one() {
            continue;
        }
        drop(making);
        // A connection that started waiting just now saw `MAKING` set and started nothing.
        if !wanted() || MAKING.swap(true, Ordering::AcqRel) {
            return;
        }
        making = Making;
    }
}

/// [`make_while_idle`] running: clears [`MAKING`] when it stops, also when its runtime drops it
/// (the end of a run, polled or not: the future holds it from the start), so that the next
/// run's waiting connections start another.
struct Making;

impl Drop for Making {
    fn drop(&mut self) {
        MAKING.store(false, Ordering::Release);
    }
}

impl SupportedKxGroup for Ahead {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        match self.take(Instant::now()) {
            Some(pair) => {
                debug!("TLS handshake with an X25519 key pair made while a connection waited");
                Ok(pair)
            }
            None => kx_group::X25519.start(),
        }
    }

    fn name(&self) -> NamedGroup {
        kx_group::X25519.name()
    }

    fn fips(&self) -> bool {
        kx_group::X25519.fips()
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        kx_group::X25519.usable_for_version(version)
    }
}

/// The key-exchange groups of `groups` with ring's X25519 replaced by [`X25519`], in the same
/// order.
pub fn with_pairs_ahead(
    groups: Vec<&'static dyn SupportedKxGroup>,
) -> Vec<&'static dyn SupportedKxGroup> {
    groups
        .into_iter()
        .map(|g| -> &'static dyn SupportedKxGroup {
            if g.name() == NamedGroup::X25519 {
                &X25519
            } else {
                g
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Ahead {
        Ahead {
            made: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn a_pair_made_ahead_is_handed_out_once_then_new_ones_are_made() {
        let group = fresh();
        group.make_one();
        assert_eq!(group.len(), 1);
        let ahead = group.start().unwrap();
        assert_eq!(group.len(), 0);
        let made_now = group.start().unwrap();
        assert_eq!(ahead.group(), NamedGroup::X25519);
        assert_eq!(made_now.group(), NamedGroup::X25519);
        assert_ne!(ahead.pub_key(), made_now.pub_key());
    }

    #[test]
    fn every_pair_is_different_and_agrees_with_a_peer() {
        let group = fresh();
        for _ in 0..3 {
            group.make_one();
        }
        let pairs: Vec<_> = (0..4).map(|_| group.start().unwrap()).collect();
        let keys: std::collections::HashSet<_> =
            pairs.iter().map(|p| p.pub_key().to_vec()).collect();
        assert_eq!(keys.len(), 4);
        // Each pair completes an exchange: both sides derive the same secret.
        for pair in pairs {
            let peer = kx_group::X25519.start().unwrap();
            let peer_pub = peer.pub_key().to_vec();
            let ours = pair.pub_key().to_vec();
            let a = pair.complete(&peer_pub).unwrap();
            let b = peer.complete(&ours).unwrap();
            assert_eq!(a.secret_bytes(), b.secret_bytes());
        }
    }

    #[test]
    fn a_pair_made_too_long_ago_is_dropped_not_used() {
        let group = fresh();
        group.make_one();
        group.make_one();
        let later = Instant::now() + MAX_AGE + Duration::from_millis(1);
        assert!(group.take(later).is_none());
        assert_eq!(group.len(), 0, "both old pairs dropped");
        group.make_one();
        assert!(group.take(Instant::now()).is_some());
    }

    #[test]
    fn no_more_than_the_limit_are_kept() {
        let group = fresh();
        for _ in 0..MAX_AHEAD + 5 {
            group.make_one();
        }
        assert_eq!(group.len(), MAX_AHEAD);
    }

    /// The only test of the shared group and its maker (the others use groups of their own),
    /// so that no other test changes the counts it reads.
    #[test]
    fn pairs_are_made_for_the_waiting_connections_when_idle_by_one_maker_a_run() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
        };
        // A run that ends before its maker ran: the next run starts its own.
        let ended = runtime();
        let held = ended.block_on(async { waiting() });
        assert!(MAKING.load(Ordering::Acquire));
        drop(ended);
        drop(held);
        assert!(
            !MAKING.load(Ordering::Acquire),
            "the dropped maker still counts as running"
        );
        runtime().block_on(async {
            let waits = [waiting(), waiting(), waiting()];
            assert_eq!(X25519.len(), 0, "made before this task let the runtime run");
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert_eq!(X25519.len(), 3, "one pair for each waiting connection");
            drop(waits);
            let more = waiting();
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert_eq!(
                X25519.len(),
                3,
                "no pair for a connection when enough are made"
            );
            drop(more);
            for _ in 0..3 {
                X25519.start().unwrap();
            }
            assert_eq!(X25519.len(), 0);
        });
    }

    #[test]
    fn only_x25519_is_replaced() {
        let groups = with_pairs_ahead(rustls::crypto::ring::default_provider().kx_groups);
        let names: Vec<_> = groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            rustls::crypto::ring::default_provider()
                .kx_groups
                .iter()
                .map(|g| g.name())
                .collect::<Vec<_>>()
        );
        assert!(std::ptr::eq(
            groups[0] as *const dyn SupportedKxGroup as *const u8,
            &X25519 as *const Ahead as *const u8
        ));
    }
}
