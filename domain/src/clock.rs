//! [`Clock`] implementations (the system clock, and a manual clock for
//! tests) and [`run_worker`], the one shape of every background loop: sleep
//! on the injected clock until the next deadline, or until woken because work
//! was added. Behind the `clock` feature (it needs tokio's timers).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};

use crate::{Clock, Sleep, Timestamp};

/// The server's wall clock (Unix time). Sleeps are tokio timers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        Timestamp::from_unix_millis(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let wait = deadline.since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to: tests call [`ManualClock::advance`]
/// and every sleeper whose deadline has passed wakes up.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<Timestamp>,
}

impl ManualClock {
    /// A manual clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock { now: watch::Sender::new(start) }
    }

    /// Moves the clock forward by `by` and wakes the sleepers that are due.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t = t.plus(by));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= deadline {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone: the deadline never comes.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// Wakes a worker run by [`run_worker`] because work was added (a row
/// inserted, a retry scheduled earlier than the worker's deadline). Cheap to
/// clone; a wake while the worker is busy is kept, never lost (one pending
/// wake at most, like [`Notify::notify_one`]).
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// A wake handle nobody has used yet.
    pub fn new() -> Self {
        Wake::default()
    }

    /// Makes the worker run its step now (or as soon as its current step ends).
    pub fn wake(&self) {
        self.0.notify_one();
    }

    async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Runs a deadline-driven background worker until `shutdown` resolves.
///
/// `step(now)` does the work that is due at `now` (read from `clock`) and
/// returns when it wants to run next: `Some(deadline)`, or `None` to wait
/// until woken. Between steps the worker sleeps with [`Clock::sleep_until`]
/// (so a manual clock in tests makes the work happen by advancing time,
/// without sleeping) or until `wake` is woken. A step is never cancelled
/// half-way by shutdown: shutdown is observed between steps.
pub async fn run_worker<S, F>(clock: Arc<dyn Clock>, wake: Wake, shutdown: impl Future<Output = ()>, mut step: S)
where
    S: FnMut(Timestamp) -> F,
    F: Future<Output = Option<Timestamp>>,
{
    tokio::pin!(shutdown);
    loop {
        let next = step(clock.now()).await;
        let sleep: Sleep = match next {
            Some(deadline) => clock.sleep_until(deadline),
            None => Box::pin(std::future::pending()),
        };
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            () = wake.woken() => {}
            () = sleep => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_only_when_the_clock_passes_their_deadline() {
        let clock = std::sync::Arc::new(ManualClock::new(Timestamp::from_unix_millis(0)));
        let sleep = clock.sleep_until(Timestamp::from_unix_millis(1_000));
        let task = tokio::spawn(sleep);
        clock.advance(Duration::from_millis(999));
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        clock.advance(Duration::from_millis(1));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_worker_runs_at_its_deadline_and_when_woken_never_otherwise() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(0)));
        let runs = Arc::new(AtomicUsize::new(0));
        let wake = Wake::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn({
            let (clock, runs, wake) = (clock.clone() as Arc<dyn Clock>, runs.clone(), wake.clone());
            async move {
                run_worker(
                    clock,
                    wake,
                    async {
                        stop_rx.await.ok();
                    },
                    |now| {
                        let runs = runs.clone();
                        async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            Some(now.plus(Duration::from_secs(60)))
                        }
                    },
                )
                .await;
            }
        });
        let ran = |n| {
            let runs = runs.clone();
            async move {
                while runs.load(Ordering::SeqCst) < n {
                    tokio::task::yield_now().await;
                }
            }
        };
        ran(1).await; // first step at start
        clock.advance(Duration::from_secs(59));
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "ran before its deadline");
        clock.advance(Duration::from_secs(1));
        ran(2).await; // the deadline came
        wake.wake();
        ran(3).await; // woken with work, deadline an hour away
        stop_tx.send(()).unwrap();
        worker.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
