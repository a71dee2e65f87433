//! Fencing of a live session's meter (issue 16): a node that takes a
//! session over raises its owner epoch in the store, and from then on the
//! store refuses the meter writes of every earlier owner — a paused or
//! partitioned former owner cannot move the session's billable time or
//! store its own settlement. docs/rules.md C6.

use parley_domain::Clock;
use parley_metering::{MeterEvent, MeterStore, MeterStoreError, OwnerEpoch, Snapshot};

use super::*;

fn checkpoint(billable_secs: u64) -> MeterEvent {
    MeterEvent::Checkpoint(Snapshot {
        billable_ms: billable_secs * 1000,
        warned: false,
        billing_started: false,
        hold_warned: false,
    })
}

async fn stored_checkpoint_secs(app: &TestApp, session: &SessionId) -> Option<i64> {
    sqlx::query_scalar::<_, i64>("SELECT billable_ms FROM meter_checkpoints WHERE session_id = $1")
        .bind(session.as_str())
        .fetch_optional(&app.store.pool())
        .await
        .unwrap()
        .map(|ms| ms / 1000)
}

async fn settlements(app: &TestApp, session: &SessionId) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM settlements WHERE session_id = $1")
        .bind(session.as_str())
        .fetch_one(&app.store.pool())
        .await
        .unwrap()
}

/// A session opened on this node is metered under epoch 1; a takeover
/// raises it to 2; the former owner's checkpoint and settlement are
/// refused, the new owner's are stored.
async fn a_takeover_fences_off_the_former_owner(app: TestApp) {
    let s = session_with(&app, PriceModel::Fixed, 3000).await;
    let at = app.clock.now();
    app.store.meter_event(&s.session_id, OwnerEpoch::FIRST, &checkpoint(100), at).await.expect("the opener writes");

    let taken = app.store.claim_session(&s.session_id).await.unwrap();
    assert_eq!(taken, Some(OwnerEpoch(2)));

    let stale = app.store.meter_event(&s.session_id, OwnerEpoch::FIRST, &checkpoint(900), at).await;
    assert!(matches!(stale, Err(MeterStoreError::Fenced { mine: OwnerEpoch(1), current: OwnerEpoch(2) })), "{stale:?}");
    assert_eq!(stored_checkpoint_secs(&app, &s.session_id).await, Some(100), "the stale write moved nothing");

    let bill = SessionBill { outcome: Outcome::Charged, billable_secs: 900, charge: eur(3000) };
    let stale =
        app.store.orphan_settlement(&s.session_id, OwnerEpoch::FIRST, &bill, SessionEndReason::Abandoned, at).await;
    assert!(matches!(stale, Err(MeterStoreError::Fenced { .. })), "{stale:?}");
    assert_eq!(settlements(&app, &s.session_id).await, 0, "no settlement from the stale owner");

    app.store.meter_event(&s.session_id, OwnerEpoch(2), &checkpoint(110), at).await.expect("the new owner writes");
    assert_eq!(stored_checkpoint_secs(&app, &s.session_id).await, Some(110));
}

#[tokio::test]
async fn a_takeover_fences_off_the_former_owner_on_sqlite() {
    a_takeover_fences_off_the_former_owner(spawn_app().await).await;
}

#[tokio::test]
async fn a_takeover_fences_off_the_former_owner_on_postgres() {
    a_takeover_fences_off_the_former_owner(spawn_app_on_postgres().await).await;
}

/// Rivals: in each round, several nodes take the same session over at once
/// while its owners write under every epoch that exists. Every takeover gets
/// its own epoch (no two nodes believe they own the session under the same
/// one), and afterwards only the last owner's write is stored.
async fn racing_takeovers_get_distinct_epochs(app: TestApp) {
    let s = session_with(&app, PriceModel::Fixed, 3000).await;
    let at = app.clock.now();
    let mut next = 2;
    for round in 0..12u64 {
        let rivals = 2 + (round % 4) as usize;
        let claims: Vec<_> = (0..rivals)
            .map(|_| {
                let store = app.store.clone();
                let id = s.session_id.clone();
                tokio::spawn(async move { store.claim_session(&id).await.unwrap().expect("open session") })
            })
            .collect();
        // Writes of the owners that exist so far, racing the takeovers.
        let writes: Vec<_> = (1..next)
            .map(|e| {
                let store = app.store.clone();
                let id = s.session_id.clone();
                tokio::spawn(async move { store.meter_event(&id, OwnerEpoch(e), &checkpoint(round), at).await })
            })
            .collect();
        let mut got: Vec<u64> = Vec::new();
        for c in claims {
            got.push(c.await.unwrap().0);
        }
        got.sort_unstable();
        let want: Vec<u64> = (next..next + rivals as u64).collect();
        assert_eq!(got, want, "round {round}: one epoch per takeover");
        next += rivals as u64;
        for w in writes {
            // Each write either landed before the takeovers or was refused.
            match w.await.unwrap() {
                Ok(()) | Err(MeterStoreError::Fenced { .. }) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        let last = OwnerEpoch(next - 1);
        for e in 1..next {
            let r = app.store.meter_event(&s.session_id, OwnerEpoch(e), &checkpoint(1000 + round), at).await;
            assert_eq!(r.is_ok(), OwnerEpoch(e) == last, "round {round}: epoch {e} of {last}: {r:?}");
        }
    }
}

#[tokio::test]
async fn racing_takeovers_get_distinct_epochs_on_sqlite() {
    racing_takeovers_get_distinct_epochs(spawn_app().await).await;
}

#[tokio::test]
async fn racing_takeovers_get_distinct_epochs_on_postgres() {
    racing_takeovers_get_distinct_epochs(spawn_app_on_postgres().await).await;
}

/// A restarted node takes its open sessions over (epoch 2), meters them on
/// from the last checkpoint and settles each once.
async fn a_restart_takes_open_sessions_over(mut app: TestApp) {
    let s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(610)).await;
    common::until("the 610 s checkpoint", || async { stored_checkpoint_secs(&app, &s.session_id).await == Some(610) })
        .await;
    app.stop().await;
    let session_id = s.session_id.clone();
    drop(s);
    let app = app.restart().await;
    let epoch: i64 = sqlx::query_scalar("SELECT owner_epoch FROM sessions WHERE id = $1")
        .bind(session_id.as_str())
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    assert_eq!(epoch, 2, "the restarted node owns the session under a new epoch");
    // Nobody comes back: the new owner ends it after the grace period, as
    // of the restart, and settles it once.
    app.advance(SECS(30)).await;
    let moderator = app.token("mo", Role::Moderator);
    let d = settled(&ApiClient::new(&app.base).unwrap(), &moderator, &session_id).await;
    assert_eq!((d.outcome, d.billable_secs), (Some(Outcome::Charged), 610));
    assert_eq!(settlements(&app, &session_id).await, 1);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_restart_takes_open_sessions_over_on_sqlite() {
    a_restart_takes_open_sessions_over(spawn_app().await).await;
}

#[tokio::test]
async fn a_restart_takes_open_sessions_over_on_postgres() {
    a_restart_takes_open_sessions_over(spawn_app_on_postgres().await).await;
}

/// Two nodes of a cluster (one PostgreSQL, one Redis) start at once after
/// the node that metered a session stopped: the session's lease lets only
/// one of them take it over (one new epoch, not two), and it is settled once.
#[tokio::test]
async fn nodes_starting_together_take_each_open_session_over_once() {
    let url = common::fresh_postgres_url().await;
    let prefix = crate::cluster::fresh_prefix();
    let clustered = |c: &mut parley_server::Config| {
        c.database_url = url.clone();
        c.cluster.redis_url = Some(crate::cluster::redis_url());
        c.cluster.redis_prefix = prefix.clone();
    };
    let clock = common::test_clock();
    let mut first = common::spawn_app_with_clock(clock.clone(), clustered).await;
    let s = session_with(&first, PriceModel::Fixed, 3000).await;
    first.advance(SECS(610)).await;
    common::until("the 610 s checkpoint", || async {
        stored_checkpoint_secs(&first, &s.session_id).await == Some(610)
    })
    .await;
    first.stop().await; // checkpoints, then gives its leases up
    let session_id = s.session_id.clone();
    drop(s);

    let (a, b) = tokio::join!(
        common::spawn_app_with_clock(clock.clone(), clustered),
        common::spawn_app_with_clock(clock.clone(), clustered)
    );
    let epoch: i64 = sqlx::query_scalar("SELECT owner_epoch FROM sessions WHERE id = $1")
        .bind(session_id.as_str())
        .fetch_one(&a.store.pool())
        .await
        .unwrap();
    assert_eq!(epoch, 2, "one of the two nodes took the session over, once");
    // Nobody comes back: its owner ends it after the grace period and it
    // is settled once.
    a.advance(SECS(30)).await;
    let moderator = a.token("mo", Role::Moderator);
    let d = settled(&ApiClient::new(&a.base).unwrap(), &moderator, &session_id).await;
    assert_eq!((d.outcome, d.billable_secs), (Some(Outcome::Charged), 610));
    assert_eq!(settlements(&a, &session_id).await, 1);
    drop(b);
    a.assert_reconciled().await;
}
