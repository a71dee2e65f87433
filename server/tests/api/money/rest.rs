//! The REST surface of money: bad prices and wrong roles refused, the
//! OpenAPI document complete, problems and token checks on every route.

use super::*;

#[tokio::test]
async fn the_rest_api_refuses_bad_prices_and_wrong_roles() {
    let app = spawn_app().await;
    let api = ApiClient::new(&app.base).unwrap();
    let seeker = app.token("sam", Role::Seeker);
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) };
    assert_eq!(api.set_price(&seeker, &price).await.unwrap_err().code(), Some(ErrorCode::WrongRole));
    let cora = app.token("cora", Role::Consultant);
    let zero = ConsultantPrice { model: PriceModel::Fixed, amount: eur(0) };
    assert_eq!(api.set_price(&cora, &zero).await.unwrap_err().code(), Some(ErrorCode::InvalidPrice));
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/consultants/me/price", app.base))
        .bearer_auth(&cora)
        .header("content-type", "application/json")
        .body(r#"{"model":"hourly","amount":{"amount_minor":5,"currency":"EUR"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let unknown = SessionId::parse("ses_nope").unwrap();
    assert_eq!(api.session(&seeker, &unknown).await.unwrap_err().code(), Some(ErrorCode::UnknownSession));
    // Payout onboarding on the sandbox: an account and a link back.
    let link = api.payout_link(&cora).await.unwrap();
    assert!(link.account_id.starts_with("acct_") && link.url.contains(&link.account_id), "{link:?}");
    assert_eq!(api.payout_link(&cora).await.unwrap().account_id, link.account_id, "one account per consultant");
    // Retried with an Idempotency-Key: the same answer, replayed.
    let body = serde_json::json!({"return_url": "https://example.com/back"});
    let first = app.post_keyed(&cora, "/v1/consultants/me/payout-account", "acct-1", &body).await;
    let again = app.post_keyed(&cora, "/v1/consultants/me/payout-account", "acct-1", &body).await;
    assert_eq!((first.0, first.2, again.0, again.2), (200, false, 200, true), "{first:?} {again:?}");
    assert_eq!(first.1, again.1);
    // The price shows in the directory.
    api.set_price(&cora, &price).await.unwrap();
    let _online = app.available_consultant("cora").await;
    let list = api.consultants(&seeker).await.unwrap();
    assert_eq!(list.iter().find(|c| c.id.as_str() == "cora").and_then(|c| c.price), Some(price));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_rest_route() {
    let app = spawn_app().await;
    let doc: serde_json::Value =
        reqwest::get(format!("{}/openapi.json", app.base)).await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap_or_default().starts_with("3."), "{doc}");
    let routes = [
        ("get", "/v1/consultants"),
        ("post", "/v1/dev/login"),
        ("get", "/v1/sessions/{id}"),
        ("post", "/v1/sessions/{id}/refund"),
        ("post", "/v1/sessions/{id}/end"),
        ("get", "/v1/consultants/me/price"),
        ("put", "/v1/consultants/me/price"),
        ("delete", "/v1/consultants/me/price"),
        ("post", "/v1/consultants/me/payout-account"),
        ("get", "/v1/consultants/{id}/earnings"),
        ("get", "/v1/seekers/me/receipts"),
        ("post", "/v1/webhooks/stripe"),
        ("put", "/v1/consultants/me/availability"),
        ("get", "/v1/consultants/{id}/slots"),
        ("post", "/v1/bookings"),
        ("post", "/v1/bookings/{id}/accept"),
    ];
    for (method, path) in routes {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from /openapi.json");
    }
    let schemas = &doc["components"]["schemas"];
    for name in
        ["SessionDetails", "Money", "Problem", "ConsultantPrice", "Receipt", "Earnings", "Booking", "Availability"]
    {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    assert_eq!(schemas["Currency"]["type"], "string", "currencies are ISO 4217 strings: {}", schemas["Money"]);
}

/// Issue 13 §8: every route of /openapi.json, called without a token and
/// with a malformed body, answers an RFC 9457 problem: 401 for every route
/// behind a bearer token (the token is checked before the body is read),
/// a coded 4xx for the three that are not (dev login, the Stripe webhook,
/// signed download links). Bodies over 1 MiB get 413, unknown routes 404,
/// wrong methods 405 and a body that is not JSON 415: problems all.
#[tokio::test]
async fn every_route_answers_problems_and_checks_the_token_before_the_body() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let doc: serde_json::Value =
        http.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    let without_bearer = ["/v1/dev/login", "/v1/webhooks/stripe", "/v1/webhooks/livekit", "/v1/files/{recording_id}"];
    let problem_of = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let text = r.text().await.unwrap();
        assert_eq!(ct, "application/problem+json", "{status} {text}");
        let p: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(p["status"], status, "{p}");
        assert!(p["code"].is_string() && p["type"].is_string() && p["title"].is_string(), "{p}");
        (status, p["code"].as_str().unwrap().to_owned())
    };
    let mut walked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let url = format!("{}{}", app.base, path.replace(['{', '}'], ""));
        for (method, op) in ops.as_object().unwrap() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = http
                .request(method.clone(), &url)
                .header("content-type", "application/json")
                .body("{not json")
                .send()
                .await
                .unwrap();
            let (status, code) = problem_of(r).await;
            if without_bearer.contains(&path.as_str()) {
                assert!((400..500).contains(&status), "{method} {path}: {status} {code}");
            } else {
                assert_eq!((status, code.as_str()), (401, "missing_token"), "{method} {path}");
                assert!(op["security"].is_array(), "{method} {path} does not declare its bearer token");
            }
            walked += 1;
        }
    }
    assert!(walked >= 40, "walked only {walked} operations");

    // Past the token: a malformed, a non-JSON and an oversized body.
    let consultant = app.token("cora", Role::Consultant);
    let payout = format!("{}/v1/consultants/me/payout-account", app.base);
    let send = |url: &str, ct: &str, body: Vec<u8>, token: Option<&str>| {
        let mut req = http.post(url).header("content-type", ct).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let huge = vec![b' '; 2 * 1024 * 1024];
    type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, (u16, &'a str));
    let cases: [Case; 6] = [
        (&payout, "application/json", b"{not json".to_vec(), Some(&consultant), (400, "malformed_json")),
        (&payout, "application/json", br#"{"return_url": 5}"#.to_vec(), Some(&consultant), (400, "invalid_field")),
        (&payout, "text/plain", b"{}".to_vec(), Some(&consultant), (415, "unsupported_media_type")),
        (&payout, "application/json", huge.clone(), Some(&consultant), (413, "payload_too_large")),
        (&payout, "application/json", huge.clone(), None, (401, "missing_token")),
        (
            &format!("{}/v1/webhooks/stripe", app.base),
            "application/json",
            huge.clone(),
            None,
            (413, "payload_too_large"),
        ),
    ];
    for (url, ct, body, token, want) in cases {
        let got = problem_of(send(url, ct, body, token).await.unwrap()).await;
        assert_eq!((got.0, got.1.as_str()), want, "{url} {ct} token={}", token.is_some());
    }
    let r = http
        .put(format!("{}/v1/consultants/me/price", app.base))
        .bearer_auth(&consultant)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(problem_of(r).await, (413, "payload_too_large".to_owned()));

    // axum's own answers.
    let r = http.get(format!("{}/v1/nothing/here", app.base)).send().await.unwrap();
    assert_eq!(problem_of(r).await, (404, "unknown_route".to_owned()));
    let r = http.get(format!("{}/v1/sessions/ses_1/refund", app.base)).send().await.unwrap();
    assert!(r.headers().contains_key("allow"), "405 keeps Allow");
    assert_eq!(problem_of(r).await, (405, "method_not_allowed".to_owned()));
    let r = http.get(format!("{}/v1/signal", app.base)).send().await.unwrap();
    assert_eq!(problem_of(r).await, (401, "missing_token".to_owned()));
    let r = http.get(format!("{}/v1/signal", app.base)).bearer_auth(&consultant).send().await.unwrap();
    assert_eq!(problem_of(r).await.1, "invalid_field", "a plain GET is not an upgrade");
}
