//! A call's price read, batched: each instant call reads its consultant's
//! price and payout account before its hold is placed (B2), and calls
//! that arrive together are read together, in one statement per batch,
//! by one task ([`PriceReads`]).
//!
//! Read one by one, each call cost a statement on a pooled connection and
//! the pool's ping when the connection went back (sqlx pings at every
//! release; PostgreSQL's pool again at the next acquire): on SQLite two
//! hops to the connection's thread and back, on PostgreSQL three round
//! trips. A batch costs one statement and one release whatever its size.
//! A lone call waits for no one: the task reads whatever has queued up
//! when it is free, so a batch is one call at a steady rate and grows
//! only while an earlier batch is being read.

use std::collections::HashMap;
use std::sync::LazyLock;

use parley_domain::UserId;
use parley_domain::protocol::rest::ConsultantPrice;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::{BillingError, price_from_row};
use crate::commit::numbered;

/// Consultants read per statement, at most. The ids are padded to a
/// power of two (the last one repeated), so that a statement has one of
/// seven texts, each prepared once per connection (PostgreSQL plans each
/// text anew).
const MAX_BATCH: usize = 64;

/// What a consultant charges and where the money goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PriceRow {
    /// The consultant's price (M7).
    pub(crate) price: ConsultantPrice,
    /// The payout account, when it can receive transfers (`charges_enabled`).
    pub(crate) destination: Option<String>,
}

/// The outcome of one read: the consultant's price, `None` if they charge
/// nothing (no price row), or an error as text: the database's (shared
/// by every call of the batch) or their row's (a price it cannot read).
type Answer = Result<Option<PriceRow>, String>;

struct Ask {
    consultant: UserId,
    reply: oneshot::Sender<Answer>,
}

/// The handle to the reading task; the task ends when the handle is
/// dropped (with its [`super::Billing`]).
pub(crate) struct PriceReads {
    asks: mpsc::UnboundedSender<Ask>,
}

impl PriceReads {
    /// Starts the reading task on `pool` (in the current tokio runtime).
    pub(crate) fn spawn(pool: AnyPool) -> PriceReads {
        let (asks, rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(pool, rx));
        PriceReads { asks }
    }

    /// `consultant`'s price and payout account, read in the next batch.
    ///
    /// # Errors
    ///
    /// The database's error or the consultant's row's, as text; or the
    /// task is gone (the runtime is shutting down).
    pub(crate) async fn read(&self, consultant: &UserId) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.asks.send(Ask { consultant: consultant.clone(), reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn gone() -> String {
    "the price reader stopped (shutting down)".to_owned()
}

async fn serve(pool: AnyPool, mut rx: mpsc::UnboundedReceiver<Ask>) {
    let mut asks = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut asks, MAX_BATCH).await > 0 {
        let mut ids: Vec<&str> = asks.iter().map(|a| a.consultant.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let read = read(&pool, &ids).await.map_err(|e| e.to_string());
        for ask in asks.drain(..) {
            let answer = match &read {
                Ok(rows) => rows.get(ask.consultant.as_str()).cloned().transpose(),
                Err(e) => Err(e.clone()),
            };
            // A caller that gave up (its call ended) needs no answer.
            let _ = ask.reply.send(answer);
        }
    }
}

/// The price and payout account of each of `ids` (distinct, at most
/// [`MAX_BATCH`]) that has a price, in one statement. A row that cannot
/// be read (a price model this build does not know) fails its own
/// consultant's calls, not the batch's.
async fn read(pool: &AnyPool, ids: &[&str]) -> Result<HashMap<String, Result<PriceRow, String>>, BillingError> {
    let padded = ids.len().next_power_of_two();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement(padded)));
    for i in 0..padded {
        query = query.bind(ids[i.min(ids.len() - 1)]);
    }
    let mut rows = HashMap::with_capacity(ids.len());
    for row in query.fetch_all(pool).await? {
        let consultant: String = row.try_get("consultant_id")?;
        rows.insert(consultant, price_row(&row).map_err(|e| e.to_string()));
    }
    Ok(rows)
}

/// The statement reading `n` consultants (a power of two up to
/// [`MAX_BATCH`]); the seven texts are written once.
fn statement(n: usize) -> &'static str {
    static TEXTS: LazyLock<Vec<String>> = LazyLock::new(|| {
        (0..=MAX_BATCH.trailing_zeros())
            .map(|k| {
                let list = numbered(1usize << k);
                format!(
                    "SELECT p.consultant_id, p.model, p.amount_minor, p.currency, a.account_id, a.charges_enabled \
                     FROM prices p LEFT JOIN payout_accounts a ON a.consultant_id = p.consultant_id \
                     WHERE p.consultant_id IN ({list})"
                )
            })
            .collect()
    });
    &TEXTS[n.trailing_zeros() as usize]
}

fn price_row(row: &AnyRow) -> Result<PriceRow, BillingError> {
    let price = price_from_row(row, "model", "amount_minor")?;
    let account: Option<String> = row.try_get("account_id")?;
    let ready: Option<i64> = row.try_get("charges_enabled")?;
    let destination = account.filter(|_| ready.is_some_and(|r| r != 0));
    Ok(PriceRow { price, destination })
}
