//! The links' journal (issue 16; docs/rules.md C7): in a cluster, the hub
//! node copies every seeker's and consultant's link — who it belongs to,
//! the consultant's presence choice and each numbered message — to a
//! store the next hub node can read (the server's is Redis). When the hub
//! node dies or is drained, a client's `resume` on the new hub node finds
//! its link there ([`LinkJournal::load`]) and resumes it: it gets what it
//! missed with the same sequence numbers, is back in its session's room,
//! and nothing has to be rejoined or renegotiated.
//!
//! Only a link another hub core wrote is taken over: one this core wrote
//! and then forgot (expired after the grace period, or replaced) stays
//! gone, and one its client closed on purpose is deleted.
//!
//! Writes are queued, never awaited, in the order the link made them (the
//! link calls [`LinkJournal::appended`] under its own lock), so the
//! messages of the last instant before a crash may be missing: a resume
//! whose `last_seq` is past what the journal holds continues after it, and
//! one whose missed messages left the journal is refused (`resume_failed`;
//! the SDKs rejoin).

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use parley_domain::protocol::UserInfo;

/// A link as a former hub node journaled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournaledLink {
    /// Whose link it is.
    pub user: UserInfo,
    /// The hub core that wrote it last ([`LinkJournal::opened`]'s `term`).
    pub term: String,
    /// The token's `premium` claim.
    pub premium: bool,
    /// Consultants: whether they asked to be rung (`presence.set available`).
    pub available: bool,
    /// The newest messages, `(seq, text)` in ascending `seq`, each `text`
    /// the JSON object as the client receives it (`{"seq":N,…}`).
    pub messages: Vec<(u64, String)>,
}

/// Why the journal could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the link journal cannot be read: {0}")]
pub struct JournalError(pub String);

/// Where a cluster's hub node keeps its links' resumable state; the
/// server's implementation is in Redis. A link is named by a key derived
/// from its resume token ([`LinkJournal::key`], once per link: the token is
/// a secret, so implementations hash it).
#[async_trait]
pub trait LinkJournal: std::fmt::Debug + Send + Sync + 'static {
    /// The key the link whose resume token is `token` is journaled under.
    fn key(&self, token: &str) -> Arc<str>;

    /// A link of `user` (journaled under `key`) opened by the hub core
    /// named `term` (or taken over by it); before any of its messages.
    fn opened(&self, key: &Arc<str>, user: &UserInfo, premium: bool, term: &str);

    /// The link numbered `text` (`seq`); queued in the order called.
    fn appended(&self, key: &Arc<str>, seq: u64, text: &Utf8Bytes);

    /// A consultant's `presence.set`: whether they want to be rung.
    fn presence(&self, key: &Arc<str>, available: bool);

    /// The client closed the link on purpose: it can never be resumed.
    fn closed(&self, key: &Arc<str>);

    /// The link whose resume token is `token`, if it is journaled.
    ///
    /// # Errors
    ///
    /// [`JournalError`] when the journal cannot be read (the resume is then
    /// refused and the client rejoins).
    async fn load(&self, token: &str) -> Result<Option<JournaledLink>, JournalError>;
}
