//! LiveKit as the media backend (issue 18, docs/rules.md L1–L4) against
//! a local fake of LiveKit's Twirp API ([`fake`]), with the real
//! `livekit-api` client code path: rooms and tokens, the meter fed by
//! signed webhooks (repeated, late, out of order) and by the participant
//! poll, forged and replayed webhooks, the room's teardown, egress.

use std::time::Duration;

use livekit_api::access_token::TokenVerifier;
use livekit_protocol as proto;
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel, Recap, RecordingList};
use parley_domain::protocol::{MediaJoin, Outcome, Role, ServerMessage, SessionBill, SessionEndReason};
use parley_domain::{Clock, Currency, Money, SessionId, UserId};
use parley_sdk::client::RoomInfo;
use parley_sdk::{ApiClient, Events, SignalingClient};
use parley_server::config::{LivekitConfig, Media};

use crate::common::{TestApp, WAIT, fresh_postgres_url, incoming, settled, spawn_app_with, until};

mod fake;

use fake::{API_KEY, API_SECRET, FakeLivekit, deliver, event, post_webhook, signed};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

/// A server (SQLite, or a fresh PostgreSQL database) whose media runs on
/// the fake LiveKit.
async fn lk_app(fake: &FakeLivekit, postgres: bool) -> TestApp {
    let pg = if postgres { Some(fresh_postgres_url().await) } else { None };
    let url = fake.url.clone();
    spawn_app_with(move |c| {
        c.media = Media::Livekit(LivekitConfig {
            url,
            api_key: API_KEY.into(),
            api_secret: API_SECRET.into(),
            poll_interval: SECS(30),
        });
        if let Some(pg) = pg {
            c.database_url = pg;
        }
    })
    .await
}

/// An open session: `cora` charges 30 EUR fixed, `sam` calls (recorded if
/// `record`, as a premium seeker), she accepts, both join the signaling
/// room (not yet the media).
struct Lk {
    api: ApiClient,
    seeker: SignalingClient,
    s_events: Events,
    c_events: Events,
    _consultant: SignalingClient,
    sid: SessionId,
    s_room: RoomInfo,
    c_room: RoomInfo,
}

async fn open(app: &TestApp, record: bool) -> Lk {
    let api = ApiClient::new(&app.base).unwrap();
    let c_token = app.token("cora", Role::Consultant);
    api.set_price(&c_token, &ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) }).await.unwrap();
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, s_events) = if record {
        api.set_recording_allowed(&c_token, true).await.unwrap();
        let moderator = app.token("ops", Role::Moderator);
        let r = reqwest::Client::new()
            .put(format!("{}/v1/seekers/sam/premium", app.base))
            .bearer_auth(moderator)
            .json(&serde_json::json!({"premium": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        app.client("sam", Role::Seeker).await
    } else {
        app.client("sam", Role::Seeker).await
    };
    seeker.call_with(&UserId::parse("cora").unwrap(), Some("pm_card_visa"), record).await.expect("rings");
    let (call_id, sid) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    let s_room = seeker.join(&sid).await.unwrap();
    let c_room = consultant.join(&sid).await.unwrap();
    Lk { api, seeker, s_events, c_events, _consultant: consultant, sid, s_room, c_room }
}

/// `identity`'s media connection `conn` joins LiveKit's room now: the fake
/// sees it and LiveKit's `participant_joined` (event `id`) is delivered.
async fn media_join(app: &TestApp, fake: &FakeLivekit, sid: &SessionId, identity: &str, conn: &str, id: &str) {
    let now = app.clock.now().unix_millis();
    let p = FakeLivekit::participant(identity, conn, now);
    fake.connect(sid.as_str(), &p);
    let mut e = event(id, "participant_joined", sid.as_str(), now / 1000);
    e.participant = Some(p);
    assert_eq!(deliver(&app.base, &e).await.0, 200);
}

/// LiveKit's `participant_left` of `conn` (event `id`) at `at_ms`.
fn left_event(
    sid: &SessionId,
    identity: &str,
    conn: &str,
    joined_ms: i64,
    at_ms: i64,
    id: &str,
) -> proto::WebhookEvent {
    let mut e = event(id, "participant_left", sid.as_str(), at_ms / 1000);
    e.participant = Some(FakeLivekit::participant(identity, conn, joined_ms));
    e
}

async fn ended(events: &mut Events) -> (SessionEndReason, Option<SessionBill>) {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SessionEnded { reason, bill, .. } => Some((*reason, *bill)),
            _ => None,
        })
        .await
        .expect("session.ended")
}

#[tokio::test]
async fn lk_a_session_opened_creates_its_room_and_its_tokens_admit_only_its_participants() {
    let fake = FakeLivekit::start().await;
    let app = lk_app(&fake, false).await;
    let s = open(&app, false).await;
    let room = s.sid.as_str().to_owned();
    until("the room is created", || async { fake.state.lock().unwrap().rooms.contains_key(&room) }).await;
    let created = fake.state.lock().unwrap().rooms[&room].created.clone();
    assert_eq!((created.name.as_str(), created.max_participants), (room.as_str(), 2));
    assert_eq!((created.empty_timeout, created.departure_timeout), (30, 30), "kept one grace period once empty");

    // Tokens last the longest session: free window + instant maximum + grace.
    let length = 600 + 60 * 60 + 30;
    for (info, who) in [(&s.s_room, "sam"), (&s.c_room, "cora")] {
        let Some(MediaJoin::Livekit { url, token }) = &info.media else {
            panic!("no LiveKit join for {who}")
        };
        assert_eq!(url, &fake.url);
        let claims = TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(token).expect("signed with the secret");
        assert_eq!((claims.sub.as_str(), claims.iss.as_str()), (who, API_KEY));
        assert_eq!(claims.video.room, room, "exactly this session's room");
        assert!(claims.video.room_join && claims.video.can_publish() && claims.video.can_subscribe());
        let v = &claims.video;
        assert!(!(v.room_admin || v.room_create || v.room_list || v.room_record), "no admin grant: {v:?}");
        assert!((length..=length + 1).contains(&(claims.exp - claims.nbf)), "{} s", claims.exp - claims.nbf);
        assert!(TokenVerifier::with_api_key(API_KEY, "another-secret-another-secret-xx").verify(token).is_err());
    }
    // A stranger is refused the room: no token.
    let (zed, _zed_events) = app.client("zed", Role::Seeker).await;
    assert!(zed.join(&s.sid).await.is_err(), "a stranger joins nothing");
    // A track published in a session without recording consent: no egress.
    let mut e = event("EV_t1", "track_published", &room, app.clock.now().unix_secs());
    e.participant = Some(FakeLivekit::participant("sam", "PA_s1", app.clock.now().unix_millis()));
    e.track = Some(proto::TrackInfo { sid: "TR_a1".into(), mime_type: "audio/opus".into(), ..Default::default() });
    assert_eq!(deliver(&app.base, &e).await.0, 200);
    let st = fake.state.lock().unwrap();
    assert!(st.egresses.is_empty());
    assert_eq!(st.refused, 0, "every API call carried the key's JWT with the grants it needs");
}

async fn webhooks_bill_as_peer_to_peer(postgres: bool) {
    let fake = FakeLivekit::start().await;
    let app = lk_app(&fake, postgres).await;
    let mut s = open(&app, false).await;
    let t0 = app.clock.now().unix_millis();
    // In the signaling room but not in LiveKit's: not billed (L1).
    app.advance(SECS(20)).await;
    media_join(&app, &fake, &s.sid, "sam", "PA_s1", "EV_1").await;
    media_join(&app, &fake, &s.sid, "cora", "PA_c1", "EV_2").await;
    // LiveKit retries: the same events again change nothing (L2).
    let mut again = event("EV_1", "participant_joined", s.sid.as_str(), (t0 + 20_000) / 1000);
    again.participant = Some(FakeLivekit::participant("sam", "PA_s1", t0 + 20_000));
    let (status, body) = deliver(&app.base, &again).await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)));
    app.advance(SECS(700)).await;
    // Sam's connection drops at +720 and comes back at +730 as another one.
    let left = left_event(&s.sid, "sam", "PA_s1", t0 + 20_000, t0 + 720_000, "EV_3");
    assert_eq!(deliver(&app.base, &left).await.0, 200);
    app.advance(SECS(10)).await;
    media_join(&app, &fake, &s.sid, "sam", "PA_s2", "EV_4").await;
    // Late and repeated: the old connection's join and leave again.
    let (status, body) = deliver(&app.base, &left).await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)));
    let mut late = event("EV_5", "participant_joined", s.sid.as_str(), (t0 + 20_000) / 1000);
    late.participant = Some(FakeLivekit::participant("sam", "PA_s1", t0 + 20_000));
    assert_eq!(deliver(&app.base, &late).await.0, 200);
    let late_left = left_event(&s.sid, "sam", "PA_s1", t0 + 20_000, t0 + 725_000, "EV_6");
    assert_eq!(deliver(&app.base, &late_left).await.0, 200, "the older connection: sam stays");
    app.advance(SECS(5)).await;
    s.seeker.end_session(&s.sid).await.unwrap();
    // 700 s together, 10 s apart, 5 s together again: charged (≥ F).
    let bill = SessionBill { outcome: Outcome::Charged, billable_secs: 705, charge: eur(3000) };
    assert_eq!(ended(&mut s.s_events).await, (SessionEndReason::Hangup, Some(bill)));
    assert_eq!(ended(&mut s.c_events).await.1, Some(bill));
    let d = settled(&s.api, &app.token("sam", Role::Seeker), &s.sid).await;
    assert_eq!((d.outcome, d.billable_secs), (Some(Outcome::Charged), 705));
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM livekit_events WHERE room = $1")
        .bind(s.sid.as_str())
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, 6, "each event id once");
}

#[tokio::test]
async fn lk1_lk2_webhooks_bill_as_peer_to_peer_on_sqlite() {
    webhooks_bill_as_peer_to_peer(false).await;
}

#[tokio::test]
async fn lk1_lk2_webhooks_bill_as_peer_to_peer_on_postgres() {
    webhooks_bill_as_peer_to_peer(true).await;
}

#[tokio::test]
async fn lk1_together_in_livekit_for_less_than_the_free_window_is_free() {
    let fake = FakeLivekit::start().await;
    let app = lk_app(&fake, false).await;
    let mut s = open(&app, false).await;
    media_join(&app, &fake, &s.sid, "cora", "PA_c9", "EV_21").await;
    app.advance(SECS(15)).await;
    media_join(&app, &fake, &s.sid, "sam", "PA_s9", "EV_22").await;
    app.advance(SECS(599)).await;
    s.seeker.end_session(&s.sid).await.unwrap();
    // M6 as with peer to peer: 599 s together is free, the hold released.
    let bill = SessionBill { outcome: Outcome::Free, billable_secs: 599, charge: eur(0) };
    assert_eq!(ended(&mut s.s_events).await, (SessionEndReason::Hangup, Some(bill)));
    let d = settled(&s.api, &app.token("sam", Role::Seeker), &s.sid).await;
    assert_eq!(d.hold.map(|h| h.status), Some("released".to_owned()));
}

#[tokio::test]
async fn lk1_a_lost_participant_left_is_caught_by_the_poll() {
    let fake = FakeLivekit::start().await;
    let app = lk_app(&fake, false).await;
    let mut s = open(&app, false).await;
    let room = s.sid.as_str().to_owned();
    until("the room is created", || async { fake.state.lock().unwrap().rooms.contains_key(&room) }).await;
    media_join(&app, &fake, &s.sid, "sam", "PA_s1", "EV_1").await;
    media_join(&app, &fake, &s.sid, "cora", "PA_c1", "EV_2").await;
    let lists = fake.state.lock().unwrap().lists;
    app.advance(SECS(100)).await;
    until("a poll", || async { fake.state.lock().unwrap().lists > lists }).await;
    // Sam's connection ends; LiveKit's `participant_left` is lost.
    fake.disconnect(&room, "PA_s1");
    let lists = fake.state.lock().unwrap().lists;
    app.advance(SECS(30)).await;
    until("the next poll", || async { fake.state.lock().unwrap().lists > lists }).await;
    // Absent since that poll (+130 s); after the grace period the meter
    // ends the session as of the drop, billing 130 s (free).
    app.advance(SECS(30)).await;
    let (reason, bill) = ended(&mut s.s_events).await;
    assert_eq!(reason, SessionEndReason::Abandoned);
    assert_eq!(bill, Some(SessionBill { outcome: Outcome::Free, billable_secs: 130, charge: eur(0) }));
    until("the room is deleted", || async { fake.state.lock().unwrap().deleted.contains(&room) }).await;
}

async fn forged_or_replayed_webhooks_are_refused(postgres: bool) {
    let fake = FakeLivekit::start().await;
    let app = lk_app(&fake, postgres).await;
    let mut s = open(&app, false).await;
    let now = app.clock.now();
    let mut e = event("EV_f1", "participant_joined", s.sid.as_str(), now.unix_secs());
    e.participant = Some(FakeLivekit::participant("sam", "PA_s1", now.unix_millis()));
    // Signed with another secret.
    let (body, forged) = signed(&e, "not-the-secret-not-the-secret-xxxx");
    let (status, problem) = post_webhook(&app.base, body.clone(), &forged).await;
    assert_eq!((status, problem["code"].as_str()), (401, Some("bad_signature")));
    // No signature at all.
    assert_eq!(post_webhook(&app.base, body.clone(), "").await.0, 401);
    // A genuine signature over another body.
    let (_, genuine) = signed(&e, API_SECRET);
    let altered = body.replace("PA_s1", "PA_s7");
    assert_eq!(post_webhook(&app.base, altered, &genuine).await.0, 401);
    // A signed body that is not an event.
    let (_, auth) = signed(&e, API_SECRET);
    let junk = "{\"event\": 5}".to_owned();
    let hash = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(junk.as_bytes()))
    };
    let junk_auth =
        livekit_api::access_token::AccessToken::with_api_key(API_KEY, API_SECRET).with_sha256(&hash).to_jwt().unwrap();
    let (status, problem) = post_webhook(&app.base, junk, &junk_auth).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("malformed_payload")));
    let _ = auth;
    // Nothing above reached the meter or the store.
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM livekit_events").fetch_one(&app.store.pool()).await.unwrap();
    assert_eq!(stored, 0);

    // Both join; sam leaves; a replay of sam's join (same id, same
    // signature) is acknowledged and ignored: the grace runs out.
    media_join(&app, &fake, &s.sid, "sam", "PA_s1", "EV_1").await;
    media_join(&app, &fake, &s.sid, "cora", "PA_c1", "EV_2").await;
    let mut join = event("EV_1", "participant_joined", s.sid.as_str(), now.unix_secs());
    join.participant = Some(FakeLivekit::participant("sam", "PA_s1", now.unix_millis()));
    let (join_body, join_auth) = signed(&join, API_SECRET);
    app.advance(SECS(50)).await;
    let left = left_event(&s.sid, "sam", "PA_s1", now.unix_millis(), app.clock.now().unix_millis(), "EV_3");
    assert_eq!(deliver(&app.base, &left).await.0, 200);
    let (status, body) = post_webhook(&app.base, join_body, &join_auth).await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)), "a replay applies nothing");
    app.advance(SECS(30)).await;
    let (reason, bill) = ended(&mut s.s_events).await;
    assert_eq!(reason, SessionEndReason::Abandoned);
    assert_eq!(bill.map(|b| b.billable_secs), Some(50));
}

#[tokio::test]
async fn lk2_forged_or_replayed_webhooks_are_refused_on_sqlite() {
    forged_or_replayed_webhooks_are_refused(false).await;
}

#[tokio::test]
async fn lk2_forged_or_replayed_webhooks_are_refused_on_postgres() {
    forged_or_replayed_webhooks_are_refused(true).await;
}

#[tokio::test]
async fn lk_the_session_end_removes_its_participants_and_deletes_its_room() {
    let fake = FakeLivekit::start().await;
    let app = lk_app(&fake, false).await;
    let mut s = open(&app, false).await;
    let room = s.sid.as_str().to_owned();
    until("the room is created", || async { fake.state.lock().unwrap().rooms.contains_key(&room) }).await;
    media_join(&app, &fake, &s.sid, "sam", "PA_s1", "EV_1").await;
    media_join(&app, &fake, &s.sid, "cora", "PA_c1", "EV_2").await;
    app.advance(SECS(42)).await;
    s.seeker.end_session(&s.sid).await.unwrap();
    assert_eq!(ended(&mut s.s_events).await.1.map(|b| b.billable_secs), Some(42));
    until("the room is deleted", || async { fake.state.lock().unwrap().deleted.contains(&room) }).await;
    let st = fake.state.lock().unwrap();
    let removed: Vec<(&str, i64)> =
        st.removed.iter().filter(|r| r.room == room).map(|r| (r.identity.as_str(), r.revoke_token_ts)).collect();
    let now = app.clock.now().unix_millis();
    assert_eq!(removed, vec![("sam", now), ("cora", now)], "removed, their tokens revoked as of the end");
    assert!(!st.rooms.contains_key(&room));
    assert_eq!(st.refused, 0);
}

async fn egress_becomes_recordings(postgres: bool) {
    let fake = FakeLivekit::start().await;
    let app = lk_app(&fake, postgres).await;
    let mut s = open(&app, true).await;
    let room = s.sid.as_str().to_owned();
    media_join(&app, &fake, &s.sid, "sam", "PA_s1", "EV_1").await;
    media_join(&app, &fake, &s.sid, "cora", "PA_c1", "EV_2").await;
    let now = app.clock.now();
    let mut e = event("EV_3", "track_published", &room, now.unix_secs());
    e.participant = Some(FakeLivekit::participant("sam", "PA_s1", now.unix_millis()));
    e.track = Some(proto::TrackInfo {
        sid: "TR_a1".into(),
        r#type: proto::TrackType::Audio as i32,
        mime_type: "audio/opus".into(),
        ..Default::default()
    });
    assert_eq!(deliver(&app.base, &e).await.0, 200);
    until("the track is egressed", || async { !fake.state.lock().unwrap().egresses.is_empty() }).await;
    let req = fake.state.lock().unwrap().egresses[0].clone();
    assert_eq!((req.room_name.as_str(), req.track_id.as_str()), (room.as_str(), "TR_a1"));
    let filename = format!("sessions/{room}/sam-audio-TR_a1.ogg");
    let Some(proto::track_egress_request::Output::File(f)) = &req.output else {
        panic!("a file output: {req:?}")
    };
    assert_eq!(f.filepath, filename);

    app.advance(SECS(60)).await;
    s.seeker.end_session(&s.sid).await.unwrap();
    ended(&mut s.s_events).await;
    // The egress finishes after the room is gone.
    let mut done = event("EV_4", "egress_ended", "", app.clock.now().unix_secs());
    done.room = None;
    done.egress_info = Some(proto::EgressInfo {
        egress_id: "EG_1".into(),
        room_name: room.clone(),
        status: proto::EgressStatus::EgressComplete as i32,
        file_results: vec![proto::FileInfo {
            filename: filename.clone(),
            size: 48_000,
            duration: 60_000_000_000,
            ..Default::default()
        }],
        ..Default::default()
    });
    assert_eq!(deliver(&app.base, &done).await.0, 200);
    assert_eq!(deliver(&app.base, &done).await.1["duplicate"].as_bool(), Some(true), "registered once");
    // LiveKit may also report the same egress under another event id.
    done.id = "EV_5".into();
    assert_eq!(deliver(&app.base, &done).await.0, 200);

    let premium = app.auth.issue_with(&crate::common::user("sam", Role::Seeker), true, WAIT, app.clock.now());
    let list: RecordingList = s.api.recordings(&premium, &s.sid).await.unwrap();
    assert_eq!(list.recordings.len(), 1);
    let r = &list.recordings[0];
    assert_eq!(r.participant_id.as_ref().map(|p| p.as_str()), Some("sam"));
    assert_eq!((r.kind.as_str(), r.codec.as_str(), r.content_type.as_str()), ("audio", "opus", "audio/ogg"));
    assert_eq!((r.bytes, r.duration_ms), (48_000, 60_000));
    let recap: Recap = reqwest::Client::new()
        .get(format!("{}/v1/sessions/{room}/recap", app.base))
        .bearer_auth(&premium)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(recap.recorded);
    assert_eq!(recap.recordings.len(), 1);
    let _ = &s.seeker;
}

#[tokio::test]
async fn lk4_egress_of_a_consented_session_becomes_its_recordings_and_recap_on_sqlite() {
    egress_becomes_recordings(false).await;
}

#[tokio::test]
async fn lk4_egress_of_a_consented_session_becomes_its_recordings_and_recap_on_postgres() {
    egress_becomes_recordings(true).await;
}

/// Delivers `e` `n` times at once; returns how many were first deliveries.
async fn deliver_concurrently(base: &str, e: &proto::WebhookEvent, n: usize) -> usize {
    let answers = futures_util::future::join_all((0..n).map(|_| deliver(base, e))).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    answers.iter().filter(|(_, body)| body["duplicate"].as_bool() == Some(false)).count()
}

async fn concurrent_deliveries_apply_once(postgres: bool) {
    let fake = FakeLivekit::start().await;
    let app = lk_app(&fake, postgres).await;
    let mut s = open(&app, false).await;
    media_join(&app, &fake, &s.sid, "cora", "PA_c1", "EV_c").await;
    let t0 = app.clock.now().unix_millis();
    let mut join = event("EV_j0", "participant_joined", s.sid.as_str(), t0 / 1000);
    join.participant = Some(FakeLivekit::participant("sam", "PA_s0", t0));
    assert_eq!(deliver_concurrently(&app.base, &join, 6).await, 1);
    // Ten rounds: 2 s together, then sam's connection drops for 1 s and
    // comes back as a new one; each event is delivered six times at once.
    for round in 0..10 {
        app.advance(SECS(2)).await;
        let (joined_ms, now) = (join.participant.as_ref().unwrap().joined_at_ms, app.clock.now().unix_millis());
        let conn = format!("PA_s{round}");
        let left = left_event(&s.sid, "sam", &conn, joined_ms, now, &format!("EV_l{round}"));
        assert_eq!(deliver_concurrently(&app.base, &left, 6).await, 1, "round {round}: one leave applied");
        app.advance(SECS(1)).await;
        let now = app.clock.now().unix_millis();
        join = event(&format!("EV_j{}", round + 1), "participant_joined", s.sid.as_str(), now / 1000);
        join.participant = Some(FakeLivekit::participant("sam", &format!("PA_s{}", round + 1), now));
        assert_eq!(deliver_concurrently(&app.base, &join, 6).await, 1, "round {round}: one join applied");
    }
    app.advance(SECS(5)).await;
    // The hang-up races sam's last leave: either way 25 s together.
    let now = app.clock.now().unix_millis();
    let left = left_event(&s.sid, "sam", "PA_s10", join.participant.as_ref().unwrap().joined_at_ms, now, "EV_last");
    let (hung_up, applied) = tokio::join!(s.seeker.end_session(&s.sid), deliver_concurrently(&app.base, &left, 4));
    hung_up.unwrap();
    assert!(applied <= 1);
    let bill = SessionBill { outcome: Outcome::Free, billable_secs: 25, charge: eur(0) };
    assert_eq!(ended(&mut s.s_events).await, (SessionEndReason::Hangup, Some(bill)));
    let room = s.sid.as_str().to_owned();
    until("the room is deleted", || async { fake.state.lock().unwrap().deleted.contains(&room) }).await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM livekit_events WHERE room = $1")
        .bind(s.sid.as_str())
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, 22 + applied as i64, "each event id stored once");
}

#[tokio::test]
async fn lk2_concurrent_deliveries_of_one_event_apply_once_on_sqlite() {
    concurrent_deliveries_apply_once(false).await;
}

#[tokio::test]
async fn lk2_concurrent_deliveries_of_one_event_apply_once_on_postgres() {
    concurrent_deliveries_apply_once(true).await;
}

#[tokio::test]
async fn lk_a_peer_to_peer_server_has_no_livekit_webhook() {
    let app = crate::common::spawn_app().await;
    let e = event("EV_1", "room_finished", "ses_0192900ca27b70c6a6a3a4506513270e", 0);
    let (status, problem) = deliver(&app.base, &e).await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("unknown_type")));
}

#[tokio::test]
async fn lk1_after_a_restart_the_rooms_participants_are_listed_at_once() {
    let fake = FakeLivekit::start().await;
    let app = lk_app(&fake, false).await;
    let s = open(&app, false).await;
    let room = s.sid.as_str().to_owned();
    until("the room is created", || async { fake.state.lock().unwrap().rooms.contains_key(&room) }).await;
    media_join(&app, &fake, &s.sid, "sam", "PA_s1", "EV_1").await;
    media_join(&app, &fake, &s.sid, "cora", "PA_c1", "EV_2").await;
    let lists = fake.state.lock().unwrap().lists;
    app.advance(SECS(50)).await;
    until("a poll before the restart", || async { fake.state.lock().unwrap().lists > lists }).await;
    let seeker_token = app.token("sam", Role::Seeker);
    drop(s);
    let lists = fake.state.lock().unwrap().lists;
    // Both stay in LiveKit's room while Parley restarts (checkpoint at +50).
    let app = app.restart().await;
    until("the participants are listed at once", || async { fake.state.lock().unwrap().lists > lists }).await;
    // The clients come back to the signaling room too (its own grace, M9).
    let (sam, _s_events) = app.client("sam", Role::Seeker).await;
    let (cora, _c_events) = app.client("cora", Role::Consultant).await;
    sam.join(&s_sid(&room)).await.unwrap();
    cora.join(&s_sid(&room)).await.unwrap();
    let lists = fake.state.lock().unwrap().lists;
    fake.disconnect(&room, "PA_s1");
    app.advance(SECS(30)).await;
    until("the next poll", || async { fake.state.lock().unwrap().lists > lists }).await;
    app.advance(SECS(30)).await;
    // Present through the restart until the poll missed sam at +80 (not
    // abandoned as of the restart at +50).
    let api = ApiClient::new(&app.base).unwrap();
    let d = settled(&api, &seeker_token, &s_sid(&room)).await;
    assert_eq!((d.outcome, d.billable_secs), (Some(Outcome::Free), 80));
}

fn s_sid(room: &str) -> SessionId {
    SessionId::parse(room).unwrap()
}
