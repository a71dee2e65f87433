//! Milestone decisions (E3–E5, E7): submit, approve, auto-release,
//! dispute and a moderator's resolution, each under the engagement's lock.

use super::*;

impl Billing {
    /// Applies `decision` to `milestone` under its engagement's lock (E3–E5,
    /// E7), then carries out the movements it reserved. Returns whether it
    /// changed anything (an auto-release not yet due, or an approval of a
    /// milestone already released, changes nothing).
    ///
    /// Errors: `Conflict(UnknownEngagement)`; `Conflict(EngagementState)`
    /// when the milestone or engagement is not in a state that allows it;
    /// `Refused(InvalidField)` for a split outside 0..=amount; `Provider`
    /// if a movement failed (the decision stands; the movement is retried
    /// by the escrow worker under the same key).
    pub async fn decide_milestone(&self, milestone: &str, decision: &Decision) -> Result<bool, BillingError> {
        let engagement = self.milestone_engagement(milestone).await?;
        let now = self.clock.now().unix_millis();
        let mut tx = self.pool.begin().await?;
        let eng = lock(&mut tx, &engagement, now).await?.ok_or_else(|| unknown(&engagement))?;
        let m = sqlx::query("SELECT state, amount_minor, release_due_ms FROM milestones WHERE id = $1")
            .bind(milestone)
            .fetch_one(&mut *tx)
            .await?;
        let state: String = m.try_get("state")?;
        let currency = Currency::parse(&eng.try_get::<String, _>("currency")?)?;
        let amount = Money::new(m.try_get("amount_minor")?, currency);
        let eng_state: String = eng.try_get("state")?;
        if eng_state != "active" && !matches!(decision, Decision::Approve) {
            return Err(conflict(format!("engagement {engagement} is {eng_state}")));
        }
        let bad = |what: &str| conflict(format!("milestone {milestone} is {state}: cannot {what}"));
        let mut moves = Vec::new();
        let change = match decision {
            Decision::Submit { note, links } => {
                if state != "open" {
                    return Err(bad("submit it"));
                }
                let due = Timestamp::from_unix_millis(now).plus(self.config().escrow_auto_release).unix_millis();
                let links = serde_json::to_string(links).map_err(|e| BillingError::Data(e.to_string()))?;
                sqlx::query(
                    "UPDATE milestones SET state = 'submitted', note = $2, links = $3, submitted_ms = $4, \
                     release_due_ms = $5, updated_ms = $4 WHERE id = $1",
                )
                .bind(milestone)
                .bind(note)
                .bind(links)
                .bind(now)
                .bind(due)
                .execute(&mut *tx)
                .await?;
                EscrowChange::Submitted
            }
            Decision::Approve | Decision::AutoRelease => {
                let auto = matches!(decision, Decision::AutoRelease);
                let due: Option<i64> = m.try_get("release_due_ms")?;
                if auto && !(state == "submitted" && due.is_some_and(|d| d <= now)) {
                    return Ok(false);
                }
                if state == "released" {
                    // Approved already: carry out what may be pending.
                    drop(tx);
                    self.carry_moves(&engagement).await?;
                    return Ok(false);
                }
                if eng_state != "active" {
                    return Err(conflict(format!("engagement {engagement} is {eng_state}")));
                }
                if state != "open" && state != "submitted" {
                    return Err(bad("release it"));
                }
                self.settle_milestone(&mut tx, milestone, "released", amount, amount.amount_minor, None, now).await?;
                moves.push(());
                EscrowChange::Released { auto }
            }
            Decision::Dispute { reason, by } => {
                if state != "open" && state != "submitted" {
                    return Err(bad("dispute it"));
                }
                sqlx::query(
                    "UPDATE milestones SET state = 'disputed', dispute_reason = $2, disputed_by = $3, \
                     release_due_ms = NULL, updated_ms = $4 WHERE id = $1",
                )
                .bind(milestone)
                .bind(reason)
                .bind(by.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                EscrowChange::Disputed
            }
            Decision::Resolve { release_minor, note, by } => {
                if state != "disputed" {
                    return Err(bad("resolve it"));
                }
                if !(0..=amount.amount_minor).contains(release_minor) {
                    return Err(BillingError::Refused(
                        ErrorCode::InvalidField,
                        format!("release_minor: 0 to {} (the milestone's amount)", amount.amount_minor),
                    ));
                }
                let to = match *release_minor {
                    r if r == amount.amount_minor => "released",
                    0 => "refunded",
                    _ => "split",
                };
                let resolution = Some((note.as_str(), by));
                self.settle_milestone(&mut tx, milestone, to, amount, *release_minor, resolution, now).await?;
                moves.push(());
                EscrowChange::Resolved
            }
        };
        complete_if_done(&mut tx, &engagement, now).await?;
        self.announce(&mut tx, &engagement, Some(milestone), change).await?;
        tx.commit().await?;
        self.announced();
        if !moves.is_empty() {
            self.carry_moves(&engagement).await?;
        }
        Ok(true)
    }

    /// In the deciding transaction: milestone `id` (of `amount`) ends
    /// `state`, `release_minor` of it reserved as a transfer
    /// (`release:<id>`, less the commission) and the rest as a refund
    /// (`refund:<id>`).
    #[allow(clippy::too_many_arguments)]
    async fn settle_milestone(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        state: &str,
        amount: Money,
        release_minor: i64,
        resolution: Option<(&str, &UserId)>,
        now: i64,
    ) -> Result<(), BillingError> {
        let refund_minor = amount.amount_minor - release_minor;
        sqlx::query(
            "UPDATE milestones SET state = $2, released_minor = $3, refunded_minor = $4, release_due_ms = NULL, \
             resolution_note = $5, resolved_by = $6, updated_ms = $7 WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(release_minor)
        .bind(refund_minor)
        .bind(resolution.map(|(n, _)| n))
        .bind(resolution.map(|(_, by)| by.as_str()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let engagement = self.milestone_engagement_on(tx, id).await?;
        if release_minor > 0 {
            let gross = Money::new(release_minor, amount.currency);
            let fee = gross.basis_points(self.config().commission_bps)?;
            reserve(tx, &format!("release:{id}"), &engagement, "transfer", gross, fee.amount_minor, None, now).await?;
        }
        if refund_minor > 0 {
            let gross = Money::new(refund_minor, amount.currency);
            reserve(tx, &format!("refund:{id}"), &engagement, "refund", gross, 0, None, now).await?;
        }
        Ok(())
    }

    async fn milestone_engagement_on(&self, conn: &mut sqlx::AnyConnection, id: &str) -> Result<String, BillingError> {
        let row = sqlx::query("SELECT engagement_id FROM milestones WHERE id = $1").bind(id).fetch_one(conn).await?;
        Ok(row.try_get("engagement_id")?)
    }
}
