//! The driver against a store that fails (nothing a client is told about an
//! end is missing from the store) and against a links' journal (what a new
//! hub core takes over, what it does not).

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use parley_domain::protocol::{ClientMessage, ErrorCode, Role, UserInfo};
use parley_domain::{CallId, Clock, SessionId, Sleep, Timestamp, UserId};
use tokio::sync::Notify;

use super::{Handled, Hub};
use crate::config::SignalingConfig;
use crate::journal::{JournalError, JournaledLink, LinkJournal};
use crate::store::{
    CallRecord, CallState, NoHooks, OpenGate, SessionEvent, SessionRecord, Store, StoreError, StoredCall,
    StoredSession, TimelineEntry,
};

/// A clock that stands still (no timer of these tests is due).
pub(crate) struct Still(pub(crate) Timestamp);

impl Clock for Still {
    fn now(&self) -> Timestamp {
        self.0
    }

    fn sleep_until(&self, _deadline: Timestamp) -> Sleep {
        Box::pin(std::future::pending())
    }
}

/// A store that takes everything but, if `fail_ends`, a session's end.
pub(crate) struct Flaky {
    pub(crate) fail_ends: bool,
}

#[async_trait]
impl Store for Flaky {
    async fn users_seen(&self, _: &[UserInfo], _: Timestamp) -> Result<(), StoreError> {
        Ok(())
    }
    async fn user(&self, _: &UserId) -> Result<Option<UserInfo>, StoreError> {
        Ok(None)
    }
    async fn users_with_role(&self, _: Role) -> Result<Vec<UserInfo>, StoreError> {
        Ok(Vec::new())
    }
    async fn create_call(&self, _: &CallRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn call_transition(&self, _: &CallId, _: CallState, _: Timestamp) -> Result<(), StoreError> {
        Ok(())
    }
    async fn call(&self, _: &CallId) -> Result<Option<StoredCall>, StoreError> {
        Ok(None)
    }
    async fn live_calls(&self) -> Result<Vec<StoredCall>, StoreError> {
        Ok(Vec::new())
    }
    async fn create_session(&self, _: &SessionRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn accept_call(&self, _: &SessionRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn session_event(&self, _: &SessionId, event: &SessionEvent, _: Timestamp) -> Result<(), StoreError> {
        match event {
            SessionEvent::Ended { .. } if self.fail_ends => Err(StoreError("disk full".into())),
            _ => Ok(()),
        }
    }
    async fn session(&self, _: &SessionId) -> Result<Option<StoredSession>, StoreError> {
        Ok(None)
    }
    async fn session_timeline(&self, _: &SessionId) -> Result<Vec<TimelineEntry>, StoreError> {
        Ok(Vec::new())
    }
}

/// A hang-up on a hub whose store does (or does not) take the end: the
/// caller's answer and every message its link got afterwards.
async fn hang_up(fail_ends: bool) -> (Result<(), ErrorCode>, Vec<String>) {
    let now = Timestamp::from_unix_millis(1_767_225_600_000);
    let store = Arc::new(Flaky { fail_ends });
    let hub = Hub::new(SignalingConfig::default(), Arc::new(Still(now)), store, Arc::new(OpenGate), Arc::new(NoHooks));
    let user = |id: &str, role| UserInfo { id: UserId::parse(id).unwrap(), name: id.into(), role };
    let (seeker, consultant) = (user("sam", Role::Seeker), user("cora", Role::Consultant));
    let session_id = SessionId::parse("ses_flaky").unwrap();
    let record = SessionRecord {
        session_id: session_id.clone(),
        call_id: CallId::parse("call_flaky").unwrap(),
        seeker_id: seeker.id.clone(),
        consultant_id: consultant.id.clone(),
        opened_at: now,
        recording: false,
        scheduled: false,
    };
    hub.restore_session(record, seeker.clone(), consultant, None);
    let link = hub.connect(seeker, false, 1, Arc::new(Notify::new())).expect("admitted");
    let mut seen = Vec::new();
    link.take(1, &mut seen, usize::MAX);
    let mut id = Some("end".to_owned());
    let answer = match hub.handle(&link, &mut id, ClientMessage::SessionEnd { session_id }) {
        Handled::Now(answer) => answer,
        Handled::Later(handler) => handler.await,
    };
    seen.clear();
    link.take(1, &mut seen, usize::MAX);
    (answer.map(|_| ()).map_err(|e| e.code), seen.iter().map(|t| t.as_str().to_owned()).collect())
}

#[tokio::test]
async fn a_stored_end_is_told() {
    let (answer, seen) = hang_up(false).await;
    assert_eq!(answer, Ok(()));
    assert!(seen.iter().any(|m| m.contains(r#""type":"session.ended""#)), "{seen:?}");
}

#[tokio::test]
async fn an_end_the_store_did_not_take_is_not_told_and_the_caller_gets_internal() {
    let (answer, seen) = hang_up(true).await;
    assert_eq!(answer, Err(ErrorCode::Internal));
    assert!(seen.iter().all(|m| !m.contains("session.ended")), "{seen:?}");
}

/// A links' journal in memory that, like a crashed hub node's Redis, keeps
/// what it was told (a closed link too, unless `forget_closed`).
#[derive(Debug, Default)]
struct MemoryJournal {
    links: std::sync::Mutex<std::collections::HashMap<String, JournaledLink>>,
    forget_closed: bool,
}

#[async_trait]
impl LinkJournal for MemoryJournal {
    fn key(&self, token: &str) -> Arc<str> {
        token.into()
    }
    fn opened(&self, key: &Arc<str>, user: &UserInfo, premium: bool, term: &str) {
        let mut links = self.links.lock().unwrap();
        let link = links.entry(key.to_string()).or_insert_with(|| JournaledLink {
            user: user.clone(),
            term: String::new(),
            premium,
            available: false,
            messages: Vec::new(),
        });
        link.term = term.to_owned();
    }
    fn appended(&self, key: &Arc<str>, seq: u64, text: &Utf8Bytes) {
        if let Some(link) = self.links.lock().unwrap().get_mut(&**key) {
            link.messages.push((seq, text.to_string()));
        }
    }
    fn presence(&self, key: &Arc<str>, available: bool) {
        if let Some(link) = self.links.lock().unwrap().get_mut(&**key) {
            link.available = available;
        }
    }
    fn closed(&self, key: &Arc<str>) {
        if self.forget_closed {
            self.links.lock().unwrap().remove(&**key);
        }
    }
    async fn load(&self, token: &str) -> Result<Option<JournaledLink>, JournalError> {
        Ok(self.links.lock().unwrap().get(token).cloned())
    }
}

fn journaled_hub(journal: Arc<MemoryJournal>) -> Arc<Hub> {
    let now = Timestamp::from_unix_millis(1_767_225_600_000);
    let store = Arc::new(Flaky { fail_ends: false });
    let hub = Hub::new(SignalingConfig::default(), Arc::new(Still(now)), store, Arc::new(OpenGate), Arc::new(NoHooks));
    hub.set_link_journal(journal);
    hub
}

fn sam() -> UserInfo {
    UserInfo { id: UserId::parse("sam").unwrap(), name: "Sam".into(), role: Role::Seeker }
}

/// A new hub core (the next hub node) resumes a link another core
/// journaled: it replays what the client had not read, same numbers.
#[tokio::test]
async fn a_new_hub_core_resumes_a_link_from_the_journal() {
    let journal = Arc::new(MemoryJournal::default());
    let hub = journaled_hub(journal.clone());
    let old = hub.connect(sam(), false, 1, Arc::new(Notify::new())).expect("admitted");
    let token = old.0.resume_token.clone();
    hub.reset_core();

    let provisional = hub.connect(sam(), false, 2, Arc::new(Notify::new())).expect("admitted");
    let (link, replayed, _) = hub.resume(&provisional, 2, Arc::new(Notify::new()), &token, 0).await.expect("resumed");
    // The old core's hello and its farewell (`server.shutdown`), unread.
    assert_eq!((link.0.resume_token.as_str(), replayed), (token.as_str(), 2));
    let mut seen = Vec::new();
    link.take(2, &mut seen, usize::MAX);
    assert!(seen[0].as_str().starts_with(r#"{"seq":1,"type":"hello""#), "{seen:?}");
    assert!(seen[1].as_str().starts_with(r#"{"seq":2,"type":"server.shutdown""#), "{seen:?}");
}

/// The core that wrote a link and forgot it (here: its client closed it;
/// the journal kept it anyway) does not take it back from the journal.
#[tokio::test]
async fn a_link_its_own_core_forgot_is_not_taken_back_from_the_journal() {
    let journal = Arc::new(MemoryJournal::default());
    let hub = journaled_hub(journal.clone());
    let old = hub.connect(sam(), false, 1, Arc::new(Notify::new())).expect("admitted");
    let token = old.0.resume_token.clone();
    hub.disconnect(&old, 1, crate::connection::Departure::Closed);
    assert!(journal.load(&token).await.unwrap().is_some(), "still in the journal");

    let provisional = hub.connect(sam(), false, 2, Arc::new(Notify::new())).expect("admitted");
    let refused = hub.resume(&provisional, 2, Arc::new(Notify::new()), &token, 0).await.map(|_| ());
    assert_eq!(refused.map_err(|e| e.code), Err(ErrorCode::ResumeFailed));

    // And a link closed on purpose leaves the journal.
    let forgetting = Arc::new(MemoryJournal { forget_closed: true, ..MemoryJournal::default() });
    let hub = journaled_hub(forgetting.clone());
    let link = hub.connect(sam(), false, 1, Arc::new(Notify::new())).expect("admitted");
    hub.disconnect(&link, 1, crate::connection::Departure::Closed);
    assert!(forgetting.load(&link.0.resume_token).await.unwrap().is_none());
}
