//! The evidence bundle (D4): what Parley recorded about a disputed
//! session, assembled for its parties and moderators, as JSON and as a
//! Markdown page a moderator reads at once (and the card network gets as
//! `uncategorized_text`, D5).

use std::fmt::Write as _;

use parley_billing::ChargebackRow;
use parley_domain::Money;
use parley_domain::protocol::rest::{
    Chargeback, ChatLine, Dispute, DisputeBundle, PartyHistory, RecordingFile, SessionDetails,
};
use parley_domain::protocol::{ChatKind, Outcome, Role, UserInfo};

use super::sql;
use crate::kernel::{ApiError, AppState};
use crate::sessions::details::details;

/// A chargeback row as the API shows it.
pub fn chargeback(c: &ChargebackRow) -> Chargeback {
    Chargeback {
        id: c.id.clone(),
        session_id: c.session_id.clone(),
        amount: c.amount,
        reason: c.reason.clone(),
        status: c.status.clone(),
        evidence_due_ms: c.due_ms,
        evidence_submitted_ms: c.evidence_submitted_ms,
        outcome: c.outcome.clone(),
    }
}

/// The bundle of `dispute` as `me` sees it (a party or a moderator: the
/// caller checked). Recording links only for whom R4 lets download them
/// (the consultant, a premium seeker, moderators).
pub async fn assemble(s: &AppState, me: &UserInfo, dispute: Dispute) -> Result<DisputeBundle, ApiError> {
    let sid = dispute.session_id.clone();
    let mut session = details(s, me, &sid).await?;
    let (chat, notes) = split_chat(&mut session);
    let may_download = match me.role {
        Role::Moderator => true,
        _ if me.id == dispute.consultant_id => true,
        _ => s.consent.is_premium(&me.id).await.map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let recordings = if may_download { crate::recordings::files_of(s, &sid).await? } else { Vec::new() };
    let pool = s.store.pool();
    let history = vec![
        sql::history(&pool, &dispute.seeker_id, "seeker").await?,
        sql::history(&pool, &dispute.consultant_id, "consultant").await?,
    ];
    let chargebacks = s.billing.chargebacks_of(&sid).await?.iter().map(chargeback).collect();
    Ok(DisputeBundle { dispute, session, chat, notes, recordings, history, chargebacks })
}

/// Takes the chat lines and notes out of the session's timeline.
pub fn split_chat(session: &mut SessionDetails) -> (Vec<ChatLine>, Vec<ChatLine>) {
    let (mut chat, mut notes) = (Vec::new(), Vec::new());
    for t in &session.timeline {
        let kind = match t.kind.as_str() {
            "chat" => ChatKind::Chat,
            "note" => ChatKind::Note,
            _ => continue,
        };
        let (Some(from), Some(text)) = (t.user_id.clone(), t.detail.clone()) else { continue };
        let line = ChatLine { at_ms: t.at_ms, from, kind, text };
        if kind == ChatKind::Note { notes.push(line) } else { chat.push(line) }
    }
    session.timeline.retain(|t| t.kind != "chat" && t.kind != "note");
    (chat, notes)
}

fn amount(m: Option<Money>) -> String {
    m.map_or_else(|| "—".to_owned(), |m| format!("{} {}.{:02}", m.currency, m.amount_minor / 100, m.amount_minor % 100))
}

/// A server time as UTC, `YYYY-MM-DD HH:MM:SS`.
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The session's timeline as text, one line per event (the card network's
/// `access_activity_log`, D5).
pub fn activity_log(d: &SessionDetails) -> String {
    let mut out = String::new();
    for t in &d.timeline {
        let who = t.user_id.as_ref().map(|u| format!(" {u}")).unwrap_or_default();
        let detail = t.detail.as_deref().map(|x| format!(" ({x})")).unwrap_or_default();
        let _ = writeln!(out, "{} UTC {}{}{}", utc(t.at_ms), t.kind, who, detail);
    }
    let _ = writeln!(out, "billable seconds: {}", d.billable_secs);
    out
}

/// The bundle as one Markdown page: the dispute, the money, the meter's
/// decision, the timeline, chat and notes, recordings, both parties'
/// history and card chargebacks.
pub fn markdown(b: &DisputeBundle) -> String {
    let d = &b.dispute;
    let mut out = String::new();
    let _ = writeln!(out, "# Dispute {} — session {}\n", d.id, d.session_id);
    let _ = writeln!(out, "- **status**: {}", d.status.as_str());
    let _ = writeln!(out, "- **opened by**: `{}` on {} UTC", d.opened_by, utc(d.opened_at_ms));
    let _ = writeln!(out, "- **seeker**: `{}`; **consultant**: `{}`", d.seeker_id, d.consultant_id);
    let _ = writeln!(out, "- **reason**: {}\n", d.reason.as_str());
    let _ = writeln!(out, "> {}\n", d.text.replace('\n', "\n> "));
    match (&d.answer, d.answered_at_ms) {
        (Some(a), Some(at)) => {
            let _ = writeln!(out, "**Answer** ({} UTC):\n\n> {}\n", utc(at), a.replace('\n', "\n> "));
        }
        _ => {
            let _ = writeln!(out, "**Answer**: none yet\n");
        }
    }
    if let Some(decision) = d.decision {
        let by = d.decided_by.as_ref().map(|u| format!(" by `{u}`")).unwrap_or_default();
        let _ = writeln!(out, "**Decision**: {}{by}, refunded {}", decision.as_str(), amount(d.refunded));
        if let Some(n) = &d.note {
            let _ = writeln!(out, "\n> {}\n", n.replace('\n', "\n> "));
        }
    }
    let parts = Parts {
        session: &b.session,
        chat: &b.chat,
        notes: &b.notes,
        recordings: &b.recordings,
        history: &b.history,
        chargebacks: &b.chargebacks,
    };
    evidence(&mut out, &parts);
    out
}

/// What a session's evidence is made of (a dispute's bundle, or a card
/// chargeback's evidence when nobody opened a dispute).
pub struct Parts<'a> {
    /// The session's details (timeline without chat and notes).
    pub session: &'a SessionDetails,
    /// Chat lines.
    pub chat: &'a [ChatLine],
    /// Notes.
    pub notes: &'a [ChatLine],
    /// Recording files.
    pub recordings: &'a [RecordingFile],
    /// Both parties' history.
    pub history: &'a [PartyHistory],
    /// Card chargebacks.
    pub chargebacks: &'a [Chargeback],
}

/// The evidence after the dispute's own part: money and the meter, the
/// timeline, chat and notes, recordings, history, card chargebacks.
pub fn evidence(out: &mut String, b: &Parts<'_>) {
    let s = b.session;
    let _ = writeln!(*out, "## Money and the meter\n");
    let outcome = match s.outcome {
        Some(Outcome::Charged) => "charged",
        Some(Outcome::Free) => "free",
        None => "not decided",
    };
    let _ = writeln!(*out, "| | |\n|---|---|");
    let _ = writeln!(
        *out,
        "| session | {} → {} UTC ({}) |",
        utc(s.opened_at_ms),
        s.ended_at_ms.map_or("open".into(), utc),
        s.end_reason.as_deref().unwrap_or("—")
    );
    let _ = writeln!(*out, "| meter | {} billable s, {outcome} |", s.billable_secs);
    let _ = writeln!(*out, "| hold | {} |", amount(s.hold.as_ref().map(|h| h.amount)));
    let _ = writeln!(*out, "| captured | {} |", amount(s.captured));
    let _ = writeln!(*out, "| platform fee | {} |", amount(s.fee));
    let _ = writeln!(*out, "| consultant payout | {} |", amount(s.payout));
    let _ = writeln!(*out, "| refunded | {} |\n", amount(s.refunded));
    let _ = writeln!(*out, "## Timeline (UTC)\n");
    for t in &s.timeline {
        let who = t.user_id.as_ref().map(|u| format!(" `{u}`")).unwrap_or_default();
        let detail = t.detail.as_deref().map(|x| format!(" ({x})")).unwrap_or_default();
        let _ = writeln!(*out, "- {} {}{}{}", utc(t.at_ms), t.kind, who, detail);
    }
    for (title, lines) in [("Chat", b.chat), ("Notes", b.notes)] {
        if !lines.is_empty() {
            let _ = writeln!(*out, "\n## {title}\n");
            for l in lines {
                let _ = writeln!(*out, "- {} `{}`: {}", utc(l.at_ms), l.from, l.text.replace('\n', " "));
            }
        }
    }
    if !b.recordings.is_empty() {
        let _ = writeln!(*out, "\n## Recordings (both consented; links expire)\n");
        for f in b.recordings {
            let whose = f.participant_id.as_ref().map(|u| format!("`{u}` ")).unwrap_or_default();
            let _ = writeln!(*out, "- [{whose}{} ({}, {} s)]({})", f.kind, f.codec, f.duration_ms / 1000, f.url);
        }
    }
    let _ = writeln!(*out, "\n## History\n");
    let _ = writeln!(*out, "| party | role | sessions | charged | disputes opened | against | reviews | avg stars |");
    let _ = writeln!(*out, "|---|---|---|---|---|---|---|---|");
    for h in b.history {
        let stars = h.average_stars_x100.map_or("—".into(), |x| format!("{}.{:02}", x / 100, x % 100));
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {stars} |",
            h.user_id, h.role, h.sessions, h.charged_sessions, h.disputes_opened, h.disputes_against, h.reviews
        );
    }
    if !b.chargebacks.is_empty() {
        let _ = writeln!(*out, "\n## Card chargebacks\n");
        for c in b.chargebacks {
            let _ = writeln!(
                out,
                "- `{}`: {} ({}), {}, evidence {}{}",
                c.id,
                amount(Some(c.amount)),
                c.reason,
                c.status,
                c.evidence_submitted_ms.map_or("not submitted".into(), |t| format!("submitted {} UTC", utc(t))),
                c.outcome.as_deref().map(|o| format!(", {o}")).unwrap_or_default()
            );
        }
    }
}
