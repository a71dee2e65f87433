//! The fake's webhook delivery: signed events POSTed in order by one task.

use super::*;

pub(super) async fn deliver_webhooks(inner: Arc<Mutex<Inner>>, mut rx: mpsc::UnboundedReceiver<Hook>) {
    while let Some(msg) = rx.recv().await {
        let event = match msg {
            Hook::Event(e) => e,
            Hook::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let (target, now) = {
            let st = inner.lock().unwrap_or_else(|p| p.into_inner());
            (st.webhook.clone(), st.now())
        };
        let Some((url, secret)) = target else { continue };
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let signature = parley_billing::webhook::sign(&body, &secret, now);
        let status = tokio::time::timeout(Duration::from_secs(10), post(&url, &body, &signature)).await.ok().flatten();
        let delivery = Delivery {
            event_id: event["id"].as_str().unwrap_or_default().to_owned(),
            event_type: event["type"].as_str().unwrap_or_default().to_owned(),
            status,
        };
        inner.lock().unwrap_or_else(|p| p.into_inner()).deliveries.push(delivery);
    }
}

/// POSTs `body` as JSON to an `http://host:port/path` URL over HTTP/1.1;
/// returns the response status.
pub(super) async fn post(url: &str, body: &[u8], signature: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n\
         Content-Type: application/json; charset=utf-8\r\nStripe-Signature: {signature}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1)?.parse().ok()
}
