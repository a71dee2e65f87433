//! The settlement outbox's worker (DESIGN.md B3): it sleeps on the server
//! clock until its next deadline (a retry's backoff, at the latest one sweep
//! interval) and is woken when a settlement is stored, so in these tests
//! work happens when the test clock moves, never by waiting. Each test runs
//! on SQLite and on PostgreSQL.

use std::time::Duration;

use crate::common::{TestApp, spawn_app, spawn_app_on_postgres, until};
use parley_billing::insert_settlement;
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel};
use parley_domain::protocol::{Outcome, SessionBill};
use parley_domain::{Clock, Currency, Money, SessionId, UserId};

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// Prices `cora`'s calls at 30 EUR and has the server's own outbox worker
/// settle one free session, then sleep until its next deadline, a sweep
/// interval (60 s of server time) away: while the test's clock stands
/// still (or moves less), the passes a test runs itself are nearly always
/// the only ones. Not always: a wake that came while the worker's pass ran
/// starts one more pass right after it, so the tests allow for the worker
/// to carry out what they queued.
async fn quiet_worker(app: &TestApp) {
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) };
    app.billing.set_price(&uid("cora"), &price).await.unwrap();
    let first = SessionId::parse("ses_worker_first").unwrap();
    let free = SessionBill { outcome: Outcome::Free, billable_secs: 0, charge: eur(0) };
    let mut conn = app.store.pool().acquire().await.unwrap();
    insert_settlement(&mut conn, &first, &free, "hangup", app.clock.now()).await.unwrap();
    drop(conn);
    app.billing.wake();
    until("the worker's pass", || async { app.billing.settlement(&first).await.unwrap().unwrap().status == "done" })
        .await;
}

/// A settlement whose first attempt fails transiently is retried when the
/// server clock reaches its backoff (1 s): the worker's next deadline is
/// that retry; once it is done, nothing is due before the next sweep.
async fn b3_the_outbox_sleeps_until_a_retry_is_due_and_runs_it_then(app: TestApp) {
    let sid = SessionId::parse("ses_outbox_retry").unwrap();
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) };
    app.billing.set_price(&uid("cora"), &price).await.unwrap();
    let hold = app.billing.place_hold(&sid, "call_outbox", &uid("sam"), &uid("cora"), Some("pm_card_visa")).await;
    assert!(hold.unwrap().is_some(), "hold placed");
    // The first capture fails transiently (a crash before its record).
    app.billing.faults().arm("sandbox.capture");
    let bill = SessionBill { outcome: Outcome::Charged, billable_secs: 600, charge: eur(3000) };
    let failed_at = app.clock.now();
    let mut conn = app.store.pool().acquire().await.unwrap();
    insert_settlement(&mut conn, &sid, &bill, "hangup", failed_at).await.unwrap();
    drop(conn);
    app.billing.wake();
    until("the failed attempt", || async { app.billing.settlement(&sid).await.unwrap().unwrap().attempts >= 1 }).await;
    assert_eq!(app.billing.settlement(&sid).await.unwrap().unwrap().status, "pending");
    let retry_at = failed_at.plus(Duration::from_secs(1));
    assert_eq!(app.billing.next_outbox_deadline(failed_at).await.unwrap(), retry_at, "sleeps until the retry");
    // Just before the backoff, the retry is not due yet.
    app.advance(Duration::from_millis(999)).await;
    let now = app.clock.now();
    assert_eq!(app.billing.next_outbox_deadline(now).await.unwrap(), retry_at, "still due at the backoff");
    // The clock reaches it: the sleeping worker runs the retry.
    app.advance(Duration::from_millis(1)).await;
    until("the retried settlement", || async { app.billing.settlement(&sid).await.unwrap().unwrap().status == "done" })
        .await;
    assert_eq!(app.billing.settlement(&sid).await.unwrap().unwrap().attempts, 2);
    let now = app.clock.now();
    assert_eq!(
        app.billing.next_outbox_deadline(now).await.unwrap(),
        now.plus(Duration::from_secs(60)),
        "nothing due: the next look is one sweep interval away"
    );
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b3_the_outbox_sleeps_until_a_retry_is_due_and_runs_it_then_on_sqlite() {
    b3_the_outbox_sleeps_until_a_retry_is_due_and_runs_it_then(spawn_app().await).await;
}

#[tokio::test]
async fn b3_the_outbox_sleeps_until_a_retry_is_due_and_runs_it_then_on_postgres() {
    b3_the_outbox_sleeps_until_a_retry_is_due_and_runs_it_then(spawn_app_on_postgres().await).await;
}

/// B3, B4: outbox passes racing over the same due settlements (two workers,
/// two nodes on one database; the server's own worker may join in) carry
/// each out once: one capture or release per hold, one ledger entry for
/// it, one attempt. Five rounds of ten.
async fn b3_racing_passes_carry_out_each_settlement_once(app: TestApp) {
    quiet_worker(&app).await;
    for round in 0..5 {
        let mut sessions = Vec::new();
        for i in 0..10 {
            let sid = SessionId::parse(format!("ses_race_{round}_{i}")).unwrap();
            let call = format!("call_race_{round}_{i}");
            let hold = app.billing.place_hold(&sid, &call, &uid("sam"), &uid("cora"), Some("pm_card_visa")).await;
            assert!(hold.unwrap().is_some(), "hold placed");
            // Even sessions reached the free window (charged), odd ones not.
            let charged = i % 2 == 0;
            let bill = if charged {
                SessionBill { outcome: Outcome::Charged, billable_secs: 600, charge: eur(3000) }
            } else {
                SessionBill { outcome: Outcome::Free, billable_secs: 0, charge: eur(0) }
            };
            let mut conn = app.store.pool().acquire().await.unwrap();
            insert_settlement(&mut conn, &sid, &bill, "hangup", app.clock.now()).await.unwrap();
            sessions.push((sid, charged));
        }
        let passes = futures_util::future::join_all((0..3).map(|_| app.billing.settle_due())).await;
        let done: usize = passes.into_iter().map(|p| p.expect("a pass")).sum();
        // The server's own worker is a fourth racer: a wake that came while
        // its pass in `quiet_worker` ran starts another at once, and it may
        // claim some of these. Each settlement is finished once, by
        // whichever pass claimed it.
        assert!(done <= 10, "round {round}: {done} finished by the test's passes, of 10");
        until("every settlement of the round finished", || async {
            let mut finished = 0;
            for (sid, _) in &sessions {
                finished += usize::from(app.billing.settlement(sid).await.unwrap().unwrap().status == "done");
            }
            finished == sessions.len()
        })
        .await;
        for (sid, charged) in &sessions {
            let s = app.billing.settlement(sid).await.unwrap().unwrap();
            assert_eq!((s.status.as_str(), s.attempts), ("done", 1), "round {round}, {sid}: {s:?}");
            let (status, kind) = if *charged { ("captured", "capture") } else { ("released", "release") };
            assert_eq!(app.billing.hold(sid).await.unwrap().unwrap().status, status, "{sid}");
            let ledger = app.billing.session_ledger(sid).await.unwrap();
            let kinds: Vec<&str> = ledger.iter().map(|l| l.kind.as_str()).collect();
            assert_eq!(kinds.iter().filter(|k| **k == kind).count(), 1, "round {round}, {sid}: {kinds:?}");
        }
    }
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b3_racing_passes_carry_out_each_settlement_once_on_sqlite() {
    b3_racing_passes_carry_out_each_settlement_once(spawn_app().await).await;
}

#[tokio::test]
async fn b3_racing_passes_carry_out_each_settlement_once_on_postgres() {
    b3_racing_passes_carry_out_each_settlement_once(spawn_app_on_postgres().await).await;
}

/// B3: a pass carries out its due settlements, several at once (their
/// provider calls overlap, their records share commits): each capture or
/// release once, with its ledger entry. One whose capture fails
/// transiently stays pending for its retry, and the others are all
/// finished; the retry, once the server clock reaches it, finishes the
/// last one.
async fn b3_one_pass_carries_out_many_and_a_failure_stops_none_of_the_others(app: TestApp) {
    quiet_worker(&app).await;
    let mut sessions = Vec::new();
    for i in 0..30 {
        let sid = SessionId::parse(format!("ses_many_{i}")).unwrap();
        let (call, seeker, consultant) = (format!("call_many_{i}"), uid("sam"), uid("cora"));
        let hold = app.billing.place_hold(&sid, &call, &seeker, &consultant, Some("pm_card_visa")).await;
        assert!(hold.unwrap().is_some(), "hold placed");
        sessions.push((sid, i % 3 == 0));
    }
    // One capture, whichever comes first, fails (a crash before its record).
    app.billing.faults().arm("sandbox.capture");
    let mut conn = app.store.pool().acquire().await.unwrap();
    for (sid, charged) in &sessions {
        let bill = if *charged {
            SessionBill { outcome: Outcome::Charged, billable_secs: 600, charge: eur(3000) }
        } else {
            SessionBill { outcome: Outcome::Free, billable_secs: 0, charge: eur(0) }
        };
        insert_settlement(&mut conn, sid, &bill, "hangup", app.clock.now()).await.unwrap();
    }
    drop(conn);
    let finished = app.billing.settle_due().await.expect("a pass");
    assert!(finished <= 29, "the failed one is not finished: {finished}");
    // Every attempt made (by this pass; by the server's worker too, had it
    // woken): 29 finished, one failed once.
    until("every settlement attempted", || async {
        let mut attempted = 0;
        for (sid, _) in &sessions {
            let s = app.billing.settlement(sid).await.unwrap().unwrap();
            attempted += usize::from(s.status == "done" || s.attempts >= 1);
        }
        attempted == sessions.len()
    })
    .await;
    let mut pending = Vec::new();
    for (sid, charged) in &sessions {
        let s = app.billing.settlement(sid).await.unwrap().unwrap();
        if s.status == "pending" {
            assert!(*charged && s.attempts == 1 && s.last_error.is_some(), "{sid}: {s:?}");
            pending.push(sid.clone());
            continue;
        }
        assert_eq!((s.status.as_str(), s.attempts), ("done", 1), "{sid}: {s:?}");
        let (status, kind) = if *charged { ("captured", "capture") } else { ("released", "release") };
        assert_eq!(app.billing.hold(sid).await.unwrap().unwrap().status, status, "{sid}");
        let ledger = app.billing.session_ledger(sid).await.unwrap();
        assert_eq!(ledger.iter().filter(|l| l.kind == kind).count(), 1, "{sid}: {ledger:?}");
    }
    assert_eq!(pending.len(), 1, "one capture failed: {pending:?}");
    // Its backoff (1 s) passed, the next pass retries it.
    app.advance(Duration::from_secs(1)).await;
    until("the retried capture", || async {
        app.billing.settle_due().await.expect("a pass");
        app.billing.settlement(&pending[0]).await.unwrap().unwrap().status == "done"
    })
    .await;
    let s = app.billing.settlement(&pending[0]).await.unwrap().unwrap();
    assert_eq!(s.attempts, 2, "{s:?}");
    assert_eq!(app.billing.hold(&pending[0]).await.unwrap().unwrap().status, "captured");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b3_one_pass_carries_out_many_and_a_failure_stops_none_of_the_others_on_sqlite() {
    b3_one_pass_carries_out_many_and_a_failure_stops_none_of_the_others(spawn_app().await).await;
}

#[tokio::test]
async fn b3_one_pass_carries_out_many_and_a_failure_stops_none_of_the_others_on_postgres() {
    b3_one_pass_carries_out_many_and_a_failure_stops_none_of_the_others(spawn_app_on_postgres().await).await;
}
