//! The run's deadline (`--timeout`): one timer that every call under it shares.
//!
//! Every AWS call of a run is bounded by the run's deadline twice (its place among the calls in
//! flight, `source::within`, and its rounds, `aws::rounds`), and tokio's timer driver is woken
//! (a write to its eventfd, then one more turn of the runtime) for nearly every timer registered
//! before it next parks: two timers a call, 100 at N = 50, 0.2 to 0.3 ms of CPU (BENCHMARKS.md,
//! eleventh session). [`scope`] makes the deadline's timer once, for the whole run; inside it,
//! [`before`] with that same instant waits on that one timer (a waker in its list) instead of
//! registering a timer of its own. Any other instant, or a call outside a [`scope`] (the unit
//! tests' fakes), gets its own timer, as with `tokio::time::timeout_at`. [`within_limit`] bounds
//! a future by a duration (the connect, read and attempt timeouts).

use futures_util::future::{Either, FutureExt as _, Shared};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::task::coop::{Unconstrained, unconstrained};
use tokio::time::{Instant, Sleep, Timeout};

/// The deadline's one timer, shared by every [`before`] under the [`scope`].
type Passed = Shared<Pin<Box<Sleep>>>;

tokio::task_local! {
    /// The deadline of the run being polled, and its timer.
    static RUN: (Instant, Passed);
}

/// The deadline passed before the work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `work` until it finishes or `deadline` passes; every [`before`] with this same
/// `deadline` inside it shares this one timer.
pub fn scope<F: Future>(
    deadline: Instant,
    work: F,
) -> impl Future<Output = Result<F::Output, Elapsed>> {
    let passed = Box::pin(tokio::time::sleep_until(deadline)).shared();
    RUN.scope(
        (deadline, passed.clone()),
        Before::Shared {
            work,
            passed: unconstrained(passed),
        },
    )
}

/// `work`'s output, or [`Elapsed`] once `deadline` passes; like `tokio::time::timeout_at`
/// (`work` is polled first, so work that is ready wins), with the [`scope`]'s timer when
/// `deadline` is its deadline. A plain function returning a future that holds `work` once:
/// an `async fn` would hold it twice (its argument and the future it is moved into), and these
/// futures nest (BENCHMARKS.md, eleventh session).
pub fn before<F: Future>(
    deadline: Instant,
    work: F,
) -> impl Future<Output = Result<F::Output, Elapsed>> {
    let shared = RUN
        .try_with(|(at, passed)| (*at == deadline).then(|| passed.clone()))
        .ok()
        .flatten();
    match shared {
        Some(passed) => Before::Shared {
            work,
            passed: unconstrained(passed),
        },
        None => Before::Own {
            timeout: tokio::time::timeout_at(deadline, work),
        },
    }
}

/// `work`'s output, or `timed_out(limit)` when `limit` (if any) passes first: a connection's
/// connect timeout, an answer's read timeout, an attempt's timeout. A plain function, like [`before`], so that the future holds
/// `work` once.
pub fn within_limit<F: Future>(
    limit: Option<Duration>,
    work: F,
    timed_out: impl FnOnce(Duration) -> F::Output,
) -> impl Future<Output = F::Output> {
    match limit {
        Some(limit) => Either::Left(
            tokio::time::timeout(limit, work)
                .map(move |done| done.unwrap_or_else(|_| timed_out(limit))),
        ),
        None => Either::Right(work),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`before`] and [`scope`]. The shared timer is polled outside tokio's
    /// cooperative budget: a timer polled with the budget spent wakes whoever polled it, and
    /// the shared timer's waker wakes every call under the scope, which would all be polled
    /// again.
    #[project = Projected]
    enum Before<F> {
        /// Under the scope's timer.
        Shared { #[pin] work: F, passed: Unconstrained<Passed> },
        /// With a timer of its own.
        Own { #[pin] timeout: Timeout<F> },
    }
}

impl<F: Future> Future for Before<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Shared { work, passed } => {
                if let Poll::Ready(out) = work.poll(cx) {
                    return Poll::Ready(Ok(out));
                }
                Pin::new(passed).poll(cx).map(|()| Err(Elapsed))
            }
            Projected::Own { timeout } => timeout.poll(cx).map_err(|_| Elapsed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_inside_the_scope_ends_at_the_scope_deadline() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(5);
        let out = scope(deadline, async {
            let quick = before(deadline, async { 7 }).await;
            let stuck = before(deadline, std::future::pending::<()>()).await;
            (quick, stuck, Instant::now() - start)
        })
        .await;
        assert_eq!(out, Ok((Ok(7), Err(Elapsed), Duration::from_secs(5))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_scope_itself_ends_at_its_deadline() {
        let start = Instant::now();
        let out = scope(start + Duration::from_secs(3), std::future::pending::<()>()).await;
        assert_eq!(
            (out, Instant::now() - start),
            (Err(Elapsed), Duration::from_secs(3))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn another_deadline_inside_the_scope_has_its_own_timer() {
        let start = Instant::now();
        let out = scope(start + Duration::from_secs(10), async {
            let earlier =
                before(start + Duration::from_secs(2), std::future::pending::<()>()).await;
            (earlier, Instant::now() - start)
        })
        .await;
        assert_eq!(out, Ok((Err(Elapsed), Duration::from_secs(2))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_ends_the_work_with_the_timeout_s_output() {
        let start = Instant::now();
        let stuck = within_limit(
            Some(Duration::from_secs(3)),
            std::future::pending::<String>(),
            |limit| format!("timed out after {limit:?}"),
        )
        .await;
        assert_eq!(stuck, "timed out after 3s");
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        let quick = within_limit(Some(Duration::ZERO), async { "done" }, |_| "timed out").await;
        assert_eq!(quick, "done");
        let unlimited = within_limit(None, async { "done" }, |_| "timed out").await;
        assert_eq!(unlimited, "done");
    }

    #[tokio::test(start_paused = true)]
    async fn outside_a_scope_the_deadline_has_its_own_timer() {
        let start = Instant::now();
        let out = before(start + Duration::from_secs(4), std::future::pending::<()>()).await;
        assert_eq!(
            (out, Instant::now() - start),
            (Err(Elapsed), Duration::from_secs(4))
        );
        let quick = before(start, async { "ready" }).await;
        assert_eq!(quick, Ok("ready"));
    }
}
