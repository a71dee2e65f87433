//! The fake's disputes (`dp_…`): created by the test
//! ([`super::FakeStripe::open_dispute`]), answered by Parley with
//! `POST /v1/disputes/{id}` as Stripe checks it
//! (<https://docs.stripe.com/api/disputes/update>): known evidence fields
//! only, file fields take `file_…` ids, at most 150,000 characters in all,
//! only while the dispute needs a response, `submit` a boolean; a
//! submission makes it `under_review` and counts in
//! `evidence_details.submission_count`.

use super::http::{Form, Outcome, invalid, no_such, refused};
use super::*;

/// Evidence fields that are text.
const TEXT_FIELDS: [&str; 19] = [
    "access_activity_log",
    "billing_address",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_tracking_number",
    "uncategorized_text",
    "enhanced_evidence",
];

/// Evidence fields that take the id of an uploaded file (`file_…`).
const FILE_FIELDS: [&str; 9] = [
    "cancellation_policy",
    "customer_communication",
    "customer_signature",
    "duplicate_charge_documentation",
    "receipt",
    "refund_policy",
    "service_documentation",
    "shipping_documentation",
    "uncategorized_file",
];

/// A new Dispute object of `pi`'s charge, `needs_response`, due in 7 days.
pub(super) fn new_dispute(id: &str, pi: &Value, reason: &str, now: i64) -> Value {
    let mut evidence = serde_json::Map::new();
    for f in TEXT_FIELDS.iter().chain(FILE_FIELDS.iter()) {
        evidence.insert((*f).to_owned(), Value::Null);
    }
    evidence.insert("enhanced_evidence".into(), json!({}));
    let charge = pi["latest_charge"]
        .as_str()
        .map_or_else(|| format!("ch_for_{}", pi["id"].as_str().unwrap_or("")), str::to_owned);
    json!({
        "id": id, "object": "dispute", "amount": pi["amount_received"], "currency": pi["currency"],
        "charge": charge, "payment_intent": pi["id"], "reason": reason,
        "status": "needs_response", "created": now, "livemode": false, "metadata": {},
        "is_charge_refundable": false, "balance_transactions": [], "enhanced_eligibility_types": [],
        "network_reason_code": null, "payment_method_details": null,
        "evidence": evidence,
        "evidence_details": {"due_by": now + 7 * 86_400, "enhanced_eligibility": {}, "has_evidence": false, "past_due": false, "submission_count": 0},
    })
}

/// `POST /v1/disputes/{id}`.
pub(super) fn update_dispute(st: &mut Inner, id: &str, f: &Form<'_>) -> Outcome {
    if let Some(p) = f.unknown(&["evidence", "submit", "metadata", "expand"]) {
        return invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}"));
    }
    let submit = match f.bool("submit") {
        Ok(b) => b.unwrap_or(false),
        Err(o) => return o,
    };
    let evidence = f.map("evidence");
    let mut total = 0;
    for (k, v) in &evidence {
        let text = v.as_str().unwrap_or_default();
        if FILE_FIELDS.contains(&k.as_str()) {
            if !text.starts_with("file_") {
                return invalid(
                    "resource_missing",
                    &format!("evidence[{k}]"),
                    &format!("No such file upload: '{text}'"),
                );
            }
        } else if !TEXT_FIELDS.contains(&k.as_str()) {
            return invalid(
                "parameter_unknown",
                &format!("evidence[{k}]"),
                &format!("Received unknown parameter: evidence[{k}]"),
            );
        }
        total += text.chars().count();
    }
    if total > 150_000 {
        return invalid(
            "parameter_invalid_string",
            "evidence",
            "The combined evidence may have at most 150000 characters.",
        );
    }
    let Some(d) = st.disputes.get_mut(id) else { return no_such("dispute", id, None) };
    if !matches!(d["status"].as_str(), Some("needs_response" | "warning_needs_response")) {
        let status = d["status"].as_str().unwrap_or_default().to_owned();
        return refused(
            400,
            Some("dispute_already_submitted"),
            None,
            &format!("This dispute is {status}: evidence can no longer be updated."),
        );
    }
    for (k, v) in evidence {
        d["evidence"][k] = v;
    }
    if submit {
        d["evidence_details"]["has_evidence"] = json!(true);
        let n = d["evidence_details"]["submission_count"].as_u64().unwrap_or(0) + 1;
        d["evidence_details"]["submission_count"] = json!(n);
        d["status"] =
            json!(if d["status"] == "warning_needs_response" { "warning_under_review" } else { "under_review" });
    }
    let obj = d.clone();
    Outcome::ok(obj.clone()).with_event("charge.dispute.updated", obj)
}
