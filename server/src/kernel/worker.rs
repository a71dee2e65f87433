//! The one shape of every background loop of the server (the booking
//! scheduler, the webhook worker, retention, reconciliation): a [`Job`]
//! whose [`step`](Job::step) does what is due at `now` and returns the next
//! instant something falls due; [`run`] runs it with the domain's
//! [`run_worker`], which sleeps until then on the injected [`Clock`] (tests
//! advance a manual clock and the work happens, with no real sleep) or
//! until it is woken because work was added.

use std::future::Future;
use std::sync::Arc;

pub use parley_domain::clock::Wake;
use parley_domain::clock::run_worker;
use parley_domain::{Clock, Timestamp};

/// A background job driven by deadlines on the server clock.
pub trait Job: Send + Sync {
    /// Does the work due at `now` (server clock); returns when to run next:
    /// `Some(deadline)` (a deadline at or before `now` runs again at once),
    /// or `None` to wait until woken. Errors are the job's to log: a step
    /// that failed returns when to try again.
    fn step(&self, now: Timestamp) -> impl Future<Output = Option<Timestamp>> + Send;

    /// Called after each step with the `now` it ran at (the booking
    /// scheduler reports its progress here). Nothing by default.
    fn stepped(&self, now: Timestamp) {
        let _ = now;
    }
}

/// Runs `job` until `shutdown` resolves, with [`run_worker`]: a step at
/// once, then one each time the deadline it returned passes on `clock` or
/// `wake` is woken (a wake during a step is kept: the next wait returns at
/// once).
pub async fn run<J: Job>(job: J, clock: Arc<dyn Clock>, wake: Wake, shutdown: impl Future<Output = ()>) {
    let job = &job;
    run_worker(clock, wake, shutdown, |now| async move {
        let next = job.step(now).await;
        job.stepped(now);
        next
    })
    .await;
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use parley_domain::clock::ManualClock;

    use super::*;

    /// Records the instants it ran at; due every 10 s.
    struct Every10s(Arc<Mutex<Vec<i64>>>);

    impl Job for Every10s {
        async fn step(&self, now: Timestamp) -> Option<Timestamp> {
            self.0.lock().unwrap().push(now.unix_millis());
            Some(now.plus(Duration::from_secs(10)))
        }
    }

    async fn runs_reach(runs: &Arc<Mutex<Vec<i64>>>, n: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while runs.lock().unwrap().len() < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the job ran");
    }

    #[tokio::test]
    async fn a_job_runs_when_its_deadline_passes_on_the_clock_or_when_woken() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(0)));
        let wake = Wake::new();
        let runs = Arc::new(Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let task =
            tokio::spawn(run(Every10s(runs.clone()), clock.clone(), wake.clone(), stop.clone().cancelled_owned()));
        runs_reach(&runs, 1).await;
        clock.advance(Duration::from_secs(9));
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(*runs.lock().unwrap(), [0], "not due before its deadline");
        clock.advance(Duration::from_secs(1));
        runs_reach(&runs, 2).await;
        wake.wake();
        runs_reach(&runs, 3).await;
        assert_eq!(*runs.lock().unwrap(), [0, 10_000, 10_000]);
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn the_earliest_deadline_wins() {
        let t = Timestamp::from_unix_millis;
        assert_eq!(earliest(Some(t(5)), Some(t(3))), Some(t(3)));
        assert_eq!(earliest(None, Some(t(3))), Some(t(3)));
        assert_eq!(earliest(None, None), None);
    }
}
