//! Consultant profiles, the directory and promotions (issue 4), end to end
//! over HTTP on a real server with the sandbox provider and a manual clock.
//! Every scenario runs on SQLite and on PostgreSQL (the keyword search is
//! the one place where their SQL differs).

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{TestApp, spawn_app, spawn_app_on_postgres};
use parley_domain::protocol::Role;
use parley_domain::protocol::rest::{
    ConsultantProfile, DirectoryPage, MyPromotions, PromotionPackage, PromotionReceipt,
};
use parley_domain::{Clock, UserId};
use serde_json::{Value, json};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Runs each scenario on both backends.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::spawn_app().await).await })*
        }
        mod on_postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::spawn_app_on_postgres().await).await })*
        }
    };
}

on_both!(
    profiles_round_trip_with_facts_from_elsewhere,
    bad_profiles_get_stable_codes,
    prices_are_checked,
    relevance_ranks_headline_and_tags_above_a_bio_mention,
    each_filter_narrows_the_list,
    each_sort_orders_the_list,
    pages_cover_everything_once,
    bad_directory_parameters_get_stable_codes,
    a_promotion_puts_a_consultant_first_until_it_ends,
    promotions_stack_and_refusals_buy_nothing,
    a_purchase_retried_with_its_idempotency_key_is_charged_once,
);

struct Http<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

impl<'a> Http<'a> {
    fn new(app: &'a TestApp) -> Self {
        Http { app, client: reqwest::Client::new() }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.app.base)).bearer_auth(token)).await
    }

    async fn put(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.client.put(format!("{}{path}", self.app.base)).bearer_auth(token).json(body)).await
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.client.post(format!("{}{path}", self.app.base)).bearer_auth(token).json(body)).await
    }

    /// Writes `id`'s profile (consultant token); panics unless 200.
    async fn profile(&self, id: &str, body: Value) -> ConsultantProfile {
        let (status, v) = self.put(&self.app.token(id, Role::Consultant), "/v1/consultants/me/profile", &body).await;
        assert_eq!(status, 200, "{v}");
        serde_json::from_value(v).unwrap()
    }

    /// A plain profile for `id`.
    async fn simple(&self, id: &str, headline: &str, tags: &[&str]) {
        self.profile(
            id,
            json!({"display_name": id, "headline": headline, "tags": tags, "time_zone": "UTC",
            "session_minutes": [30]}),
        )
        .await;
    }

    async fn price(&self, id: &str, minor: i64, currency: &str) {
        let body = json!({"model": "fixed", "amount": {"amount_minor": minor, "currency": currency}});
        let (status, v) = self.put(&self.app.token(id, Role::Consultant), "/v1/consultants/me/price", &body).await;
        assert_eq!(status, 200, "{v}");
    }

    /// `GET /v1/directory?<query>` as a seeker; panics unless 200.
    async fn directory(&self, query: &str) -> DirectoryPage {
        let (status, v) = self.get(&self.app.token("sam", Role::Seeker), &format!("/v1/directory?{query}")).await;
        assert_eq!(status, 200, "{query}: {v}");
        serde_json::from_value(v).unwrap()
    }

    /// The ids of one page.
    async fn ids(&self, query: &str) -> Vec<String> {
        self.directory(query).await.items.into_iter().map(|i| i.id.to_string()).collect()
    }

    /// The error code of a 400 on `GET /v1/directory?<query>`.
    async fn directory_error(&self, query: &str) -> String {
        let (status, v) = self.get(&self.app.token("sam", Role::Seeker), &format!("/v1/directory?{query}")).await;
        assert_eq!(status, 400, "{query}: {v}");
        code(&v)
    }

    async fn buy(&self, id: &str, package: &str, pm: &str) -> (u16, Value) {
        let body = json!({"package_id": package, "payment_method": pm});
        self.post(&self.app.token(id, Role::Consultant), "/v1/consultants/me/promotions", &body).await
    }
}

fn code(v: &Value) -> String {
    v["code"].as_str().unwrap_or_default().to_owned()
}

/// `n` reviews of `stars` each for `consultant`, straight into the table
/// (reviews have their own API elsewhere).
async fn reviews(app: &TestApp, consultant: &str, stars: &[i64]) {
    let pool = app.store.pool();
    for s in stars {
        let id = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(
            "INSERT INTO reviews (id, session_id, seeker_id, consultant_id, stars, text, created_ms) \
             VALUES ($1, $2, 'sam', $3, $4, 'ok', 0)",
        )
        .bind(format!("rev_{id}"))
        .bind(format!("ses_{id}"))
        .bind(consultant)
        .bind(*s)
        .execute(&pool)
        .await
        .unwrap();
    }
}

async fn profiles_round_trip_with_facts_from_elsewhere(app: TestApp) {
    let http = Http::new(&app);
    let p = http
        .profile(
            "cora",
            json!({"display_name": "  Cora Tax  ", "headline": "Tax advice for freelancers", "bio": "Ten years.\nHappy to help.",
                "tags": ["Tax", "VAT ", "tax"], "languages": ["en", "pt-br", "DE"], "time_zone": "Europe/Berlin",
                "session_minutes": [60, 30, 60]}),
        )
        .await;
    assert_eq!(p.display_name, "Cora Tax");
    assert_eq!(p.tags, ["tax", "vat"], "lower-case, duplicates dropped");
    assert_eq!(p.languages, ["en", "pt-BR", "de"]);
    assert_eq!(p.session_minutes, [30, 60], "sorted, duplicates dropped");
    assert_eq!(p.time_zone, "Europe/Berlin");
    assert_eq!(p.price, None);
    assert!(!p.recording_allowed && !p.payout_ready);
    assert_eq!((p.rating.count, p.rating.mean, p.rating.score), (0, None, 3.5));
    assert_eq!(p.featured_until_ms, None);

    // Facts kept elsewhere show up: price, recording consent, reviews, presence.
    http.price("cora", 3000, "EUR").await;
    let cora = app.token("cora", Role::Consultant);
    let (status, _) = http.put(&cora, "/v1/consultants/me/recording", &json!({"allowed": true})).await;
    assert_eq!(status, 200);
    reviews(&app, "cora", &[5, 4]).await;
    let _online = app.available_consultant("cora").await;
    let (status, v) = http.get(&app.token("sam", Role::Seeker), "/v1/consultants/cora/profile").await;
    assert_eq!(status, 200, "{v}");
    let seen: ConsultantProfile = serde_json::from_value(v).unwrap();
    assert_eq!(seen.price.map(|p| p.amount.amount_minor), Some(3000));
    assert!(seen.recording_allowed);
    assert_eq!((seen.rating.count, seen.rating.mean), (2, Some(4.5)));
    assert!((seen.rating.score - parley_domain::reputation::bayesian_average(2, 9)).abs() < 1e-12);
    assert_eq!(seen.presence, parley_domain::protocol::PresenceStatus::Available);
    let (status, mine) = http.get(&cora, "/v1/consultants/me/profile").await;
    assert_eq!((status, mine["display_name"].as_str()), (200, Some("Cora Tax")));

    // A second write replaces the first; scheduling reads the facts.
    http.profile("cora", json!({"display_name": "Cora", "time_zone": "America/Sao_Paulo", "session_minutes": [45]}))
        .await;
    let facts = parley_server::profiles::scheduling_facts(&app.store.pool(), &UserId::parse("cora").unwrap())
        .await
        .unwrap()
        .expect("cora has a profile");
    assert_eq!((facts.time_zone.as_str(), facts.session_minutes.as_slice()), ("America/Sao_Paulo", &[45][..]));
    assert!(facts.tz().is_some());
    let nobody = UserId::parse("nobody").unwrap();
    assert_eq!(parley_server::profiles::scheduling_facts(&app.store.pool(), &nobody).await.unwrap(), None);
    assert!(http.ids("q=tax").await.is_empty(), "the old headline and tags left the search index");
    assert_eq!(http.ids("q=cora").await, ["cora"]);
}

async fn bad_profiles_get_stable_codes(app: TestApp) {
    let http = Http::new(&app);
    let cora = app.token("cora", Role::Consultant);
    let good = json!({"display_name": "Cora", "time_zone": "UTC", "session_minutes": [30]});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("display_name", json!("   ")), "invalid_field", "display_name"),
        (with("display_name", json!("x".repeat(101))), "invalid_field", "display_name"),
        (with("display_name", json!("Cora\nEvil")), "invalid_field", "display_name"),
        (with("headline", json!("x".repeat(161))), "invalid_field", "headline"),
        (with("bio", json!("x".repeat(5001))), "invalid_field", "bio"),
        (with("tags", json!(vec!["t"; 21])), "invalid_field", "tags"),
        (with("tags", json!([" "])), "invalid_field", "tags"),
        (with("tags", json!(["x".repeat(41)])), "invalid_field", "tags"),
        (with("languages", json!(["english"])), "invalid_field", "languages"),
        (with("languages", json!(["en_US"])), "invalid_field", "languages"),
        (with("time_zone", json!("Mars/Olympus")), "unknown_time_zone", "time_zone"),
        (with("time_zone", json!("")), "unknown_time_zone", "time_zone"),
        (with("session_minutes", json!([])), "invalid_field", "session_minutes"),
        (with("session_minutes", json!([10])), "invalid_field", "session_minutes"),
        (with("session_minutes", json!([241])), "invalid_field", "session_minutes"),
        (with("session_minutes", json!([15, 20, 30, 45, 60, 90, 120])), "invalid_field", "session_minutes"),
        (with("session_minutes", json!([-30])), "invalid_field", ""),
        (json!({"display_name": "Cora"}), "invalid_field", "time_zone"),
    ];
    for (body, want, field) in cases {
        let (status, v) = http.put(&cora, "/v1/consultants/me/profile", &body).await;
        assert_eq!((status, code(&v).as_str()), (400, want), "{body}: {v}");
        assert!(v["message"].as_str().unwrap_or_default().contains(field), "{v} names {field}");
    }
    let (status, v) = http.get(&cora, "/v1/consultants/cora/profile").await;
    assert_eq!((status, code(&v).as_str()), (404, "unknown_consultant"), "nothing was stored");
    let (status, v) = http.put(&app.token("sam", Role::Seeker), "/v1/consultants/me/profile", &good).await;
    assert_eq!((status, code(&v).as_str()), (403, "wrong_role"));
    let (status, v) = http.get(&app.token("sam", Role::Seeker), "/v1/consultants/bad%20id/profile").await;
    assert_eq!((status, code(&v).as_str()), (400, "invalid_field"));
    let (status, _) = http
        .client
        .get(format!("{}/v1/consultants/cora/profile", app.base))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 401);
}

async fn prices_are_checked(app: TestApp) {
    let http = Http::new(&app);
    let cora = app.token("cora", Role::Consultant);
    let price = |minor: Value, currency: &str| json!({"model": "fixed", "amount": {"amount_minor": minor, "currency": currency}});
    for (body, want) in [
        (price(json!(0), "EUR"), "invalid_price"),
        (price(json!(-100), "EUR"), "invalid_price"),
        (price(json!(1_000_001), "EUR"), "invalid_price"),
        (price(json!(500), "JPY"), "unsupported_currency"),
        (price(json!(500), "eur"), "unsupported_currency"),
        (price(json!("five"), "EUR"), "invalid_field"),
        (json!({"model": "hourly", "amount": {"amount_minor": 5, "currency": "EUR"}}), "invalid_field"),
    ] {
        let (status, v) = http.put(&cora, "/v1/consultants/me/price", &body).await;
        assert_eq!((status, code(&v).as_str()), (400, want), "{body}: {v}");
    }
    let (status, v) = http.get(&cora, "/v1/consultants/me/price").await;
    assert_eq!((status, v), (200, Value::Null), "nothing was stored");
    http.price("cora", 1_000_000, "USD").await;
    http.price("cora", 1, "GBP").await;
}

async fn relevance_ranks_headline_and_tags_above_a_bio_mention(app: TestApp) {
    let http = Http::new(&app);
    http.profile(
        "bea",
        json!({"display_name": "Bea", "headline": "Career coaching", "time_zone": "UTC", "session_minutes": [30],
            "bio": "I coach people through career changes, interviews and negotiation. Before that I spent a few \
                    years in an accounting firm, where tax season taught me patience. Today I help engineers, \
                    designers and managers find work they like."}),
    )
    .await;
    http.profile(
        "cora",
        json!({"display_name": "Cora", "headline": "Tax advice for freelancers", "tags": ["tax", "vat"],
            "bio": "Bookkeeping, invoices and deadlines.", "time_zone": "UTC", "session_minutes": [30]}),
    )
    .await;
    http.simple("dan", "Gardening", &["plants"]).await;
    // More reviews would put bea first by rating: relevance wins with q.
    reviews(&app, "bea", &[5, 5, 5]).await;
    assert_eq!(http.ids("q=tax").await, ["cora", "bea"], "dan does not match");
    assert_eq!(http.ids("q=TAX&sort=relevance").await, ["cora", "bea"]);
    assert_eq!(http.ids("q=taxes").await, ["cora", "bea"], "stemmed");
    assert_eq!(http.ids("q=tax%20freelancers").await, ["cora"], "every word must match");
    assert_eq!(http.ids("q=tax&sort=rating").await, ["bea", "cora"]);
    assert!(http.ids("q=astronomy").await.is_empty());
    // FTS syntax in the query is taken literally, never an error.
    assert_eq!(http.ids("q=%22tax*%20(").await, ["cora", "bea"]);
    assert!(http.ids("q=tax%20NEAR").await.is_empty(), "NEAR is a word here");
}

async fn each_filter_narrows_the_list(app: TestApp) {
    let http = Http::new(&app);
    let profile = |name: &str, tags: Value, langs: Value| json!({"display_name": name, "tags": tags, "languages": langs, "time_zone": "UTC", "session_minutes": [30]});
    http.profile("ana", profile("Ana", json!(["tax"]), json!(["pt-BR", "en"]))).await;
    http.profile("ben", profile("Ben", json!(["law"]), json!(["en"]))).await;
    http.profile("cy", profile("Cy", json!(["tax", "law"]), json!(["fr"]))).await;
    http.profile("di", profile("Di", json!([]), json!(["pt"]))).await;
    http.price("ana", 2000, "EUR").await;
    http.price("ben", 5000, "EUR").await;
    http.price("cy", 3000, "USD").await;
    // di is free.
    reviews(&app, "ben", &[5, 5, 5, 5, 5]).await; // (17.5 + 25) / 10 = 4.25
    reviews(&app, "cy", &[1, 1]).await; // (17.5 + 2) / 7 ≈ 2.79

    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(http.ids("tag=tax").await), ["ana", "cy"]);
    assert_eq!(sorted(http.ids("tag=LAW").await), ["ben", "cy"]);
    assert_eq!(sorted(http.ids("language=en").await), ["ana", "ben"]);
    assert_eq!(sorted(http.ids("language=pt").await), ["ana", "di"], "pt matches pt-BR");
    assert_eq!(sorted(http.ids("language=pt-br").await), ["ana"]);
    assert_eq!(sorted(http.ids("currency=EUR").await), ["ana", "ben", "di"], "free counts in any currency");
    assert_eq!(sorted(http.ids("currency=EUR&min_price=1000&max_price=3000").await), ["ana"]);
    assert_eq!(sorted(http.ids("currency=EUR&max_price=2000").await), ["ana", "di"]);
    assert_eq!(sorted(http.ids("currency=USD&min_price=3000").await), ["cy"]);
    assert_eq!(sorted(http.ids("min_rating=4").await), ["ben"]);
    assert_eq!(sorted(http.ids("min_rating=3.5").await), ["ana", "ben", "di"], "no reviews: the prior 3.5");
    assert_eq!(sorted(http.ids("tag=tax&language=en&currency=EUR").await), ["ana"]);

    assert!(http.ids("available_now=true").await.is_empty(), "nobody is online");
    let _cy = app.available_consultant("cy").await;
    let (_ben, _) = app.client("ben", Role::Consultant).await; // online, not available
    let page = http.directory("available_now=true").await;
    assert_eq!(page.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["cy"]);
    assert_eq!(page.items[0].presence, parley_domain::protocol::PresenceStatus::Available);
    assert_eq!(sorted(http.ids("available_now=false").await).len(), 4);
}

async fn each_sort_orders_the_list(app: TestApp) {
    let http = Http::new(&app);
    for id in ["ann", "bob", "cat", "dee"] {
        http.simple(id, "Advice", &[]).await;
    }
    http.price("ann", 4000, "EUR").await;
    http.price("bob", 1000, "EUR").await;
    http.price("cat", 2500, "EUR").await;
    // dee is free.
    reviews(&app, "cat", &[5, 5, 5, 5]).await;
    reviews(&app, "ann", &[4, 4]).await;
    reviews(&app, "bob", &[2]).await;
    assert_eq!(http.ids("").await, ["cat", "ann", "dee", "bob"], "rating is the default without q");
    assert_eq!(http.ids("sort=rating").await, ["cat", "ann", "dee", "bob"]);
    assert_eq!(http.ids("sort=price").await, ["dee", "bob", "cat", "ann"]);
    let page = http.directory("sort=rating&limit=1").await;
    let cat = &page.items[0];
    assert_eq!((cat.rating.count, cat.rating.mean), (4, Some(5.0)));
    assert!((cat.rating.score - (17.5 + 20.0) / 9.0).abs() < 1e-12);
    assert_eq!(cat.price.map(|p| p.amount.amount_minor), Some(2500));
    assert_eq!((cat.display_name.as_str(), cat.headline.as_str(), cat.featured), ("cat", "Advice", false));
}

async fn pages_cover_everything_once(app: TestApp) {
    let http = Http::new(&app);
    let ids: Vec<String> = (0..7).map(|i| format!("c{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        http.simple(id, "Tax help", &["tax"]).await;
        // Ties on purpose: prices 1000, 1000, 2000, 2000, …
        http.price(id, 1000 * (1 + i as i64 / 2), "EUR").await;
    }
    reviews(&app, "c3", &[5]).await;
    reviews(&app, "c5", &[5]).await;
    for sort in ["rating", "price", "relevance"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut query = format!("q=tax&sort={sort}&limit=3");
            if let Some(c) = &cursor {
                query.push_str(&format!("&cursor={c}"));
            }
            let page = http.directory(&query).await;
            pages += 1;
            seen.extend(page.items.iter().map(|i| i.id.to_string()));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
            assert!(pages < 10, "pagination ends");
        }
        assert_eq!(pages, 3, "{sort}: 3 + 3 + 1");
        let all = http.ids(&format!("q=tax&sort={sort}&limit=50")).await;
        assert_eq!(seen, all, "{sort}: the pages are the one list, in order, no duplicates or gaps");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);
    }
    let set = |v: &[String]| v.iter().cloned().collect::<HashSet<String>>();
    let by_price = http.ids("sort=price&limit=50").await;
    assert_eq!(set(&by_price[..2]), set(&["c0".into(), "c1".into()]), "the cheapest two");
    let by_rating = http.ids("sort=rating&limit=2").await;
    assert_eq!(set(&by_rating), set(&["c3".into(), "c5".into()]), "the reviewed two");
}

async fn bad_directory_parameters_get_stable_codes(app: TestApp) {
    let http = Http::new(&app);
    http.simple("cora", "Tax", &["tax"]).await;
    let rating_cursor = http.directory("limit=1").await.next_cursor;
    assert_eq!(rating_cursor, None, "one consultant: one page");
    http.simple("dan", "Tax", &["tax"]).await;
    let cursor = http.directory("limit=1").await.next_cursor.expect("two consultants: two pages");
    for (query, want) in [
        ("limit=0", "invalid_field"),
        ("limit=51", "invalid_field"),
        ("limit=ten", "invalid_field"),
        ("sort=cheapest", "invalid_field"),
        ("sort=relevance", "invalid_field"),
        ("cursor=garbage", "invalid_field"),
        ("cursor=eyJzIjoicmF0aW5nIn0", "invalid_field"),
        (&format!("sort=price&cursor={cursor}"), "invalid_field"),
        ("currency=EUR&min_price=500&max_price=100", "invalid_field"),
        ("currency=EUR&min_price=-1", "invalid_field"),
        ("min_price=100", "missing_field"),
        ("currency=JPY", "unsupported_currency"),
        ("available_now=maybe", "invalid_field"),
        ("min_rating=6", "invalid_field"),
        ("min_rating=good", "invalid_field"),
        ("language=english", "invalid_field"),
        ("q=%21%21%21", "invalid_field"),
        (&format!("q={}", "a".repeat(201)), "invalid_field"),
    ] {
        assert_eq!(http.directory_error(query).await, want, "{query}");
    }
    let mut tampered = cursor.clone();
    tampered.replace_range(2..4, "zz");
    assert_eq!(http.directory_error(&format!("cursor={tampered}")).await, "invalid_field");
    assert_eq!(http.directory(&format!("cursor={cursor}&limit=1")).await.items.len(), 1);
    let (status, _) = http.get("not-a-token", "/v1/directory").await;
    assert_eq!(status, 401);
}

async fn a_promotion_puts_a_consultant_first_until_it_ends(app: TestApp) {
    let http = Http::new(&app);
    for id in ["ann", "bob", "zed"] {
        http.simple(id, "Tax help", &["tax"]).await;
    }
    http.price("ann", 1000, "EUR").await;
    http.price("bob", 2000, "EUR").await;
    http.price("zed", 9000, "EUR").await;
    reviews(&app, "ann", &[5, 5]).await;
    http.profile(
        "bob",
        json!({"display_name": "bob", "headline": "Tax, tax and tax", "tags": ["tax"], "time_zone": "UTC",
            "session_minutes": [30]}),
    )
    .await;

    let (status, v) = http.get(&app.token("sam", Role::Seeker), "/v1/promotions/packages").await;
    assert_eq!(status, 200);
    let packages: Vec<PromotionPackage> = serde_json::from_value(v).unwrap();
    let week = packages.iter().find(|p| p.id == "featured_7d").expect("featured_7d on sale");
    assert_eq!((week.duration_secs, week.price.amount_minor, week.price.currency.as_str()), (7 * 86_400, 1900, "EUR"));

    let (status, v) = http.buy("zed", "featured_7d", "pm_card_visa").await;
    assert_eq!(status, 200, "{v}");
    let receipt: PromotionReceipt = serde_json::from_value(v).unwrap();
    let now = app.clock.now().unix_millis();
    assert_eq!((receipt.starts_at_ms, receipt.ends_at_ms), (now, now + 7 * 86_400_000));
    assert!(receipt.provider_ref.starts_with("pi_") && receipt.purchase_id.starts_with("promo_"), "{receipt:?}");

    for query in ["sort=rating", "sort=price", "q=tax", "q=tax&sort=price", "tag=tax"] {
        let page = http.directory(query).await;
        assert_eq!(page.items[0].id.as_str(), "zed", "{query}: featured first");
        assert!(page.items[0].featured);
        assert!(page.items[1..].iter().all(|i| !i.featured), "{query}");
    }
    assert_eq!(http.ids("sort=price").await, ["zed", "ann", "bob"]);
    let (_, v) = http.get(&app.token("sam", Role::Seeker), "/v1/consultants/zed/profile").await;
    assert_eq!(v["featured_until_ms"].as_i64(), Some(receipt.ends_at_ms));
    // The charge is in the ledger, keyed by the purchase.
    let pool = app.store.pool();
    let row = sqlx::query("SELECT kind, amount_minor, provider_ref FROM ledger WHERE session_id = $1")
        .bind(&receipt.purchase_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    use sqlx::Row;
    assert_eq!(row.get::<String, _>("kind"), "promotion");
    assert_eq!(row.get::<i64, _>("amount_minor"), 1900);

    app.advance(7 * DAY - Duration::from_secs(1)).await;
    assert_eq!(http.ids("sort=price").await, ["zed", "ann", "bob"], "still featured a second before the end");
    app.advance(Duration::from_secs(1)).await;
    let page = http.directory("sort=price").await;
    assert_eq!(page.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["ann", "bob", "zed"], "the window ended");
    assert!(page.items.iter().all(|i| !i.featured));
    let (_, v) = http.get(&app.token("zed", Role::Consultant), "/v1/consultants/me/promotions").await;
    let mine: MyPromotions = serde_json::from_value(v).unwrap();
    assert_eq!((mine.purchases.len(), mine.current), (1, None), "the receipt stays");
}

/// A purchase retried with its Idempotency-Key (five at once, then once
/// more) is one purchase, charged once.
async fn a_purchase_retried_with_its_idempotency_key_is_charged_once(app: TestApp) {
    let app = &app;
    let http = Http::new(app);
    http.simple("amy", "Tax help", &["tax"]).await;
    let token = app.token("amy", Role::Consultant);
    let body = json!({"package_id": "featured_7d", "payment_method": "pm_card_visa"});
    let path = "/v1/consultants/me/promotions";
    let tries = futures_util::future::join_all((0..5).map(|_| app.post_keyed(&token, path, "promo-1", &body))).await;
    let later = app.post_keyed(&token, path, "promo-1", &body).await;
    assert_eq!((later.0 / 100, later.2), (2, true), "{later:?}");
    for (status, v, _) in &tries {
        match status {
            200 | 201 => assert_eq!(v, &later.1, "every success is the one purchase"),
            409 => assert_eq!(v["code"], "idempotency_key_in_use"),
            other => panic!("{other}: {v}"),
        }
    }
    let (_, v) = http.get(&token, path).await;
    let mine: MyPromotions = serde_json::from_value(v).unwrap();
    assert_eq!(mine.purchases.len(), 1, "one purchase: {mine:?}");
    let charged: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'promotion' AND consultant_id = 'amy'")
            .fetch_one(&app.store.pool())
            .await
            .unwrap();
    assert_eq!(charged, 1, "charged once");
}

async fn promotions_stack_and_refusals_buy_nothing(app: TestApp) {
    let http = Http::new(&app);
    http.simple("zed", "Tax help", &["tax"]).await;
    http.simple("amy", "Tax help", &["tax"]).await;
    let start = app.clock.now().unix_millis();

    for (pm, want) in [
        ("pm_card_chargeDeclined", "payment_declined"),
        ("pm_card_nonsense", "payment_declined"),
        ("pm_card_authenticationRequired", "payment_action_required"),
    ] {
        let (status, v) = http.buy("zed", "featured_7d", pm).await;
        assert_eq!((status, code(&v).as_str()), (400, want), "{pm}: {v}");
    }
    let (status, v) = http.buy("zed", "featured_forever", "pm_card_visa").await;
    assert_eq!((status, code(&v).as_str()), (400, "unknown_package"), "{v}");
    let (status, v) = http.buy("zed", "featured_7d", " ").await;
    assert_eq!((status, code(&v).as_str()), (400, "missing_field"), "{v}");
    let (status, v) = http.buy("newbie", "featured_7d", "pm_card_visa").await;
    assert_eq!((status, code(&v).as_str()), (400, "missing_field"), "no profile yet: {v}");
    let body = json!({"package_id": "featured_7d", "payment_method": "pm_card_visa"});
    let (status, v) = http.post(&app.token("sam", Role::Seeker), "/v1/consultants/me/promotions", &body).await;
    assert_eq!((status, code(&v).as_str()), (403, "wrong_role"));
    let zed = app.token("zed", Role::Consultant);
    let (_, v) = http.get(&zed, "/v1/consultants/me/promotions").await;
    let mine: MyPromotions = serde_json::from_value(v).unwrap();
    assert_eq!(mine, MyPromotions { purchases: vec![], current: None }, "no receipt for a refused card");
    assert!(http.directory("").await.items.iter().all(|i| !i.featured), "nobody featured");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'promotion'")
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing charged");

    // Two purchases stack: the second starts where the first ends.
    let (_, v) = http.buy("zed", "featured_7d", "pm_card_visa").await;
    let first: PromotionReceipt = serde_json::from_value(v).unwrap();
    app.advance(DAY).await;
    let (_, v) = http.buy("zed", "featured_30d", "pm_card_mastercard").await;
    let second: PromotionReceipt = serde_json::from_value(v).unwrap();
    assert_eq!(first.starts_at_ms, start);
    assert_eq!(second.starts_at_ms, first.ends_at_ms, "stacked");
    assert_eq!(second.ends_at_ms, start + 37 * 86_400_000);
    assert_eq!(second.amount.amount_minor, 5900);
    let (_, v) = http.get(&zed, "/v1/consultants/me/promotions").await;
    let mine: MyPromotions = serde_json::from_value(v).unwrap();
    assert_eq!(mine.purchases, [second.clone(), first.clone()], "newest first");
    let current = mine.current.expect("featured now");
    assert_eq!((current.since_ms, current.until_ms), (start, second.ends_at_ms));

    app.advance(20 * DAY).await; // inside the second window
    assert_eq!(http.ids("").await[0], "zed");
    app.advance(16 * DAY).await; // past both
    assert!(http.directory("").await.items.iter().all(|i| !i.featured));
    // After a gap, a new window starts now.
    let now = app.clock.now().unix_millis();
    let (_, v) = http.buy("zed", "featured_7d", "pm_card_visa").await;
    let third: PromotionReceipt = serde_json::from_value(v).unwrap();
    assert_eq!(third.starts_at_ms, now);
}

#[tokio::test]
async fn the_openapi_document_describes_profiles_the_directory_and_promotions() {
    let app = spawn_app().await;
    let doc: Value = reqwest::get(format!("{}/openapi.json", app.base)).await.unwrap().json().await.unwrap();
    for (method, path) in [
        ("get", "/v1/consultants/me/profile"),
        ("put", "/v1/consultants/me/profile"),
        ("get", "/v1/consultants/{id}/profile"),
        ("get", "/v1/directory"),
        ("get", "/v1/promotions/packages"),
        ("get", "/v1/consultants/me/promotions"),
        ("post", "/v1/consultants/me/promotions"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from /openapi.json");
    }
    let schemas = &doc["components"]["schemas"];
    for name in ["ProfileUpdate", "ConsultantProfile", "DirectoryPage", "PromotionReceipt", "MyPromotions"] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
}
