//! The SQL store on both backends: SQLite (a temp file) and PostgreSQL (a
//! fresh database on `TEST_DATABASE_URL`), with the same script.

use crate::common;

use parley_billing::{Committer, Statement};
use sqlx::Row;

use parley_domain::protocol::{CallEndReason, MediaState, Role, SessionEndReason, UserInfo};
use parley_domain::{CallId, SessionId, Timestamp, UserId};
use parley_server::store::{Backend, SqlStore};
use parley_signaling::Store;
use parley_signaling::store::{CallRecord, CallState, SessionEvent, SessionRecord};

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

/// Call `call_<prefix><n>` (session `ses_<prefix><n>`) from `sam` to
/// `cora`, created at 1 s.
fn call_record(prefix: &str, n: usize) -> CallRecord {
    CallRecord {
        call_id: id::<CallId>(&format!("call_{prefix}{n}")),
        session_id: id::<SessionId>(&format!("ses_{prefix}{n}")),
        seeker_id: id::<UserId>("sam"),
        consultant_id: id::<UserId>("cora"),
        created_at: t(1_000),
        recording: false,
        seeker_premium: false,
    }
}

/// The session `call` opens at 3 s, with id `session_id`.
fn session_of(call: &CallRecord, session_id: &SessionId) -> SessionRecord {
    SessionRecord {
        session_id: session_id.clone(),
        call_id: call.call_id.clone(),
        seeker_id: call.seeker_id.clone(),
        consultant_id: call.consultant_id.clone(),
        opened_at: t(3_000),
        recording: false,
        scheduled: false,
    }
}

async fn exercise(store: &SqlStore) {
    // Users: inserted, then updated in place.
    let sam = common::user("sam", Role::Seeker);
    let cora = common::user("cora", Role::Consultant);
    store.users_seen(&[sam.clone(), cora.clone()], t(1_000)).await.unwrap();
    assert_eq!(store.user(&id("sam")).await.unwrap(), Some(sam.clone()));
    assert_eq!(store.user(&id("nobody")).await.unwrap(), None);
    let renamed = UserInfo { name: "Cora C.".into(), ..cora.clone() };
    store.users_seen(std::slice::from_ref(&renamed), t(2_000)).await.unwrap();
    assert_eq!(store.users_with_role(Role::Consultant).await.unwrap(), vec![renamed]);
    // A large batch (several multi-row statements), with a user twice: the
    // later entry wins.
    let mut many: Vec<UserInfo> = (0..250).map(|i| common::user(&format!("u{i}"), Role::Seeker)).collect();
    many.push(UserInfo { name: "u7 renamed".into(), ..common::user("u7", Role::Seeker) });
    store.users_seen(&many, t(3_000)).await.unwrap();
    assert_eq!(store.users_with_role(Role::Seeker).await.unwrap().len(), 251);
    assert_eq!(store.user(&id("u7")).await.unwrap().unwrap().name, "u7 renamed");
    assert_eq!(store.user(&id("u249")).await.unwrap().unwrap().name, "u249 name");

    // A call and its transitions.
    let call = CallRecord {
        call_id: id::<CallId>("call_1"),
        session_id: id::<SessionId>("ses_1"),
        seeker_id: id::<UserId>("sam"),
        consultant_id: id::<UserId>("cora"),
        created_at: t(10_000),
        recording: false,
        seeker_premium: false,
    };
    store.create_call(&call).await.unwrap();
    assert_eq!(store.call(&call.call_id).await.unwrap().unwrap().state, "requested");
    let live = |calls: Vec<parley_signaling::store::StoredCall>| calls.into_iter().map(|c| c.state).collect::<Vec<_>>();
    assert_eq!(live(store.live_calls().await.unwrap()), ["requested"], "requested is live");
    store.call_transition(&call.call_id, CallState::Ringing, t(10_100)).await.unwrap();
    assert_eq!(live(store.live_calls().await.unwrap()), ["ringing"], "ringing is live");
    store.call_transition(&call.call_id, CallState::Accepted, t(12_000)).await.unwrap();
    assert!(store.live_calls().await.unwrap().is_empty(), "an accepted call is not");
    let stored = store.call(&call.call_id).await.unwrap().unwrap();
    assert_eq!((stored.state.as_str(), stored.record), ("accepted", call.clone()));
    assert!(store.call(&id("call_nope")).await.unwrap().is_none());
    assert_eq!(CallState::Ended(CallEndReason::Timeout).as_str(), "timeout");

    // A session, its timeline, and its end.
    let session = SessionRecord {
        session_id: call.session_id.clone(),
        call_id: call.call_id.clone(),
        seeker_id: call.seeker_id.clone(),
        consultant_id: call.consultant_id.clone(),
        opened_at: t(12_000),
        recording: true,
        scheduled: false,
    };
    store.create_session(&session).await.unwrap();
    let open = store.session(&session.session_id).await.unwrap().unwrap();
    assert_eq!((open.record, open.ended_at), (session.clone(), None));
    let events = [
        (SessionEvent::Joined(id("sam")), 12_100),
        (SessionEvent::Joined(id("cora")), 12_200),
        (SessionEvent::Media(id("sam"), MediaState::Connected), 12_400),
        (SessionEvent::Dropped(id("cora")), 20_000),
        (SessionEvent::Joined(id("cora")), 21_000),
        (SessionEvent::Ended { reason: SessionEndReason::Hangup, by: Some(id("sam")), bill: None }, 700_000),
    ];
    for (e, at) in &events {
        store.session_event(&session.session_id, e, t(*at)).await.unwrap();
    }
    // A second end does not move the recorded end.
    store
        .session_event(
            &session.session_id,
            &SessionEvent::Ended { reason: SessionEndReason::Abandoned, by: None, bill: None },
            t(800_000),
        )
        .await
        .unwrap();
    let ended = store.session(&session.session_id).await.unwrap().unwrap();
    assert_eq!((ended.ended_at, ended.end_reason.as_deref()), (Some(t(700_000)), Some("hangup")));
    let timeline = store.session_timeline(&session.session_id).await.unwrap();
    let shown: Vec<(i64, &str, Option<&str>, Option<&str>)> = timeline
        .iter()
        .map(|e| (e.at.unix_millis(), e.kind.as_str(), e.user_id.as_ref().map(UserId::as_str), e.detail.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            (12_100, "joined", Some("sam"), None),
            (12_200, "joined", Some("cora"), None),
            (12_400, "media_state", Some("sam"), Some("connected")),
            (20_000, "dropped", Some("cora"), None),
            (21_000, "joined", Some("cora"), None),
            (700_000, "ended", Some("sam"), Some("hangup")),
            (800_000, "ended", None, Some("abandoned")),
        ]
    );
    assert!(store.session(&id("ses_nope")).await.unwrap().is_none());
    store.ping().await.unwrap();
}

/// Many concurrent writes share commits; one that fails (a duplicate call)
/// fails alone and every other write lands.
async fn a_failing_write_fails_alone(store: &SqlStore) {
    let call = |n: usize| call_record("b", n);
    store.create_call(&call(0)).await.unwrap();
    let mut writes = tokio::task::JoinSet::new();
    for n in 1..=40 {
        let store = store.clone();
        writes.spawn(async move { (n, store.create_call(&call(n)).await) });
    }
    let duplicate = {
        let store = store.clone();
        tokio::spawn(async move { store.create_call(&call(0)).await })
    };
    while let Some(joined) = writes.join_next().await {
        let (n, result) = joined.unwrap();
        assert!(result.is_ok(), "write {n}: {result:?}");
    }
    assert!(duplicate.await.unwrap().is_err(), "a second call with the same id is refused");
    for n in 0..=40 {
        assert_eq!(store.call(&call(n).call_id).await.unwrap().unwrap().state, "requested", "call {n}");
    }
}

/// Sessions started and ended by concurrent writes (which share commits,
/// several per statement) each announce `session.started` and
/// `session.ended` once, with their own data; a second end of a session,
/// sent with the first, announces nothing more.
async fn concurrent_starts_and_ends_announce_each_session_once(store: &SqlStore) {
    let session = |n: usize| SessionRecord {
        session_id: id::<SessionId>(&format!("ses_w{n}")),
        call_id: id::<CallId>(&format!("call_w{n}")),
        seeker_id: id::<UserId>(&format!("seeker{n}")),
        consultant_id: id::<UserId>("cora"),
        opened_at: t(50_000 + n as i64),
        recording: false,
        scheduled: false,
    };
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..30 {
        let store = store.clone();
        writes.spawn(async move { store.create_session(&session(n)).await });
    }
    while let Some(joined) = writes.join_next().await {
        joined.unwrap().unwrap();
    }
    for n in 0..30 {
        let end = |reason| SessionEvent::Ended { reason, by: None, bill: None };
        let store = store.clone();
        writes.spawn(async move {
            let sid = session(n).session_id;
            store.session_event(&sid, &end(SessionEndReason::Hangup), t(900_000 + n as i64)).await?;
            if n == 0 {
                store.session_event(&sid, &end(SessionEndReason::Abandoned), t(990_000)).await?;
            }
            Ok(())
        });
    }
    while let Some(joined) = writes.join_next().await {
        joined.unwrap().unwrap();
    }
    let bodies: Vec<String> =
        sqlx::query_scalar("SELECT body FROM webhook_outbox WHERE dedupe_key LIKE 'session.%:ses_w%'")
            .fetch_all(&store.pool())
            .await
            .unwrap();
    let events: Vec<serde_json::Value> = bodies.iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    for n in 0..30 {
        let s = session(n);
        let of = |kind: &str| -> Vec<&serde_json::Value> {
            events.iter().filter(|e| e["type"] == kind && e["data"]["session_id"] == s.session_id.as_str()).collect()
        };
        let (started, ended) = (of("session.started"), of("session.ended"));
        assert_eq!((started.len(), ended.len()), (1, 1), "{}", s.session_id);
        let (started, ended) = (&started[0]["data"], &ended[0]["data"]);
        assert_eq!(
            (started["call_id"].as_str(), started["seeker_id"].as_str()),
            (Some(s.call_id.as_str()), Some(s.seeker_id.as_str()))
        );
        assert_eq!(
            (ended["seeker_id"].as_str(), ended["opened_at_ms"].as_i64()),
            (Some(s.seeker_id.as_str()), Some(50_000 + n as i64))
        );
        assert_eq!(
            (ended["reason"].as_str(), ended["ended_at_ms"].as_i64()),
            (Some("hangup"), Some(900_000 + n as i64))
        );
    }
}

/// Billing's statements go through the store's writer too (the store is
/// billing's committer): concurrent ones share commits with the store's
/// own writes, and single-row inserts share one multi-row insert (on
/// SQLite; one each on PostgreSQL). One that
/// fails (a duplicate key) fails alone, with the database's own error
/// (billing reads a unique violation as a replayed idempotency key), and
/// takes the other statements sent with it along (all or nothing); every
/// other write lands.
async fn billing_statements_share_commits_and_fail_alone(store: &SqlStore) {
    let account = |n: usize| {
        Statement::insert("sandbox_accounts (id, consultant_id, created_ms)")
            .bind(format!("acct_g{n}"))
            .bind("cora")
            .bind(1_000_i64)
    };
    let call = |n: usize| call_record("g", n);
    let accounts = "SELECT COUNT(*) FROM sandbox_accounts WHERE id LIKE 'acct_g%'";
    let count = || async { sqlx::query_scalar::<_, i64>(accounts).fetch_one(&store.pool()).await.unwrap() };
    assert_eq!(store.commit_one(account(0)).await.unwrap().rows_affected, 1);
    for round in 0..5 {
        let before = count().await;
        let mut writes = tokio::task::JoinSet::new();
        let ours = 100 * round + 1..=100 * round + 30;
        for n in ours.clone() {
            let store = store.clone();
            writes.spawn(async move {
                if n % 3 == 0 {
                    store.create_call(&call(n)).await.map_err(|e| e.to_string())
                } else {
                    let done = store.commit_one(account(n)).await.map_err(|e| e.to_string())?;
                    assert_eq!((done.rows_affected, done.row.is_none()), (1, true), "account {n}");
                    Ok(())
                }
            });
        }
        let duplicate = tokio::spawn({
            let store = store.clone();
            async move { store.commit_one(account(0)).await }
        });
        let pair = tokio::spawn({
            let store = store.clone();
            async move { store.commit(vec![account(100 * round + 99), account(0)]).await }
        });
        while let Some(joined) = writes.join_next().await {
            joined.unwrap().unwrap();
        }
        for refused in [duplicate.await.unwrap().map(|_| ()), pair.await.unwrap().map(|_| ())] {
            let unique =
                refused.as_ref().err().and_then(|e| e.as_database_error()).is_some_and(|e| e.is_unique_violation());
            assert!(unique, "round {round}: a duplicate key is refused as such: {refused:?}");
        }
        assert_eq!(count().await, before + 20, "round {round}: every account but the refused pair's");
        for n in ours.filter(|n| n % 3 == 0) {
            assert_eq!(store.call(&call(n).call_id).await.unwrap().unwrap().state, "requested", "call {n}");
        }
    }
    // A statement returning a row answers it; one matching nothing, none.
    let touch = |id: &str| {
        Statement::new("UPDATE sandbox_accounts SET created_ms = $2 WHERE id = $1 RETURNING id")
            .bind(id)
            .bind(2_000_i64)
            .returning_row()
    };
    let done = store.commit_one(touch("acct_g1")).await.unwrap();
    let row = done.row.expect("the updated row");
    assert_eq!((done.rows_affected, row.get::<String, _>("id")), (1, "acct_g1".to_owned()));
    let done = store.commit_one(touch("acct_nope")).await.unwrap();
    assert_eq!((done.rows_affected, done.row.is_none()), (0, true));
}

/// A write of more rows than one statement takes (500 on SQLite, 64 on
/// PostgreSQL) is split over several statements in one transaction: every
/// row lands, and a second write of the same users updates them in place.
async fn a_write_of_many_rows_spans_statements(store: &SqlStore) {
    let users = |name: &str| -> Vec<UserInfo> {
        (0..1_100)
            .map(|n| UserInfo { name: format!("{name} {n}"), ..common::user(&format!("many{n}"), Role::Recorder) })
            .collect()
    };
    store.users_seen(&users("first"), t(5_000)).await.unwrap();
    store.users_seen(&users("second"), t(6_000)).await.unwrap();
    let stored = store.users_with_role(Role::Recorder).await.unwrap();
    let many: Vec<&UserInfo> = stored.iter().filter(|u| u.id.as_str().starts_with("many")).collect();
    assert_eq!(many.len(), 1_100);
    assert!(many.iter().all(|u| u.name.starts_with("second ")), "the second write updated each row");
}

/// `write`, polled after `turns` turns of the scheduler.
async fn after_turns<T>(turns: usize, write: impl std::future::Future<Output = T>) -> T {
    for _ in 0..turns {
        tokio::task::yield_now().await;
    }
    write.await
}

/// Every write about one call, queued one after the other without waiting
/// for the one before (its creation, ringing, acceptance with its session, both joins,
/// the end), for many calls at once: they commit in the order they were
/// queued, even where batches commit side by side (PostgreSQL). Out of
/// order, a transition would precede its call (refused), `ringing` would
/// overwrite `accepted`, or the end would precede its session and be lost.
async fn writes_about_one_call_keep_their_order(store: &SqlStore) {
    for round in 0..3 {
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..40 {
            let store = store.clone();
            calls.spawn(async move {
                let call = call_record(&format!("o{round}_"), n);
                let session = session_of(&call, &call.session_id);
                let sid = &session.session_id;
                let ended = SessionEvent::Ended { reason: SessionEndReason::Hangup, by: None, bill: None };
                let (seeker, consultant) =
                    (SessionEvent::Joined(call.seeker_id.clone()), SessionEvent::Joined(call.consultant_id.clone()));
                // Each write is queued a turn of the scheduler after the
                // one before (`join!` polls them in order; write k yields k
                // times first), so the writer takes a call's writes into
                // several batches, committing side by side on PostgreSQL.
                let (created, rung, accepted, joined, joined_too, ended) = tokio::join!(
                    after_turns(0, store.create_call(&call)),
                    after_turns(1, store.call_transition(&call.call_id, CallState::Ringing, t(2_000))),
                    after_turns(2, store.accept_call(&session)),
                    after_turns(3, store.session_event(sid, &seeker, t(4_000))),
                    after_turns(4, store.session_event(sid, &consultant, t(5_000))),
                    after_turns(5, store.session_event(sid, &ended, t(6_000))),
                );
                for (what, result) in [created, rung, accepted, joined, joined_too, ended].into_iter().enumerate() {
                    assert!(result.is_ok(), "round {round}, call {n}, write {what}: {result:?}");
                }
                call
            });
        }
        while let Some(call) = calls.join_next().await {
            let call = call.unwrap();
            assert_eq!(store.call(&call.call_id).await.unwrap().unwrap().state, "accepted", "{}", call.call_id);
            let session = store.session(&call.session_id).await.unwrap().expect("the session is stored");
            assert_eq!((session.ended_at, session.end_reason.as_deref()), (Some(t(6_000)), Some("hangup")));
            let kinds: Vec<String> =
                store.session_timeline(&call.session_id).await.unwrap().into_iter().map(|e| e.kind).collect();
            assert_eq!(kinds, ["joined", "joined", "ended"], "{}", call.session_id);
        }
    }
}

/// Accepting a call stores the transition and the session together: when
/// the session cannot be stored (its id is taken), the call is not left
/// accepted, and it can still be accepted with a session of its own.
async fn an_accept_is_all_or_nothing(store: &SqlStore) {
    let call = |n: usize| call_record("a", n);
    let (first, second) = (call(1), call(2));
    for c in [&first, &second] {
        store.create_call(c).await.unwrap();
        store.call_transition(&c.call_id, CallState::Ringing, t(2_000)).await.unwrap();
    }
    store.accept_call(&session_of(&first, &first.session_id)).await.unwrap();
    let taken = store.accept_call(&session_of(&second, &first.session_id)).await;
    assert!(taken.is_err(), "a session id taken is refused: {taken:?}");
    assert_eq!(store.call(&second.call_id).await.unwrap().unwrap().state, "ringing");
    assert_eq!(store.session(&first.session_id).await.unwrap().unwrap().record.call_id, first.call_id);
    store.accept_call(&session_of(&second, &second.session_id)).await.unwrap();
    assert_eq!(store.call(&second.call_id).await.unwrap().unwrap().state, "accepted");
}

/// The same script on each backend.
async fn whole_script(url: &str, backend: Backend) {
    let store = SqlStore::connect(url).await.unwrap();
    assert_eq!(store.backend(), backend);
    exercise(&store).await;
    a_failing_write_fails_alone(&store).await;
    concurrent_starts_and_ends_announce_each_session_once(&store).await;
    billing_statements_share_commits_and_fail_alone(&store).await;
    a_write_of_many_rows_spans_statements(&store).await;
    writes_about_one_call_keep_their_order(&store).await;
    an_accept_is_all_or_nothing(&store).await;
    // The pool closes while the writer keeps connections from its writes:
    // it gives them back (`Pool::close` waits for every connection).
    tokio::time::timeout(common::WAIT, store.pool().close()).await.expect("the pool closed");
    // Migrations are idempotent: reconnecting to the same database works.
    SqlStore::connect(url).await.unwrap();
}

#[tokio::test]
async fn the_store_works_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    whole_script(&url, Backend::Sqlite).await;
    // A new database is put in WAL mode by its first connection; every
    // later connection (of the same store or another) finds it so.
    let store = SqlStore::connect(&url).await.unwrap();
    let pool = store.pool();
    let conns = futures_util::future::join_all((0..4).map(|_| pool.acquire())).await;
    for conn in conns {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn.unwrap()).await.unwrap();
        assert_eq!(mode, "wal");
    }
}

#[tokio::test]
async fn the_store_works_on_postgres() {
    whole_script(&common::fresh_postgres_url().await, Backend::Postgres).await;
}

/// Writes keep coming from eight writers while PostgreSQL drops every
/// connection of the store's once (`pg_terminate_backend`, as a restart
/// or a failover does): the writer's lanes keep their connections from
/// one batch to the next, and a batch that fails on a dropped one is
/// retried on another, so every call is stored and reads back.
#[tokio::test]
async fn writes_outlive_their_connections_on_postgres() {
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let store = SqlStore::connect(&common::fresh_postgres_url().await).await.unwrap();
    let written = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (store, written) = (store.clone(), written.clone());
        writers.spawn(async move {
            for n in 0..EACH {
                let call = call_record(&format!("k{w}x"), n);
                // A batch whose connection is dropped while it commits may
                // have been committed: its retry then finds the call there.
                let stored = store.create_call(&call).await;
                written.add_permits(1);
                if let Err(e) = stored {
                    assert!(store.call(&call.call_id).await.unwrap().is_some(), "call {w}/{n} lost: {e:?}");
                }
            }
        });
    }
    // A quarter of the writes in, drop every connection of the store's
    // database but the one asking.
    let _quarter = written.acquire_many((WRITERS * EACH / 4) as u32).await.unwrap();
    let dropped: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&store.pool())
    .await
    .unwrap();
    assert!(!dropped.is_empty(), "the store had connections to drop");
    while let Some(joined) = writers.join_next().await {
        joined.unwrap();
    }
    for w in 0..WRITERS {
        for n in 0..EACH {
            let call = call_record(&format!("k{w}x"), n);
            assert_eq!(store.call(&call.call_id).await.unwrap().unwrap().state, "requested", "call {w}/{n}");
        }
    }
}

#[tokio::test]
async fn a_call_flows_end_to_end_on_postgres() {
    let app = common::spawn_app_on_postgres().await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, _s_events) = app.client("sam", Role::Seeker).await;
    let ringing = seeker.call(&id("cora"), None).await.unwrap();
    let call_id = c_events
        .wait_for(common::WAIT, |m| match m {
            parley_domain::protocol::ServerMessage::CallIncoming { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .await
        .unwrap();
    consultant.accept(&call_id).await.unwrap();
    seeker.join(&ringing.session_id).await.unwrap();
    consultant.end_session(&ringing.session_id).await.unwrap();
    let s = app.store.session(&ringing.session_id).await.unwrap().unwrap();
    assert_eq!(s.end_reason.as_deref(), Some("hangup"));
    assert_eq!(common::timeline_kinds(&app.store, &ringing.session_id).await, ["joined", "ended"]);
}

/// Transactions whose `BEGIN` is abandoned midway (a request dropped
/// because its client hung up while it waited for the database), many
/// times, then writes without a transaction on the pool's connections:
/// each is committed, visible to another connection. A connection left
/// inside an abandoned transaction would keep its later writes to itself
/// and lose them when it closed (sqlx 0.9.0 on PostgreSQL:
/// transact-rs/sqlx#4393, fixed in 0.9.1). On PostgreSQL each `BEGIN` is
/// abandoned once the server has run it and before its answer is read
/// (seen from another connection: a session of the database idle in a
/// transaction); on SQLite after 1 to 7 polls.
async fn abandoned_begins_leave_no_connection_in_a_transaction(url: &str, backend: Backend) {
    const ROUNDS: usize = 200;
    const WRITES: usize = 32;
    let store = SqlStore::connect(url).await.unwrap();
    let pool = store.pool();
    let mut other = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await.unwrap();
    for round in 0..ROUNDS {
        let mut begin = Box::pin(pool.begin());
        for polls in 1.. {
            if futures_util::poll!(begin.as_mut()).is_ready() {
                break;
            }
            let abandon = match backend {
                Backend::Sqlite => polls > round % 7,
                Backend::Postgres => {
                    sqlx::query_scalar::<_, i64>(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state = 'idle in transaction' AND pid <> pg_backend_pid()",
                    )
                    .fetch_one(&mut other)
                    .await
                    .unwrap()
                        > 0
                }
            };
            if abandon {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    let writes = (0..WRITES).map(|i| {
        sqlx::query("INSERT INTO booking_locks (consultant_id, version) VALUES ($1, 1)")
            .bind(format!("abandoned-{i}"))
            .execute(&pool)
    });
    for written in futures_util::future::join_all(writes).await {
        written.unwrap();
    }
    let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM booking_locks WHERE consultant_id LIKE 'abandoned-%'")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(seen, WRITES as i64, "every write after the abandoned begins is committed");
}

#[tokio::test]
async fn abandoned_begins_leave_no_connection_in_a_transaction_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    abandoned_begins_leave_no_connection_in_a_transaction(&url, Backend::Sqlite).await;
}

#[tokio::test]
async fn abandoned_begins_leave_no_connection_in_a_transaction_on_postgres() {
    let url = common::fresh_postgres_url().await;
    abandoned_begins_leave_no_connection_in_a_transaction(&url, Backend::Postgres).await;
}
