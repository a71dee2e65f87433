//! Stripe webhooks: signature verification and parsing into the few events
//! billing acts on (DESIGN.md B5).
//!
//! Verification follows <https://docs.stripe.com/webhooks#verify-manually>:
//! the `Stripe-Signature` header is `t=<unix secs>,v1=<hex>[,v1=<hex>…]`
//! (other schemes such as `v0` are ignored); a `v1` is the hex HMAC-SHA256,
//! keyed with the endpoint's signing secret (`whsec_…`), of `{t}.{raw body}`.
//! Any matching `v1` is accepted (Stripe sends several while a secret is
//! being rolled), compared in constant time, and `t` must be within the
//! tolerance of the server's clock (300 s, B5) in either direction.
//!
//! The clock is a parameter so tests control it. Events are processed once
//! by [`WebhookEvent::id`]; that bookkeeping is the caller's.

use hmac::{Hmac, Mac};
use parley_domain::protocol::ErrorCode;
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The tolerance of DESIGN.md B5 and of Stripe's libraries, in seconds.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No `Stripe-Signature` header (or an empty one).
    #[error("missing Stripe-Signature header")]
    MissingSignature,
    /// The header has no timestamp or no `v1` signature, or no `v1` matches
    /// the body and the secret.
    #[error("bad webhook signature: {0}")]
    BadSignature(&'static str),
    /// The signature is valid but its timestamp is further than the
    /// tolerance from the server's clock (a replay, or a skewed clock).
    #[error("webhook timestamp {timestamp} is more than {tolerance_secs}s from now ({now})")]
    TimestampOutOfTolerance {
        /// `t` from the header, Unix seconds.
        timestamp: i64,
        /// The server's clock, Unix seconds.
        now: i64,
        /// The tolerance, seconds.
        tolerance_secs: i64,
    },
    /// The body is not a Stripe event (not JSON, or a needed field is
    /// missing or of the wrong type).
    #[error("malformed webhook payload: {0}")]
    MalformedPayload(String),
}

impl WebhookError {
    /// The stable code for responses and logs (the API answers 400 with
    /// it, DESIGN.md B5): `missing_signature`, `bad_signature`,
    /// `timestamp_out_of_tolerance` or `malformed_payload`.
    pub fn code(&self) -> ErrorCode {
        match self {
            WebhookError::MissingSignature => ErrorCode::MissingSignature,
            WebhookError::BadSignature(_) => ErrorCode::BadSignature,
            WebhookError::TimestampOutOfTolerance { .. } => ErrorCode::TimestampOutOfTolerance,
            WebhookError::MalformedPayload(_) => ErrorCode::MalformedPayload,
        }
    }
}

fn mac(payload: &[u8], secret: &str, t: i64) -> HmacSha256 {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// A valid `Stripe-Signature` header value for `payload` signed with
/// `secret` at Unix time `t` (seconds): `t=<t>,v1=<hex>`. Used by tests and
/// the fake Stripe to send webhooks.
pub fn sign(payload: &[u8], secret: &str, t: i64) -> String {
    let digest = mac(payload, secret, t).finalize().into_bytes();
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    format!("t={t},v1={hex}")
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

/// Verifies a webhook's `Stripe-Signature` header against the raw body
/// (the bytes as received: re-serialised JSON does not verify).
///
/// `signature_header` is the header's value, empty if the header is absent;
/// `secret` the endpoint's signing secret; `now_unix_secs` the server's
/// clock; `tolerance_secs` the largest accepted |now − t|
/// ([`DEFAULT_TOLERANCE_SECS`]).
///
/// # Errors
/// [`WebhookError::MissingSignature`] for an empty header,
/// [`WebhookError::BadSignature`] when no `v1` matches (checked first),
/// [`WebhookError::TimestampOutOfTolerance`] for a valid but stale or
/// future signature.
pub fn verify(
    payload: &[u8],
    signature_header: &str,
    secret: &str,
    now_unix_secs: i64,
    tolerance_secs: i64,
) -> Result<(), WebhookError> {
    let header = signature_header.trim();
    if header.is_empty() {
        return Err(WebhookError::MissingSignature);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else { continue };
        match key.trim() {
            "t" => timestamp = value.trim().parse::<i64>().ok(),
            "v1" => signatures.push(value.trim()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::BadSignature("no timestamp in the header"))?;
    if signatures.is_empty() {
        return Err(WebhookError::BadSignature("no v1 signature in the header"));
    }
    let expected = mac(payload, secret, timestamp);
    // `verify_slice` compares in constant time.
    let matched = signatures
        .iter()
        .filter_map(|s| hex_decode(s))
        .any(|candidate| expected.clone().verify_slice(&candidate).is_ok());
    if !matched {
        return Err(WebhookError::BadSignature("no v1 signature matches the payload"));
    }
    if now_unix_secs.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return Err(WebhookError::TimestampOutOfTolerance { timestamp, now: now_unix_secs, tolerance_secs });
    }
    Ok(())
}

/// A Stripe event, reduced to what billing acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// `evt_…`: events are processed once by id (B5).
    pub id: String,
    /// When Stripe created the event, Unix seconds.
    pub created: i64,
    /// What happened.
    pub kind: WebhookKind,
}

/// The events of DESIGN.md B5, by Stripe event type
/// (<https://docs.stripe.com/api/events/types>). Amounts are minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookKind {
    /// `payment_intent.amount_capturable_updated`: the hold is in place.
    HoldConfirmed {
        /// `pi_…`.
        intent_id: String,
        /// `amount_capturable`.
        amount_capturable: i64,
    },
    /// `payment_intent.succeeded`: captured.
    Captured {
        /// `pi_…`.
        intent_id: String,
        /// `amount_received`.
        amount_received: i64,
    },
    /// `payment_intent.canceled`: released, or expired (B6).
    Canceled {
        /// `pi_…`.
        intent_id: String,
    },
    /// `payment_intent.payment_failed`: the hold failed (declined).
    PaymentFailed {
        /// `pi_…`.
        intent_id: String,
        /// `last_payment_error.message` (or its `code`; empty if neither).
        message: String,
    },
    /// `charge.refunded`.
    Refunded {
        /// The charge's `payment_intent`.
        intent_id: String,
        /// The charge's `amount_refunded`: the total refunded so far, not
        /// this refund's amount.
        amount_refunded: i64,
    },
    /// `charge.dispute.created`, `charge.dispute.updated`,
    /// `charge.dispute.closed`: a card dispute (chargeback) of a payment
    /// (<https://docs.stripe.com/api/disputes/object>).
    Dispute {
        /// Which of the three events.
        change: DisputeChange,
        /// The dispute's `id` (`du_…`, `dp_…`).
        dispute_id: String,
        /// The dispute's `payment_intent`.
        intent_id: String,
        /// The disputed `amount` (minor units).
        amount: i64,
        /// Stripe's `reason`, e.g. `fraudulent`.
        reason: String,
        /// Stripe's `status`: `needs_response`, `under_review`, `won`,
        /// `lost`, `warning_…`.
        status: String,
        /// `evidence_details.due_by` (Unix seconds), if any.
        due_by: Option<i64>,
    },
    /// `account.updated`: a consultant's connected account changed.
    AccountUpdated {
        /// `acct_…`.
        account_id: String,
        /// `charges_enabled`.
        charges_enabled: bool,
        /// `payouts_enabled`.
        payouts_enabled: bool,
        /// `details_submitted`.
        details_submitted: bool,
    },
    /// Any other event type (acknowledged and ignored).
    Other(String),
}

fn malformed(what: impl Into<String>) -> WebhookError {
    WebhookError::MalformedPayload(what.into())
}

fn str_field(obj: &Value, key: &str) -> Result<String, WebhookError> {
    obj.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| malformed(format!("no string `{key}`")))
}

fn int_field(obj: &Value, key: &str) -> Result<i64, WebhookError> {
    obj.get(key).and_then(Value::as_i64).ok_or_else(|| malformed(format!("no integer `{key}`")))
}

fn bool_field(obj: &Value, key: &str) -> bool {
    obj.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// An id field that may be expanded into an object (`"pi_…"` or
/// `{"id": "pi_…", …}`).
fn id_field(obj: &Value, key: &str) -> Result<String, WebhookError> {
    match obj.get(key) {
        Some(Value::String(id)) => Ok(id.clone()),
        Some(Value::Object(o)) => {
            o.get("id").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| malformed(format!("no `{key}.id`")))
        }
        _ => Err(malformed(format!("no `{key}`"))),
    }
}

/// Which `charge.dispute.*` event a [`WebhookKind::Dispute`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeChange {
    /// `charge.dispute.created`.
    Created,
    /// `charge.dispute.updated`.
    Updated,
    /// `charge.dispute.closed`: `status` is `won` or `lost` (or
    /// `warning_closed`).
    Closed,
}

/// Parses a (verified) Stripe event, reading only the fields needed, so
/// unrelated or new fields do not matter.
///
/// # Errors
/// [`WebhookError::MalformedPayload`] if the body is not JSON, or lacks
/// `id`, `created`, `type`, `data.object` or a field its type needs.
pub fn parse(payload: &[u8]) -> Result<WebhookEvent, WebhookError> {
    let event: Value = serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
    let id = str_field(&event, "id")?;
    let created = int_field(&event, "created")?;
    let kind_name = str_field(&event, "type")?;
    let obj = event.get("data").and_then(|d| d.get("object")).ok_or_else(|| malformed("no `data.object`"))?;
    let kind = match kind_name.as_str() {
        "payment_intent.amount_capturable_updated" => WebhookKind::HoldConfirmed {
            intent_id: str_field(obj, "id")?,
            amount_capturable: int_field(obj, "amount_capturable")?,
        },
        "payment_intent.succeeded" => WebhookKind::Captured {
            intent_id: str_field(obj, "id")?,
            amount_received: int_field(obj, "amount_received")?,
        },
        "payment_intent.canceled" => WebhookKind::Canceled { intent_id: str_field(obj, "id")? },
        "payment_intent.payment_failed" => {
            let error = obj.get("last_payment_error");
            let text = |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str).map(str::to_owned);
            WebhookKind::PaymentFailed {
                intent_id: str_field(obj, "id")?,
                message: text("message").or_else(|| text("code")).unwrap_or_default(),
            }
        }
        "charge.refunded" => WebhookKind::Refunded {
            intent_id: id_field(obj, "payment_intent")?,
            amount_refunded: int_field(obj, "amount_refunded")?,
        },
        "charge.dispute.created" | "charge.dispute.updated" | "charge.dispute.closed" => WebhookKind::Dispute {
            change: match kind_name.as_str() {
                "charge.dispute.created" => DisputeChange::Created,
                "charge.dispute.updated" => DisputeChange::Updated,
                _ => DisputeChange::Closed,
            },
            dispute_id: str_field(obj, "id")?,
            intent_id: id_field(obj, "payment_intent")?,
            amount: int_field(obj, "amount")?,
            reason: obj.get("reason").and_then(Value::as_str).unwrap_or_default().to_owned(),
            status: obj.get("status").and_then(Value::as_str).unwrap_or_default().to_owned(),
            due_by: obj.get("evidence_details").and_then(|d| d.get("due_by")).and_then(Value::as_i64),
        },
        "account.updated" => WebhookKind::AccountUpdated {
            account_id: str_field(obj, "id")?,
            charges_enabled: bool_field(obj, "charges_enabled"),
            payouts_enabled: bool_field(obj, "payouts_enabled"),
            details_submitted: bool_field(obj, "details_submitted"),
        },
        _ => WebhookKind::Other(kind_name),
    };
    Ok(WebhookEvent { id, created, kind })
}
