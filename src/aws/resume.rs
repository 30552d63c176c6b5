//! TLS session resumption across the concurrent connections of one start.
//!
//! Every concurrent call is one connection (HTTP/1.1), so 50 `kms:` values are 50 TLS
//! handshakes. A full handshake costs the client an X25519 exchange and a certificate chain
//! verification, and the server an RSA signature; a resumed one (TLS 1.3 PSK with a fresh
//! X25519 exchange) skips the certificates on both sides. So the first connection to a host
//! makes a full handshake and the others, once their TCP connection is up, wait for a session
//! ticket from it (or from the connections it let through) and resume, for at most
//! [`MAX_WAIT`]: see BENCHMARKS.md, "TLS sessions", for the measurements behind [`MAX_WAIT`]
//! and [`GRACE`]. A connection reserves the ticket it will use, so that each ticket serves one
//! connection (rustls uses a TLS 1.3 ticket once, as RFC 8446 asks).
//!
//! While a connection waits, an X25519 key pair is made for it in the runtime's idle time
//! ([`super::keyshare`]).
//!
//! [`Tickets`] is the rustls session store and the gate: [`Host::turn`] is the pure decision,
//! [`Tickets::turn`] waits for it. It keeps the TLS 1.3 tickets itself, up to [`MAX_TICKETS`] a
//! server: rustls's in-memory cache keeps 8 and drops the oldest, so a connection that had
//! reserved a ticket could find it gone and make a full handshake (BENCHMARKS.md, ninth
//! session). It keeps key-exchange hints and TLS 1.2 sessions too, and finds a server by its
//! name's text in a list: a start speaks to a handful of hosts, and hashing a `ServerName` (a
//! SipHash write per lowercased character) a dozen times a connection was a tenth of what a
//! connection cost over the floor (BENCHMARKS.md, thirteenth session).

use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The longest a connection waits for a ticket before it makes a full handshake: what a start
/// can lose to a server whose tickets come slowly (round trips of tens of milliseconds, to
/// another region); in-region, the tickets for 50 connections come well within it.
pub const MAX_WAIT: Duration = Duration::from_millis(20);

/// The most TLS 1.3 tickets kept for one server: one for each call that can be in flight
/// (`source::max_in_flight`); the oldest goes when another comes.
pub const MAX_TICKETS: usize = 64;

/// How long after the last handshake to a host ends a ticket is still expected. A made
/// handshake ends when the server's first records after it are read (`https::Handshake`),
/// which, from a TLS 1.3 server that sends tickets, are its tickets: this is for a server that
/// sends them later, and the end of a failed handshake.
pub const GRACE: Duration = Duration::from_millis(5);

/// What is known of one server's sessions.
#[derive(Debug, Default, Clone)]
pub struct Host {
    /// TLS 1.3 tickets in the store.
    available: usize,
    /// Tickets promised to connections that have not taken them yet.
    reserved: usize,
    /// Handshakes under way (each may bring tickets).
    handshaking: usize,
    /// When the last handshake ended.
    last_done: Option<Instant>,
    /// A TLS 1.2 session is stored (reusable by every connection).
    tls12: bool,
    /// Tickets received in all.
    tickets_seen: usize,
    /// A handshake ended and no ticket came within the grace: the server sends none.
    quiet: bool,
}

/// What a connection whose TCP connection is up does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Handshake now, resuming with the ticket reserved for it.
    Resume,
    /// Handshake now, in full (or with whatever the store has).
    Full,
    /// Wait for a ticket or the end of a handshake, at most this long when given.
    Wait(Option<Duration>),
}

impl Host {
    /// The decision for a connection at `now`; reserves a ticket for [`Turn::Resume`].
    pub fn turn(&mut self, now: Instant) -> Turn {
        if self.tls12 {
            return Turn::Resume;
        }
        if self.available > self.reserved {
            self.reserved += 1;
            return Turn::Resume;
        }
        if self.quiet {
            return Turn::Full;
        }
        if self.handshaking > 0 {
            return Turn::Wait(None);
        }
        match self.last_done {
            Some(done) if now < done + GRACE => Turn::Wait(Some(done + GRACE - now)),
            Some(_) => {
                if self.tickets_seen == 0 {
                    self.quiet = true;
                }
                Turn::Full
            }
            None => Turn::Full,
        }
    }

    /// A handshake starts.
    pub fn started(&mut self) {
        self.handshaking += 1;
    }

    /// A handshake ended (either way) at `now`; a connection that `reserved` a ticket lets go
    /// of the reservation (the ticket itself left the store when rustls took it). `answered`:
    /// the server's first records after the handshake were read, and a server that sends
    /// tickets sends them first, so without a ticket by then it sends none and nobody waits
    /// for the grace. Returns whom it concerns among the waiting connections.
    pub fn ended(&mut self, now: Instant, reserved: bool, answered: bool) -> Wake {
        self.handshaking = self.handshaking.saturating_sub(1);
        self.last_done = Some(now);
        if reserved {
            self.reserved = self.reserved.saturating_sub(1);
        }
        if answered && self.tickets_seen == 0 {
            self.quiet = true;
        }
        if self.handshaking == 0 {
            // Every waiting connection now waits for the grace, or goes.
            Wake::All
        } else if reserved && self.available > self.reserved {
            // Its ticket was not taken (the handshake failed first): another can use it.
            Wake::One
        } else {
            Wake::None
        }
    }

    fn ticket_in(&mut self) {
        self.available += 1;
        self.tickets_seen += 1;
        self.quiet = false;
    }

    fn ticket_out(&mut self) {
        self.available = self.available.saturating_sub(1);
    }
}

/// Whom a change of a [`Host`] concerns among the connections waiting for their turn: waking
/// them all at each ticket and each handshake's end was about ten wake-ups a connection at 50
/// (BENCHMARKS.md, twelfth session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// No decision changes.
    None,
    /// One more connection can resume (a ticket came, or a reservation was let go).
    One,
    /// Every decision may change.
    All,
}

/// The session store of the HTTPS client, and the gate of its connections.
#[derive(Debug)]
pub struct Tickets {
    servers: Mutex<Vec<Server>>,
    changed: Notify,
}

/// One server (by its name's text, as the connections give it): its state, its TLS 1.3
/// tickets, oldest first (as many as [`Host`] counts), its key-exchange hint and its TLS 1.2
/// session.
#[derive(Debug)]
struct Server {
    name: String,
    host: Host,
    tls13: VecDeque<Tls13ClientSessionValue>,
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
}

impl Tickets {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            servers: Mutex::new(Vec::new()),
            changed: Notify::new(),
        })
    }

    fn with_server<T>(&self, name: &ServerName<'_>, f: impl FnOnce(&mut Server) -> T) -> T {
        let name = name.to_str();
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        let at = match servers.iter().position(|s| s.name == *name) {
            Some(at) => at,
            None => {
                servers.push(Server {
                    name: name.into_owned(),
                    host: Host::default(),
                    tls13: VecDeque::new(),
                    kx_hint: None,
                    tls12: None,
                });
                servers.len() - 1
            }
        };
        f(&mut servers[at])
    }

    fn with<T>(&self, name: &ServerName<'_>, f: impl FnOnce(&mut Host) -> T) -> T {
        self.with_server(name, |s| f(&mut s.host))
    }

    /// Waits until a connection to `name` whose TCP connection is up may handshake, and counts
    /// its handshake as started; `meanwhile` runs once if it has to wait, before the wait, and
    /// what it returns is kept until the wait ends. Returns whether a ticket was reserved for it.
    pub async fn turn<G>(&self, name: &ServerName<'static>, meanwhile: impl FnOnce() -> G) -> bool {
        let mut meanwhile = Some(meanwhile);
        let mut _during = None;
        let deadline = Instant::now() + MAX_WAIT;
        // One timer for the whole wait, moved only when the decision asks to look again
        // sooner: every change of the store wakes every waiting connection, and a new timer at
        // each wake was about ten a connection at 50 (BENCHMARKS.md, twelfth session).
        let timer = tokio::time::sleep_until(deadline.into());
        tokio::pin!(timer);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            // Past the deadline, a ticket that is there is still taken: a connection polled
            // late, behind the other handshakes of the one thread, resumes all the same.
            let turn = match self.with(name, |h| h.turn(now)) {
                Turn::Wait(_) if now >= deadline => Turn::Full,
                turn => turn,
            };
            let wake = match turn {
                Turn::Resume | Turn::Full => {
                    self.with(name, Host::started);
                    return turn == Turn::Resume;
                }
                Turn::Wait(wait) => wait.map_or(deadline, |w| (now + w).min(deadline)),
            };
            if let Some(work) = meanwhile.take() {
                _during = Some(work());
            }
            if timer.deadline() != wake.into() {
                timer.as_mut().reset(wake.into());
            }
            tokio::select! {
                () = &mut changed => {}
                () = &mut timer => {}
            }
        }
    }

    /// The handshake of a connection ended; `reserved` is what [`Tickets::turn`] returned,
    /// `answered` whether the server's first records after it were read (see [`Host::ended`]).
    pub fn ended(&self, name: &ServerName<'static>, reserved: bool, answered: bool) {
        let wake = self.with(name, |h| h.ended(Instant::now(), reserved, answered));
        self.wake(wake);
    }

    fn wake(&self, wake: Wake) {
        match wake {
            Wake::None => {}
            Wake::One => self.changed.notify_one(),
            Wake::All => self.changed.notify_waiters(),
        }
    }
}

impl ClientSessionStore for Tickets {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.with_server(&server_name, |s| s.kx_hint = Some(group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.with_server(server_name, |s| s.kx_hint)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.with_server(&server_name, |s| {
            s.host.tls12 = true;
            s.tls12 = Some(value);
        });
        self.changed.notify_waiters();
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with_server(server_name, |s| s.tls12.clone())
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.with_server(server_name, |s| {
            s.host.tls12 = false;
            s.tls12 = None;
        });
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.with_server(&server_name, |s| {
            if s.tls13.len() == MAX_TICKETS {
                s.tls13.pop_front();
                s.host.ticket_out();
            }
            s.tls13.push_back(value);
            s.host.ticket_in();
        });
        self.wake(Wake::One);
    }

    /// The newest ticket (as rustls's cache gives them).
    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.with_server(server_name, |s| {
            let ticket = s.tls13.pop_back();
            if ticket.is_some() {
                s.host.ticket_out();
            }
            ticket
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_first_connection_goes_in_full_and_the_next_wait_for_its_tickets() {
        let t0 = Instant::now();
        let mut h = Host::default();
        assert_eq!(h.turn(t0), Turn::Full);
        h.started();
        assert_eq!(h.turn(t0), Turn::Wait(None));
        h.ended(t0 + MS, false, false);
        assert!(matches!(h.turn(t0 + MS), Turn::Wait(Some(_))));
        h.ticket_in();
        h.ticket_in();
        assert_eq!(h.turn(t0 + MS), Turn::Resume);
        assert_eq!(h.turn(t0 + MS), Turn::Resume);
        h.started();
        h.started();
        assert_eq!(
            h.turn(t0 + MS),
            Turn::Wait(None),
            "two tickets, two resumptions"
        );
    }

    #[test]
    fn a_server_without_tickets_is_waited_for_once() {
        let t0 = Instant::now();
        let mut h = Host::default();
        assert_eq!(h.turn(t0), Turn::Full);
        h.started();
        h.ended(t0 + MS, false, false);
        let later = t0 + MS + GRACE;
        assert_eq!(h.turn(later), Turn::Full);
        assert!(h.quiet);
        h.started();
        assert_eq!(h.turn(later), Turn::Full, "no more waiting");
    }

    #[test]
    fn a_server_whose_first_records_bring_no_ticket_is_not_waited_for() {
        let t0 = Instant::now();
        let mut h = Host::default();
        h.started();
        assert_eq!(h.ended(t0 + MS, false, true), Wake::All);
        assert_eq!(h.turn(t0 + MS), Turn::Full, "no grace");
        let mut h = Host::default();
        h.started();
        h.ticket_in();
        h.ended(t0 + MS, false, true);
        assert_eq!(h.turn(t0 + MS), Turn::Resume, "its ticket came first");
    }

    #[test]
    fn a_tls12_session_lets_everyone_resume() {
        let t0 = Instant::now();
        let mut h = Host::default();
        h.started();
        h.tls12 = true;
        assert_eq!(h.turn(t0), Turn::Resume);
        assert_eq!(h.turn(t0), Turn::Resume);
    }

    #[test]
    fn an_unused_reservation_is_given_back() {
        let t0 = Instant::now();
        let mut h = Host::default();
        h.ticket_in();
        assert_eq!(h.turn(t0), Turn::Resume);
        h.started();
        h.ended(t0, true, false);
        assert_eq!(h.turn(t0), Turn::Resume, "the ticket is still there");
    }

    #[test]
    fn a_handshake_s_end_wakes_whom_it_concerns() {
        let t0 = Instant::now();
        let mut h = Host::default();
        h.started();
        h.started();
        assert_eq!(
            h.ended(t0, false, false),
            Wake::None,
            "another handshake is under way: the waiting still wait for it"
        );
        assert_eq!(
            h.ended(t0, false, false),
            Wake::All,
            "none is under way: all decide again"
        );
        h.ticket_in();
        h.ticket_in();
        assert_eq!(h.turn(t0), Turn::Resume);
        assert_eq!(h.turn(t0), Turn::Resume);
        h.started();
        h.started();
        h.ticket_out();
        assert_eq!(
            h.ended(t0, true, false),
            Wake::None,
            "its ticket was used: none is spare"
        );
        h.started();
        assert_eq!(
            h.ended(t0, true, false),
            Wake::One,
            "a failed handshake let go of a ticket it had not taken"
        );
    }

    #[test]
    fn each_server_has_its_own_state_and_key_exchange_hint() {
        let tickets = Tickets::new();
        let kms = ServerName::try_from("kms.eu-west-1.amazonaws.com").unwrap();
        let ssm = ServerName::try_from("ssm.eu-west-1.amazonaws.com").unwrap();
        tickets.set_kx_hint(kms.clone(), NamedGroup::X25519);
        assert_eq!(tickets.kx_hint(&kms), Some(NamedGroup::X25519));
        assert_eq!(tickets.kx_hint(&ssm), None);
        tickets.with(&kms, Host::started);
        assert_eq!(tickets.with(&kms, |h| h.handshaking), 1);
        assert_eq!(tickets.with(&ssm, |h| h.handshaking), 0);
        assert!(tickets.tls12_session(&kms).is_none());
        assert_eq!(tickets.servers.lock().unwrap().len(), 2);
    }
}
