//! The fake's request handling: authentication, content type, injected
//! failures, `Idempotency-Key` replay, Stripe-shaped errors and form
//! decoding; the resources themselves are in `resources`.

use super::resources::*;
use super::*;

/// An API outcome: status, body, events to send, and whether an idempotent
/// result is stored (not for parameter-validation errors).
pub(super) struct Outcome {
    pub(super) status: u16,
    pub(super) body: Value,
    pub(super) events: Vec<(&'static str, Value)>,
    pub(super) store: bool,
}

impl Outcome {
    pub(super) fn ok(body: Value) -> Self {
        Outcome { status: 200, body, events: Vec::new(), store: true }
    }
    pub(super) fn with_event(mut self, kind: &'static str, object: Value) -> Self {
        self.events.push((kind, object));
        self
    }
}

pub(super) fn error_body(kind: &str, code: Option<&str>, param: Option<&str>, message: &str) -> Value {
    let mut e = json!({"type": kind, "message": message});
    if let Some(c) = code {
        e["code"] = json!(c);
        e["doc_url"] = json!(format!("https://docs.stripe.com/error-codes/{}", c.replace('_', "-")));
    }
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    json!({ "error": e })
}

/// A parameter-validation error (400, not stored for idempotency).
pub(super) fn invalid(code: &str, param: &str, message: &str) -> Outcome {
    Outcome {
        status: 400,
        body: error_body("invalid_request_error", Some(code), Some(param), message),
        events: Vec::new(),
        store: false,
    }
}

pub(super) fn missing(param: &str) -> Outcome {
    invalid("parameter_missing", param, &format!("Missing required param: {param}."))
}

/// A refusal after the endpoint started (stored for idempotency).
pub(super) fn refused(status: u16, code: Option<&str>, param: Option<&str>, message: &str) -> Outcome {
    Outcome { status, body: error_body("invalid_request_error", code, param, message), events: Vec::new(), store: true }
}

pub(super) fn no_such(kind: &str, id: &str, param: Option<&str>) -> Outcome {
    let mut o = refused(404, Some("resource_missing"), param, &format!("No such {kind}: '{id}'"));
    if param.is_some() {
        o.status = 400;
    }
    o
}

pub(super) fn unexpected_state(pi: &Value, action: &str, allowed: &str) -> Outcome {
    let status = pi["status"].as_str().unwrap_or_default();
    let mut o = refused(
        400,
        Some("payment_intent_unexpected_state"),
        None,
        &format!(
            "This PaymentIntent could not be {action} because it has a status of {status}. \
             Only a PaymentIntent with one of the following statuses may be {action}: {allowed}."
        ),
    );
    o.body["error"]["payment_intent"] = pi.clone();
    o
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space).
pub(super) fn parse_form(s: &str) -> Vec<(String, String)> {
    pub(super) fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Typed access to a decoded form.
pub(super) struct Form<'a>(pub(super) &'a [(String, String)]);

impl Form<'_> {
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key[sub]` pairs as a map (`metadata[k]=v`).
    pub(super) fn map(&self, key: &str) -> serde_json::Map<String, Value> {
        let prefix = format!("{key}[");
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let sub = k.strip_prefix(&prefix)?.strip_suffix(']')?;
                Some((sub.to_owned(), json!(v)))
            })
            .collect()
    }

    /// `key[]=a` or `key[0]=a` pairs as a list, in order.
    pub(super) fn list(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}[");
        self.0
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(&prefix)
                    .and_then(|r| r.strip_suffix(']'))
                    .is_some_and(|i| i.is_empty() || i.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Top-level parameter names (`metadata[k]` → `metadata`).
    pub(super) fn unknown(&self, allowed: &[&str]) -> Option<String> {
        self.0
            .iter()
            .map(|(k, _)| k.split('[').next().unwrap_or_default())
            .find(|k| !allowed.contains(k))
            .map(str::to_owned)
    }

    /// An integer parameter: `Ok(None)` if absent.
    pub(super) fn int(&self, key: &str) -> Result<Option<i64>, Outcome> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| invalid("parameter_invalid_integer", key, &format!("Invalid integer: {v}"))),
        }
    }

    /// A boolean parameter: `Ok(None)` if absent.
    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>, Outcome> {
        match self.get(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(invalid("parameter_invalid_boolean", key, &format!("Invalid boolean: {v}"))),
        }
    }
}

pub(super) fn json_response(status: u16, body: &Value, replayed: bool, key: Option<&str>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (code, [("content-type", "application/json")], body.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert("stripe-version", HeaderValue::from_static(API_VERSION));
    if let Some(k) = key.and_then(|k| HeaderValue::from_str(k).ok()) {
        headers.insert("idempotency-key", k);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

pub(super) async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let is_write = method == Method::POST || method == Method::DELETE;
    let raw =
        if is_write { String::from_utf8_lossy(&body).into_owned() } else { uri.query().unwrap_or_default().to_owned() };
    let form = parse_form(&raw);
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);

    let mut st = shared.lock();
    st.requests.push(RecordedRequest {
        method: method.as_str().to_owned(),
        path: path.clone(),
        idempotency_key: key.clone(),
        form: form.clone(),
    });

    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let secret = auth.strip_prefix("Bearer ").unwrap_or_default();
    if secret.strip_prefix("sk_test_").is_none_or(str::is_empty) {
        let msg = if auth.is_empty() {
            "You did not provide an API key.".to_owned()
        } else {
            "Invalid API Key provided.".to_owned()
        };
        return json_response(401, &error_body("invalid_request_error", None, None, &msg), false, None);
    }
    if is_write && !body.is_empty() {
        let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !ctype.starts_with("application/x-www-form-urlencoded") {
            let msg = format!("Invalid request: unsupported Content-Type {ctype}.");
            return json_response(400, &error_body("invalid_request_error", None, None, &msg), false, None);
        }
    }
    if is_write && let Some((n, status)) = st.fail_next {
        st.fail_next = (n > 1).then_some((n - 1, status));
        let body = match status {
            500.. => error_body("api_error", None, None, "Fake Stripe: injected failure."),
            429 => error_body("invalid_request_error", Some("rate_limit"), None, "Fake Stripe: too many requests."),
            _ => error_body("invalid_request_error", None, None, "Fake Stripe: injected failure."),
        };
        return json_response(status, &body, false, key.as_deref());
    }

    let mut params = form.clone();
    params.sort();
    if is_write
        && let Some(k) = &key
        && let Some(saved) = st.idempotency.get(k)
    {
        if saved.method == method.as_str() && saved.path == path && saved.params == params {
            return json_response(saved.status, &saved.body, true, Some(k));
        }
        let msg = format!(
            "Keys for idempotent requests can only be used with the same parameters they were first used with. \
             Try using a key other than '{k}' if you meant to execute a different request."
        );
        return json_response(400, &error_body("idempotency_error", None, None, &msg), false, Some(k));
    }

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let f = Form(&form);
    let outcome = match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "payment_intents"]) => create_intent(&mut st, &f),
        ("GET", ["v1", "payment_intents", id]) => match st.intents.get(*id) {
            Some(pi) => Outcome::ok(pi.clone()),
            None => no_such("payment_intent", id, None),
        },
        ("POST", ["v1", "payment_intents", id, "capture"]) => capture_intent(&mut st, id, &f),
        ("POST", ["v1", "payment_intents", id, "cancel"]) => cancel_intent(&mut st, id, &f),
        ("POST", ["v1", "refunds"]) => create_refund(&mut st, &f),
        ("POST", ["v1", "accounts"]) => create_account(&mut st, &f),
        ("GET", ["v1", "accounts", id]) => match st.accounts.get(*id) {
            Some(a) => Outcome::ok(a.clone()),
            None => no_such("account", id, None),
        },
        ("POST", ["v1", "account_links"]) => create_account_link(&mut st, &f),
        ("GET", ["v1", "disputes", id]) => match st.disputes.get(*id) {
            Some(d) => Outcome::ok(d.clone()),
            None => no_such("dispute", id, None),
        },
        ("POST", ["v1", "disputes", id]) => super::disputes::update_dispute(&mut st, id, &f),
        ("POST", ["v1", "transfers"]) => super::transfers::create_transfer(&mut st, &f),
        ("GET", ["v1", "transfers", id]) => super::transfers::retrieve_transfer(&st, id),
        ("POST", ["v1", "transfers", id, "reversals"]) => super::transfers::create_reversal(&mut st, id, &f),
        _ => refused(
            404,
            None,
            None,
            &format!("Unrecognized request URL ({} {path}). The fake Stripe does not implement it.", method.as_str()),
        ),
    };
    let Outcome { status, body, events, store } = outcome;
    if is_write
        && store
        && let Some(k) = &key
    {
        let saved = Saved { method: method.as_str().to_owned(), path, params, status, body: body.clone() };
        st.idempotency.insert(k.clone(), saved);
    }
    let events: Vec<Value> = events.into_iter().map(|(kind, obj)| st.event(kind, obj, key.as_deref())).collect();
    drop(st);
    for ev in events {
        let _ = shared.hooks.send(Hook::Event(ev));
    }
    json_response(status, &body, false, key.as_deref())
}

pub(super) fn try_outcome(f: impl FnOnce() -> Result<Outcome, Outcome>) -> Outcome {
    f().unwrap_or_else(|e| e)
}
