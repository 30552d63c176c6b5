//! HTTP/2 when a server offers it: the concurrent requests of a start share one connection.
//!
//! kms-env offers `h2` and `http/1.1` by ALPN, as the SDK's own client does. Requests share an
//! origin's HTTP/2 connection once it is made ([`super::https`]), but a start sends all its
//! requests at once, before any connection exists, so each would make a connection and a TLS
//! handshake of its own. So to an origin whose protocol is not known yet, or that speaks
//! HTTP/2 and has no open connection, the first request goes ahead and the others wait until
//! its connection is made ([`MAX_WAIT`] at most): then they share it (HTTP/2) or make their own,
//! resuming its TLS session (HTTP/1.1, [`super::resume`]). To an origin known to speak
//! HTTP/1.1, or that has an open HTTP/2 connection, requests go at once. The measurements are in
//! BENCHMARKS.md (the third session's changes, "HTTP/2").
//!
//! [`Origin::admit`] is the pure decision; [`Origins`] holds every origin's state and waits.

use super::resume::MAX_WAIT;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The protocol a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1: one request at a time per connection.
    Http1,
    /// HTTP/2: every request on one connection.
    Http2,
}

impl Protocol {
    /// The protocol as people write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http1 => "HTTP/1.1",
            Self::Http2 => "HTTP/2",
        }
    }
}

/// What is known of one origin (scheme, host and port).
#[derive(Debug, Default, Clone)]
pub struct Origin {
    /// What the last connection made negotiated.
    protocol: Option<Protocol>,
    /// Connections being made.
    connecting: usize,
    /// Open HTTP/2 connections.
    open_h2: usize,
    /// A request went ahead to learn the protocol and has neither started a connection nor
    /// ended.
    probing: bool,
}

/// What a request does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go; its connection tells the protocol ([`Origin::probe_ended`] when the request ends).
    Probe,
    /// Go.
    Go,
    /// Wait for a connection under way.
    Wait,
}

impl Origin {
    /// The decision for a request; marks the origin probed for [`Admit::Probe`].
    pub fn admit(&mut self) -> Admit {
        if self.open_h2 > 0 || self.protocol == Some(Protocol::Http1) {
            return Admit::Go;
        }
        if self.connecting > 0 || self.probing {
            return Admit::Wait;
        }
        self.probing = true;
        Admit::Probe
    }

    /// A connection starts (any request's: the probe has done its part).
    pub fn connecting(&mut self) {
        self.connecting += 1;
        self.probing = false;
    }

    /// A connection was made with `protocol`, or failed (`None`).
    pub fn connected(&mut self, protocol: Option<Protocol>) {
        self.connecting = self.connecting.saturating_sub(1);
        if let Some(protocol) = protocol {
            self.protocol = Some(protocol);
            if protocol == Protocol::Http2 {
                self.open_h2 += 1;
            }
        }
    }

    /// An HTTP/2 connection closed.
    pub fn closed_h2(&mut self) {
        self.open_h2 = self.open_h2.saturating_sub(1);
    }

    /// The probing request ended (it may not have needed a connection).
    pub fn probe_ended(&mut self) {
        self.probing = false;
    }
}

/// The key of an origin (scheme, host and port), as HTTP clients key their connections.
pub fn origin_of(uri: &http::Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or(""),
        uri.authority().map_or("", |a| a.as_str())
    )
}

/// The state of every origin of the HTTPS client, and the gate of its requests.
#[derive(Debug, Default)]
pub struct Origins {
    origins: Mutex<HashMap<String, Origin>>,
    changed: Notify,
}

impl Origins {
    fn with<T>(&self, origin: &str, f: impl FnOnce(&mut Origin) -> T) -> T {
        let mut origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = origins.get_mut(origin) {
            return f(state);
        }
        f(origins.entry(origin.to_owned()).or_default())
    }

    fn change(&self, origin: &str, f: impl FnOnce(&mut Origin)) {
        self.with(origin, f);
        self.changed.notify_waiters();
    }

    /// Waits until a request to `origin` may go; the guard ends its probe, if it is one.
    pub async fn admit(self: &Arc<Self>, origin: &str) -> Option<Mark> {
        let deadline = Instant::now() + MAX_WAIT;
        // Made when first awaited, and once (every change of an origin wakes every waiter).
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.with(origin, Origin::admit) {
                Admit::Go => return None,
                Admit::Probe => return Some(self.mark(origin.to_owned(), Origin::probe_ended)),
                Admit::Wait => {}
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::select! {
                () = &mut changed => {}
                () = &mut timer => {}
            }
        }
    }

    /// The protocol `origin`'s last connection negotiated, if one was made.
    pub fn protocol(&self, origin: &str) -> Option<Protocol> {
        self.with(origin, |o| o.protocol)
    }

    /// A connection to `origin` starts; the guard counts it failed unless
    /// [`Mark::connected`] is called.
    pub fn connecting(self: &Arc<Self>, origin: String) -> Mark {
        self.change(&origin, Origin::connecting);
        self.mark(origin, |o| o.connected(None))
    }

    fn mark(self: &Arc<Self>, origin: String, on_drop: fn(&mut Origin)) -> Mark {
        Mark {
            origins: self.clone(),
            origin,
            on_drop,
        }
    }
}

/// What an origin is told when the guard is dropped: that a probing request ended, that a
/// connection attempt failed, or that an HTTP/2 connection closed.
#[derive(Debug)]
pub struct Mark {
    origins: Arc<Origins>,
    origin: String,
    on_drop: fn(&mut Origin),
}

impl Mark {
    /// The connection of this attempt was made with `protocol`; an HTTP/2 connection holds the
    /// guard returned until it closes.
    pub fn connected(mut self, protocol: Protocol) -> Option<Mark> {
        self.origins
            .change(&self.origin, |o| o.connected(Some(protocol)));
        if protocol == Protocol::Http2 {
            self.on_drop = Origin::closed_h2;
            Some(self)
        } else {
            self.on_drop = |_| {};
            None
        }
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        self.origins.change(&self.origin, self.on_drop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_probes_and_the_others_wait_for_its_connection() {
        let mut o = Origin::default();
        assert_eq!(o.admit(), Admit::Probe);
        assert_eq!(o.admit(), Admit::Wait, "the probe has not connected yet");
        o.connecting();
        assert_eq!(o.admit(), Admit::Wait, "its connection is being made");
        o.connected(Some(Protocol::Http2));
        assert_eq!(o.admit(), Admit::Go, "they share it");
        o.probe_ended();
        assert_eq!(o.admit(), Admit::Go);
    }

    #[test]
    fn http1_lets_everyone_make_a_connection() {
        let mut o = Origin::default();
        assert_eq!(o.admit(), Admit::Probe);
        o.connecting();
        o.connected(Some(Protocol::Http1));
        assert_eq!(o.admit(), Admit::Go);
        o.connecting();
        assert_eq!(o.admit(), Admit::Go, "no waiting for HTTP/1.1 connections");
    }

    #[test]
    fn a_failed_connection_lets_the_next_request_probe() {
        let mut o = Origin::default();
        assert_eq!(o.admit(), Admit::Probe);
        o.connecting();
        o.connected(None);
        assert_eq!(o.admit(), Admit::Probe, "nothing was learned");
        assert_eq!(o.admit(), Admit::Wait);
    }

    #[test]
    fn an_http2_origin_without_an_open_connection_probes_again() {
        let mut o = Origin::default();
        o.admit();
        o.connecting();
        o.connected(Some(Protocol::Http2));
        o.probe_ended();
        o.closed_h2();
        assert_eq!(
            o.admit(),
            Admit::Probe,
            "the next burst makes one connection"
        );
        assert_eq!(o.admit(), Admit::Wait);
    }

    #[test]
    fn a_probe_that_needed_no_connection_releases_the_others() {
        let mut o = Origin::default();
        assert_eq!(o.admit(), Admit::Probe);
        o.probe_ended();
        assert_eq!(o.admit(), Admit::Probe);
    }

    #[test]
    fn origins_are_keyed_as_the_pool_keys_them() {
        let uri: http::Uri = "https://kms.eu-west-1.amazonaws.com/path?x=1"
            .parse()
            .unwrap();
        assert_eq!(origin_of(&uri), "https://kms.eu-west-1.amazonaws.com");
        let uri: http::Uri = "https://localhost:8443/".parse().unwrap();
        assert_eq!(origin_of(&uri), "https://localhost:8443");
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_go_when_the_connection_is_made_or_at_the_deadline() {
        let origins = Arc::new(Origins::default());
        let probe = origins.admit("https://a").await;
        assert!(probe.is_some());
        let attempt = origins.connecting("https://a".to_owned());
        let waiter = tokio::spawn({
            let origins = origins.clone();
            async move { origins.admit("https://a").await.is_none() }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let open = attempt.connected(Protocol::Http2);
        assert!(waiter.await.unwrap(), "it shares the connection");
        drop(open);
        drop(probe);
        let started = Instant::now();
        let _probe = origins.admit("https://a").await;
        assert!(origins.admit("https://a").await.is_none());
        assert!(
            started.elapsed() >= MAX_WAIT,
            "waited for the probe, at most MAX_WAIT"
        );
    }
}
