//! [`Proxy`]: a loopback TCP proxy whose connections a test can cut.

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::TestApp;

/// A loopback TCP proxy in front of the server whose connections a test can
/// cut, to drop a client's network without telling either side.
pub struct Proxy {
    /// The signaling URL through the proxy.
    pub ws_url: String,
    cut: tokio::sync::watch::Sender<u64>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    /// A proxy in front of `app`, listening on a loopback port.
    pub async fn start(app: &TestApp) -> Proxy {
        Proxy::balance(&[app]).await
    }

    /// A load balancer in front of `apps` (the nodes of a cluster): each
    /// new connection goes to the next node in turn that accepts it (a
    /// killed node is skipped), without stickiness.
    pub async fn balance(apps: &[&TestApp]) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstreams: Vec<String> = apps.iter().map(|a| a.base.trim_start_matches("http://").to_owned()).collect();
        let mut turn = 0usize;
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let cuts = cut.clone();
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refuse = refusing.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if refuse.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped at once: the network is down
                }
                let mut server = None;
                for _ in 0..upstreams.len() {
                    turn = (turn + 1) % upstreams.len();
                    if let Ok(s) = TcpStream::connect(&upstreams[turn]).await {
                        server = Some(s);
                        break;
                    }
                }
                let Some(mut server) = server else { continue };
                let mut cut_rx = cuts.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {} // both sockets dropped: the link is gone
                    }
                });
            }
        });
        Proxy { ws_url: format!("ws://{addr}/v1/signal"), cut, refusing }
    }

    /// While `true`, new connections through the proxy are dropped at once
    /// (the client's network is down, so it cannot reconnect yet).
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drops every connection currently through the proxy.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}
