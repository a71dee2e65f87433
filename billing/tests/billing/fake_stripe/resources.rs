//! The fake's resources: PaymentIntents (create, capture, cancel), refunds,
//! Connect accounts and account links, with Stripe's checks.

use super::http::*;
use super::*;

pub(super) const INTENT_PARAMS: &[&str] = &[
    "amount",
    "currency",
    "capture_method",
    "confirm",
    "confirmation_method",
    "payment_method",
    "payment_method_types",
    "allowed_payment_method_types",
    "description",
    "metadata",
    "transfer_data",
    "application_fee_amount",
    "on_behalf_of",
    "customer",
    "receipt_email",
    "statement_descriptor_suffix",
    "transfer_group",
    "return_url",
    "error_on_requires_action",
    "use_stripe_sdk",
    "expand",
];

pub(super) fn create_intent(st: &mut Inner, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        if let Some(p) = f.unknown(INTENT_PARAMS) {
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
        let currency = f.get("currency").ok_or_else(|| missing("currency"))?.to_ascii_lowercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(invalid("parameter_invalid_string", "currency", &format!("Invalid currency: {currency}.")));
        }
        let capture_method = f.get("capture_method").unwrap_or("automatic").to_owned();
        if !["automatic", "automatic_async", "manual"].contains(&capture_method.as_str()) {
            return Err(invalid("parameter_invalid_string", "capture_method", "Invalid capture_method."));
        }
        let confirm = f.bool("confirm")?.unwrap_or(false);
        let mut types = f.list("payment_method_types");
        types.extend(f.list("allowed_payment_method_types"));
        if types.is_empty() {
            types.push("card".to_owned());
        }
        if let Some(t) = types.iter().find(|t| t.as_str() != "card") {
            return Err(invalid(
                "payment_method_unactivated",
                "payment_method_types",
                &format!("The payment method type \"{t}\" is not activated for the fake Stripe."),
            ));
        }
        let fee = f.int("application_fee_amount")?;
        let transfer = f.map("transfer_data");
        let destination = transfer.get("destination").and_then(Value::as_str).map(str::to_owned);
        if !transfer.is_empty() && destination.is_none() {
            return Err(missing("transfer_data[destination]"));
        }
        if let Some(d) = &destination
            && !st.accounts.contains_key(d)
        {
            return Err(no_such("destination", d, Some("transfer_data[destination]")));
        }
        if fee.is_some() && destination.is_none() && f.get("on_behalf_of").is_none() {
            return Err(fee_without_transfer());
        }
        let pm = f.get("payment_method").map(str::to_owned);
        if confirm && pm.is_none() {
            return Err(missing("payment_method"));
        }
        let id = st.new_id("pi");
        let now = st.now();
        let mut pi = json!({
            "id": id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_details": null, "amount_received": 0, "application": null,
            "application_fee_amount": fee, "automatic_payment_methods": null, "canceled_at": null,
            "cancellation_reason": null, "capture_method": capture_method,
            "client_secret": format!("{id}_secret_fake"), "confirmation_method": "automatic",
            "created": now, "currency": currency, "customer": null, "description": f.get("description"),
            "last_payment_error": null, "latest_charge": null, "livemode": false,
            "metadata": Value::Object(f.map("metadata")), "next_action": null,
            "on_behalf_of": f.get("on_behalf_of"), "payment_method": pm, "payment_method_options": null,
            "payment_method_types": types, "processing": null, "receipt_email": f.get("receipt_email"),
            "review": null, "setup_future_usage": null, "shipping": null, "source": null,
            "statement_descriptor": null, "statement_descriptor_suffix": f.get("statement_descriptor_suffix"),
            "status": if pm.is_some() { "requires_confirmation" } else { "requires_payment_method" },
            "transfer_data": destination.as_ref().map(|d| json!({"destination": d})),
            "transfer_group": f.get("transfer_group"),
        });
        if !confirm {
            st.intents.insert(id, pi.clone());
            return Ok(Outcome::ok(pi.clone()).with_event("payment_intent.created", pi));
        }
        let pm = pm.unwrap_or_default();
        let created = pi.clone();
        let decline = |code: &str, decline_code: &str, message: &str| {
            (code.to_owned(), decline_code.to_owned(), message.to_owned())
        };
        let declined = match pm.as_str() {
            "pm_card_visa" | "pm_card_mastercard" => None,
            "pm_card_chargeDeclined" => Some(decline("card_declined", "generic_decline", "Your card was declined.")),
            "pm_card_chargeDeclinedInsufficientFunds" => {
                Some(decline("card_declined", "insufficient_funds", "Your card has insufficient funds."))
            }
            "pm_card_authenticationRequired" => {
                pi["status"] = json!("requires_action");
                pi["next_action"] = json!({
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": "https://hooks.stripe.com/fake/3ds"},
                });
                st.intents.insert(id, pi.clone());
                return Ok(Outcome::ok(pi.clone())
                    .with_event("payment_intent.created", created)
                    .with_event("payment_intent.requires_action", pi));
            }
            other => {
                st.intents.remove(&id);
                return Err(refused(
                    400,
                    Some("resource_missing"),
                    Some("payment_method"),
                    &format!("No such PaymentMethod: '{other}'"),
                ));
            }
        };
        let charge = st.new_id("ch");
        pi["latest_charge"] = json!(charge);
        if let Some((code, decline_code, message)) = declined {
            let error = json!({
                "type": "card_error", "code": code, "decline_code": decline_code, "message": message,
                "charge": charge, "doc_url": "https://docs.stripe.com/error-codes/card-declined",
            });
            pi["status"] = json!("requires_payment_method");
            pi["last_payment_error"] = error.clone();
            st.intents.insert(id, pi.clone());
            let mut body = json!({ "error": error });
            body["error"]["payment_intent"] = pi.clone();
            return Ok(Outcome { status: 402, body, events: Vec::new(), store: true }
                .with_event("payment_intent.created", created)
                .with_event("payment_intent.payment_failed", pi));
        }
        if capture_method == "manual" {
            pi["status"] = json!("requires_capture");
            pi["amount_capturable"] = json!(amount);
            st.intents.insert(id, pi.clone());
            Ok(Outcome::ok(pi.clone())
                .with_event("payment_intent.created", created)
                .with_event("payment_intent.amount_capturable_updated", pi))
        } else {
            pi["status"] = json!("succeeded");
            pi["amount_received"] = json!(amount);
            st.intents.insert(id, pi.clone());
            Ok(Outcome::ok(pi.clone())
                .with_event("payment_intent.created", created)
                .with_event("payment_intent.succeeded", pi))
        }
    })
}

pub(super) fn fee_without_transfer() -> Outcome {
    refused(
        400,
        None,
        Some("application_fee_amount"),
        "Can only apply an application_fee_amount when the PaymentIntent is attempting a direct payment \
         (using an OAuth key or Stripe-Account header) or destination payment (using `transfer_data[destination]`).",
    )
}

pub(super) fn capture_intent(st: &mut Inner, id: &str, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        if let Some(p) =
            f.unknown(&["amount_to_capture", "application_fee_amount", "metadata", "expand", "final_capture"])
        {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let to_capture = f.int("amount_to_capture")?;
        let fee = f.int("application_fee_amount")?;
        let Some(pi) = st.intents.get(id).cloned() else { return Err(no_such("payment_intent", id, None)) };
        if pi["status"] != "requires_capture" {
            return Err(unexpected_state(&pi, "captured", "requires_capture"));
        }
        let capturable = pi["amount_capturable"].as_i64().unwrap_or(0);
        let amount = to_capture.unwrap_or(capturable);
        if amount < 1 {
            return Err(invalid(
                "parameter_invalid_integer",
                "amount_to_capture",
                "This value must be greater than or equal to 1.",
            ));
        }
        if amount > capturable {
            return Err(refused(
                400,
                Some("amount_too_large"),
                Some("amount_to_capture"),
                &format!("The amount to capture ({amount}) cannot exceed the amount capturable ({capturable})."),
            ));
        }
        if let Some(fee) = fee {
            if pi["transfer_data"].is_null() && pi["on_behalf_of"].is_null() {
                return Err(fee_without_transfer());
            }
            if fee < 0 || fee > amount {
                return Err(refused(
                    400,
                    None,
                    Some("application_fee_amount"),
                    &format!(
                        "The application_fee_amount ({fee}) must be between 0 and the amount captured ({amount})."
                    ),
                ));
            }
        }
        let mut pi = pi;
        pi["status"] = json!("succeeded");
        pi["amount_capturable"] = json!(0);
        pi["amount_received"] = json!(amount);
        if let Some(fee) = fee {
            pi["application_fee_amount"] = json!(fee);
        }
        let meta = f.map("metadata");
        if let Some(m) = pi["metadata"].as_object_mut() {
            m.extend(meta);
        }
        st.intents.insert(id.to_owned(), pi.clone());
        Ok(Outcome::ok(pi.clone()).with_event("payment_intent.succeeded", pi))
    })
}

pub(super) fn cancel_intent(st: &mut Inner, id: &str, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        if let Some(p) = f.unknown(&["cancellation_reason", "expand"]) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let reason = f.get("cancellation_reason");
        if let Some(r) = reason
            && !["duplicate", "fraudulent", "requested_by_customer", "abandoned"].contains(&r)
        {
            return Err(invalid("parameter_invalid_string", "cancellation_reason", "Invalid cancellation_reason."));
        }
        let Some(mut pi) = st.intents.get(id).cloned() else {
            return Err(no_such("payment_intent", id, None));
        };
        let cancelable = ["requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"];
        if !cancelable.iter().any(|s| pi["status"] == *s) {
            return Err(unexpected_state(&pi, "canceled", &cancelable.join(", ")));
        }
        pi["status"] = json!("canceled");
        pi["amount_capturable"] = json!(0);
        pi["canceled_at"] = json!(st.now());
        pi["cancellation_reason"] = json!(reason);
        pi["next_action"] = Value::Null;
        st.intents.insert(id.to_owned(), pi.clone());
        Ok(Outcome::ok(pi.clone()).with_event("payment_intent.canceled", pi))
    })
}

pub(super) fn create_refund(st: &mut Inner, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        let allowed = [
            "payment_intent",
            "charge",
            "amount",
            "reason",
            "metadata",
            "reverse_transfer",
            "refund_application_fee",
            "expand",
        ];
        if let Some(p) = f.unknown(&allowed) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let amount = f.int("amount")?;
        let reverse = f.bool("reverse_transfer")?.unwrap_or(false);
        let refund_fee = f.bool("refund_application_fee")?.unwrap_or(false);
        let intent_id = match (f.get("payment_intent"), f.get("charge")) {
            (Some(pi), _) => pi.to_owned(),
            (None, Some(ch)) => st
                .intents
                .values()
                .find(|pi| pi["latest_charge"] == ch)
                .and_then(|pi| pi["id"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| no_such("charge", ch, Some("charge")))?,
            (None, None) => return Err(missing("payment_intent")),
        };
        let Some(pi) = st.intents.get(&intent_id).cloned() else {
            return Err(no_such("payment_intent", &intent_id, Some("payment_intent")));
        };
        if pi["status"] != "succeeded" {
            return Err(refused(
                400,
                Some("charge_not_refundable"),
                None,
                &format!("This PaymentIntent ({intent_id}) does not have a successful charge to refund."),
            ));
        }
        if (reverse || refund_fee) && pi["transfer_data"].is_null() {
            let param = if reverse { "reverse_transfer" } else { "refund_application_fee" };
            return Err(refused(
                400,
                None,
                Some(param),
                "This charge has no transfer to reverse and no application fee to refund.",
            ));
        }
        let received = pi["amount_received"].as_i64().unwrap_or(0);
        let already = st.refunded.get(&intent_id).copied().unwrap_or(0);
        let remaining = received - already;
        if remaining <= 0 {
            return Err(refused(
                400,
                Some("charge_already_refunded"),
                None,
                &format!("Charge {} has already been refunded.", pi["latest_charge"].as_str().unwrap_or_default()),
            ));
        }
        let amount = amount.unwrap_or(remaining);
        if amount < 1 {
            return Err(invalid(
                "parameter_invalid_integer",
                "amount",
                "This value must be greater than or equal to 1.",
            ));
        }
        if amount > remaining {
            return Err(refused(
                400,
                Some("amount_too_large"),
                Some("amount"),
                &format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})"),
            ));
        }
        let total = already + amount;
        st.refunded.insert(intent_id.clone(), total);
        let id = st.new_id("re");
        let now = st.now();
        let refund = json!({
            "id": id, "object": "refund", "amount": amount, "balance_transaction": null,
            "charge": pi["latest_charge"], "created": now, "currency": pi["currency"],
            "metadata": Value::Object(f.map("metadata")), "payment_intent": intent_id,
            "reason": f.get("reason"), "receipt_number": null, "source_transfer_reversal": null,
            "status": "succeeded", "transfer_reversal": null,
        });
        let charge = json!({
            "id": pi["latest_charge"], "object": "charge", "amount": pi["amount"],
            "amount_captured": received, "amount_refunded": total, "application_fee_amount": pi["application_fee_amount"],
            "captured": true, "created": pi["created"], "currency": pi["currency"], "disputed": false,
            "livemode": false, "metadata": pi["metadata"], "paid": true, "payment_intent": intent_id,
            "payment_method": pi["payment_method"], "refunded": total == received, "status": "succeeded",
            "transfer_data": pi["transfer_data"],
        });
        Ok(Outcome::ok(refund).with_event("charge.refunded", charge))
    })
}

pub(super) fn create_account(st: &mut Inner, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        let allowed =
            ["type", "country", "email", "capabilities", "metadata", "business_type", "business_profile", "expand"];
        if let Some(p) = f.unknown(&allowed) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let kind = f.get("type").ok_or_else(|| missing("type"))?;
        if !["express", "standard", "custom"].contains(&kind) {
            return Err(invalid("parameter_invalid_string", "type", &format!("Invalid type: {kind}")));
        }
        let country = f.get("country").unwrap_or("US").to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid("country_unsupported", "country", &format!("Country '{country}' is unknown.")));
        }
        let default_currency = match country.as_str() {
            "US" => "usd",
            "GB" => "gbp",
            "CH" => "chf",
            _ => "eur",
        };
        let mut capabilities = serde_json::Map::new();
        for name in ["card_payments", "transfers"] {
            if f.get(&format!("capabilities[{name}][requested]")) == Some("true") {
                capabilities.insert(name.to_owned(), json!("inactive"));
            }
        }
        let id = st.new_id("acct");
        let acct = json!({
            "id": id, "object": "account", "type": kind, "country": country, "email": f.get("email"),
            "charges_enabled": false, "payouts_enabled": false, "details_submitted": false,
            "capabilities": capabilities, "metadata": Value::Object(f.map("metadata")),
            "created": st.now(), "default_currency": default_currency, "business_type": null,
        });
        st.accounts.insert(id, acct.clone());
        Ok(Outcome::ok(acct))
    })
}

pub(super) fn create_account_link(st: &mut Inner, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        if let Some(p) = f.unknown(&["account", "type", "refresh_url", "return_url", "collect", "expand"]) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let account = f.get("account").ok_or_else(|| missing("account"))?;
        let kind = f.get("type").ok_or_else(|| missing("type"))?;
        if !["account_onboarding", "account_update"].contains(&kind) {
            return Err(invalid("parameter_invalid_string", "type", &format!("Invalid type: {kind}")));
        }
        f.get("refresh_url").ok_or_else(|| missing("refresh_url"))?;
        f.get("return_url").ok_or_else(|| missing("return_url"))?;
        if !st.accounts.contains_key(account) {
            return Err(no_such("account", account, Some("account")));
        }
        let token = st.new_id("link");
        let now = st.now();
        Ok(Outcome::ok(json!({
            "object": "account_link", "created": now, "expires_at": now + 300,
            "url": format!("https://connect.stripe.com/setup/e/{account}/{token}"),
        })))
    })
}
