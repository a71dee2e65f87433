//! The fake's Connect transfers (escrow payouts): `POST /v1/transfers`,
//! `GET /v1/transfers/{id}` and `POST /v1/transfers/{id}/reversals`, with
//! Stripe's checks: a known destination account, a `source_transaction`
//! that is a charge of a succeeded PaymentIntent in the same currency, an
//! amount within what that charge has left (received − refunded −
//! transferred, net of reversals; else 400 `balance_insufficient`), and a
//! reversal of at most what is not reversed yet.

use super::http::*;
use super::*;

const TRANSFER_PARAMS: &[&str] =
    &["amount", "currency", "destination", "source_transaction", "transfer_group", "metadata", "description", "expand"];

/// The succeeded intent whose charge is `charge`, if any.
fn intent_of_charge<'a>(st: &'a Inner, charge: &str) -> Option<&'a Value> {
    st.intents.values().find(|pi| pi["latest_charge"] == charge && pi["status"] == "succeeded")
}

pub(super) fn create_transfer(st: &mut Inner, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        if let Some(p) = f.unknown(TRANSFER_PARAMS) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let amount = f.int("amount")?.ok_or_else(|| missing("amount"))?;
        if amount < 1 {
            return Err(invalid(
                "parameter_invalid_integer",
                "amount",
                "This value must be greater than or equal to 1.",
            ));
        }
        let currency = f.get("currency").ok_or_else(|| missing("currency"))?.to_owned();
        let destination = f.get("destination").ok_or_else(|| missing("destination"))?.to_owned();
        if !st.accounts.contains_key(&destination) {
            return Err(no_such("destination", &destination, Some("destination")));
        }
        // Escrow always ties a transfer to its funding charge.
        let source = f.get("source_transaction").ok_or_else(|| missing("source_transaction"))?.to_owned();
        let pi = intent_of_charge(st, &source).ok_or_else(|| no_such("charge", &source, Some("source_transaction")))?;
        if pi["currency"] != currency.as_str() {
            return Err(invalid(
                "parameter_invalid_string",
                "currency",
                "The currency differs from the source charge's.",
            ));
        }
        let received = pi["amount_received"].as_i64().unwrap_or(0);
        let refunded = st.refunded.get(pi["id"].as_str().unwrap_or_default()).copied().unwrap_or(0);
        let transferred: i64 = st
            .transfers
            .values()
            .filter(|t| t["source_transaction"] == source.as_str())
            .map(|t| t["amount"].as_i64().unwrap_or(0) - t["amount_reversed"].as_i64().unwrap_or(0))
            .sum();
        let left = received - refunded - transferred;
        if amount > left {
            let msg = format!(
                "Insufficient funds in Stripe account. The source transaction {source} has {left} left to transfer."
            );
            return Err(refused(400, Some("balance_insufficient"), Some("amount"), &msg));
        }
        let id = st.new_id("tr");
        let now = st.now();
        let transfer = json!({
            "id": id, "object": "transfer", "amount": amount, "amount_reversed": 0, "balance_transaction": null,
            "created": now, "currency": currency, "description": f.get("description"), "destination": destination,
            "destination_payment": null, "livemode": false, "metadata": f.map("metadata"),
            "reversals": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/transfers/{id}/reversals")},
            "reversed": false, "source_transaction": source, "source_type": "card",
            "transfer_group": f.get("transfer_group"),
        });
        st.transfers.insert(id, transfer.clone());
        Ok(Outcome::ok(transfer.clone()).with_event("transfer.created", transfer))
    })
}

pub(super) fn retrieve_transfer(st: &Inner, id: &str) -> Outcome {
    match st.transfers.get(id) {
        Some(t) => Outcome::ok(t.clone()),
        None => no_such("transfer", id, None),
    }
}

pub(super) fn create_reversal(st: &mut Inner, id: &str, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        if let Some(p) = f.unknown(&["amount", "description", "metadata", "refund_application_fee", "expand"]) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let Some(t) = st.transfers.get(id).cloned() else { return Err(no_such("transfer", id, None)) };
        let left = t["amount"].as_i64().unwrap_or(0) - t["amount_reversed"].as_i64().unwrap_or(0);
        let amount = f.int("amount")?.unwrap_or(left);
        if amount < 1 || amount > left {
            let msg = format!("You cannot reverse {amount}: the transfer has {left} left to reverse.");
            return Err(invalid("parameter_invalid_integer", "amount", &msg));
        }
        let rid = st.new_id("trr");
        let now = st.now();
        let reversal = json!({
            "id": rid, "object": "transfer_reversal", "amount": amount, "balance_transaction": null,
            "created": now, "currency": t["currency"], "destination_payment_refund": null,
            "metadata": f.map("metadata"), "source_refund": null, "transfer": id,
        });
        let t = st.transfers.get_mut(id).expect("looked up above");
        let reversed = t["amount_reversed"].as_i64().unwrap_or(0) + amount;
        t["amount_reversed"] = json!(reversed);
        t["reversed"] = json!(reversed == t["amount"].as_i64().unwrap_or(0));
        if let Some(data) = t["reversals"]["data"].as_array_mut() {
            data.push(reversal.clone());
        }
        Ok(Outcome::ok(reversal.clone()).with_event("transfer.reversed", t.clone()))
    })
}
