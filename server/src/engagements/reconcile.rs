//! Reconciliation of escrow (E8), part of `parley reconcile`: for every
//! funded engagement with no movement in flight, the ledger's
//! `escrow_fund` − (`escrow_release` + `escrow_refund` + `escrow_fee`) must
//! equal what its milestones (open, submitted, disputed) or its package
//! (its amount less its sessions' draws, unless cancelled) still hold, its funding must equal
//! its amount, and no movement may have been refused. With the sandbox
//! provider, the charge's received and refunded amounts and the transfers
//! out of it (net of reversals) must equal the ledger's.

use parley_domain::protocol::rest::{ReconcileFinding, ReconcileFindingKind};
use sqlx::{AnyPool, Row};

fn finding(engagement: &str, intent: Option<&str>, detail: String) -> ReconcileFinding {
    ReconcileFinding {
        kind: ReconcileFindingKind::EscrowBalance,
        session_id: Some(engagement.to_owned()),
        intent_id: intent.map(str::to_owned),
        detail,
    }
}

/// The escrow findings, oldest engagement first; `sandbox`: also compare
/// with the sandbox provider's charges, refunds and transfers.
pub async fn check(pool: &AnyPool, sandbox: bool) -> Result<Vec<ReconcileFinding>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.id, e.state, e.kind, e.amount_minor, e.currency, e.intent_id, e.charge_id, \
         (SELECT CAST(COALESCE(SUM(l.amount_minor), 0) AS BIGINT) FROM ledger l WHERE l.session_id = e.id AND l.kind = 'escrow_fund') AS funded, \
         (SELECT CAST(COALESCE(SUM(l.amount_minor), 0) AS BIGINT) FROM ledger l WHERE l.session_id = e.id AND l.kind = 'escrow_release') AS released, \
         (SELECT CAST(COALESCE(SUM(l.amount_minor), 0) AS BIGINT) FROM ledger l WHERE l.session_id = e.id AND l.kind = 'escrow_refund') AS refunded, \
         (SELECT CAST(COALESCE(SUM(l.amount_minor), 0) AS BIGINT) FROM ledger l WHERE l.session_id = e.id AND l.kind = 'escrow_fee') AS fees, \
         (SELECT CAST(COALESCE(SUM(m.amount_minor), 0) AS BIGINT) FROM milestones m WHERE m.engagement_id = e.id \
          AND m.state IN ('open', 'submitted', 'disputed')) AS unsettled, \
         (SELECT CAST(COALESCE(SUM(x.amount_minor), 0) AS BIGINT) FROM escrow_moves x WHERE x.engagement_id = e.id \
          AND x.session_id IS NOT NULL AND x.status = 'done') AS drawn, \
         (SELECT CAST(COUNT(*) AS BIGINT) FROM escrow_moves x WHERE x.engagement_id = e.id AND x.status = 'pending') AS pending, \
         (SELECT CAST(COUNT(*) AS BIGINT) FROM escrow_moves x WHERE x.engagement_id = e.id AND x.status = 'failed') AS refused \
         FROM engagements e WHERE e.state NOT IN ('funding', 'failed') ORDER BY e.created_ms, e.id",
    )
    .fetch_all(pool)
    .await?;
    let mut found = Vec::new();
    for r in rows {
        let id: String = r.try_get("id")?;
        let intent: Option<String> = r.try_get("intent_id")?;
        let currency: String = r.try_get("currency")?;
        if r.try_get::<i64, _>("pending")? > 0 {
            continue; // movements in flight
        }
        let refused: i64 = r.try_get("refused")?;
        if refused > 0 {
            found.push(finding(
                &id,
                intent.as_deref(),
                format!("{refused} escrow movement(s) refused by the provider"),
            ));
        }
        let (amount, funded): (i64, i64) = (r.try_get("amount_minor")?, r.try_get("funded")?);
        let (released, refunded, fees): (i64, i64, i64) =
            (r.try_get("released")?, r.try_get("refunded")?, r.try_get("fees")?);
        if funded != amount {
            found.push(finding(
                &id,
                intent.as_deref(),
                format!("engagement of {amount} {currency} but the ledger funded {funded}"),
            ));
        }
        let state: String = r.try_get("state")?;
        let holds = if r.try_get::<String, _>("kind")? == "milestones" {
            r.try_get::<i64, _>("unsettled")?
        } else if state == "cancelled" {
            0
        } else {
            // An active or completed package holds what its draws left.
            amount - r.try_get::<i64, _>("drawn")?
        };
        let escrowed = funded - released - refunded - fees;
        if escrowed != holds {
            found.push(finding(
                &id,
                intent.as_deref(),
                format!(
                    "escrowed {escrowed} {currency} (funded {funded} − released {released} − refunded {refunded} − fees {fees}) \
                     but its {state} engagement still holds {holds}"
                ),
            ));
        }
        if !sandbox {
            continue;
        }
        let charge: Option<String> = r.try_get("charge_id")?;
        let there = sqlx::query(
            "SELECT i.amount_received, i.amount_refunded, \
             (SELECT CAST(COALESCE(SUM(t.amount_minor - t.reversed_minor), 0) AS BIGINT) FROM sandbox_transfers t \
              WHERE t.source_transaction = $2) AS transferred FROM sandbox_intents i WHERE i.id = $1",
        )
        .bind(intent.as_deref().unwrap_or(""))
        .bind(charge.as_deref().unwrap_or(""))
        .fetch_optional(pool)
        .await?;
        let Some(t) = there else {
            found.push(finding(&id, intent.as_deref(), "its charge's intent is unknown to the provider".into()));
            continue;
        };
        let (received, back, out): (i64, i64, i64) =
            (t.try_get("amount_received")?, t.try_get("amount_refunded")?, t.try_get("transferred")?);
        if (received, back, out) != (funded, refunded, released) {
            found.push(finding(
                &id,
                intent.as_deref(),
                format!(
                    "the provider charged {received}, refunded {back}, transferred {out}; the ledger funded {funded}, \
                     refunded {refunded}, released {released} ({currency})"
                ),
            ));
        }
    }
    Ok(found)
}
