//! The server under test, which must be on this machine: `--url` is
//! refused unless its host is a loopback address (`127.x.x.x`, `::1`) or
//! `localhost`, and `localhost` must resolve to loopback addresses only.
//! A target also names the signaling protocol the server speaks
//! ([`Protocol`]): Parley's unless `--protocol` says otherwise.

use std::net::IpAddr;

use anyhow::{Context, bail};
use url::{Host, Url};

/// A validated loopback server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://host:port`, for REST calls.
    pub base: String,
    /// `ws://host:port/v1/signal`, the signaling endpoint.
    pub ws_url: String,
    /// The host as written (`127.0.0.1`, `[::1]`, `localhost`).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The signaling protocol the server speaks ([`Protocol::Parley`] from
    /// [`parse`]; see [`Target::with_protocol`]).
    pub protocol: Protocol,
}

/// A signaling server's protocol, as `parley-load signal --protocol` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Parley's (`/v1/signal`, bearer token, JSON envelopes); the bare relay
    /// speaks it too.
    #[default]
    Parley,
    /// matchbox_server 0.15's: rooms by path (`/<room>?next=2`), server-assigned
    /// peer ids, `Signal { receiver, data }` requests.
    Matchbox,
    /// PeerJS server 1.0's: `/peerjs?key=…&id=…&token=…`, client-chosen ids,
    /// `{type, dst, payload}` messages forwarded with `src`.
    PeerJs,
}

impl Protocol {
    /// Every protocol, in `--protocol`'s order.
    pub const ALL: [Protocol; 3] = [Protocol::Parley, Protocol::Matchbox, Protocol::PeerJs];

    /// The name `--protocol` takes: `parley`, `matchbox` or `peerjs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Parley => "parley",
            Protocol::Matchbox => "matchbox",
            Protocol::PeerJs => "peerjs",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    /// Parses a name of [`Protocol::as_str`]; the error lists the valid ones.
    fn from_str(s: &str) -> Result<Protocol, String> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown protocol {s:?}: expected parley, matchbox or peerjs"))
    }
}

/// Whether `ip` is a loopback address (127.0.0.0/8, `::1`, or an
/// IPv4-mapped 127.x address).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Parses and checks `--url`: `http://` or `ws://` (no TLS), a loopback
/// host, no path beyond `/`. Errors name what is wrong.
pub fn parse(url: &str) -> anyhow::Result<Target> {
    let parsed =
        Url::parse(url).with_context(|| format!("--url {url:?} is not a URL (expected http://127.0.0.1:8080)"))?;
    match parsed.scheme() {
        "http" | "ws" => {}
        "https" | "wss" => {
            bail!("--url {url:?}: TLS is not supported; the server under test runs on loopback, use http://")
        }
        other => bail!("--url {url:?}: unsupported scheme {other:?}; use http://"),
    }
    let loopback = match parsed.host() {
        Some(Host::Ipv4(ip)) => is_loopback(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => is_loopback(IpAddr::V6(ip)),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => bail!("--url {url:?} has no host"),
    };
    let host = parsed.host_str().unwrap_or_default().to_owned();
    if !loopback {
        bail!(
            "--url {url:?}: refusing host {host:?}: parley-load only sends traffic to this machine \
             (127.x.x.x, ::1 or localhost)"
        );
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        bail!("--url {url:?}: credentials in the URL are not supported");
    }
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        bail!("--url {url:?}: give the server's base URL only (no path or query), e.g. http://127.0.0.1:8080");
    }
    let port = parsed.port_or_known_default().context("--url has no port")?;
    Ok(Target {
        base: format!("http://{host}:{port}"),
        ws_url: format!("ws://{host}:{port}/v1/signal"),
        host,
        port,
        protocol: Protocol::Parley,
    })
}

impl Target {
    /// The same server, speaking `protocol`.
    pub fn with_protocol(self, protocol: Protocol) -> Target {
        Target { protocol, ..self }
    }

    /// `ws://host:port`, the base of the peers' WebSocket URLs.
    pub fn ws_base(&self) -> String {
        format!("ws://{}:{}", self.host, self.port)
    }

    /// Resolves the host and checks that every address it resolves to is a
    /// loopback address (guards `localhost` mapped elsewhere in /etc/hosts).
    pub async fn check_resolution(&self) -> anyhow::Result<()> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<_> = tokio::net::lookup_host((host, self.port))
            .await
            .with_context(|| format!("cannot resolve {}", self.host))?
            .collect();
        if addrs.is_empty() {
            bail!("{} resolves to no address", self.host);
        }
        if let Some(bad) = addrs.iter().find(|a| !is_loopback(a.ip())) {
            bail!("{} resolves to {}, which is not a loopback address; refusing", self.host, bad.ip());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_accepted() {
        let t = parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(t.base, "http://127.0.0.1:8080");
        assert_eq!(t.ws_url, "ws://127.0.0.1:8080/v1/signal");
        assert_eq!(t.port, 8080);
        assert_eq!(parse("http://127.1.2.3:9/").unwrap().host, "127.1.2.3");
        assert_eq!(parse("ws://localhost:8080").unwrap().ws_url, "ws://localhost:8080/v1/signal");
        assert_eq!(parse("http://LOCALHOST:1").unwrap().port, 1);
        let v6 = parse("http://[::1]:8080").unwrap();
        assert_eq!(v6.ws_url, "ws://[::1]:8080/v1/signal");
        assert_eq!(parse("http://127.0.0.1").unwrap().port, 80);
        assert_eq!(t.protocol, Protocol::Parley);
        assert_eq!(t.ws_base(), "ws://127.0.0.1:8080");
        assert_eq!(v6.ws_base(), "ws://[::1]:8080");
        assert_eq!(parse("http://[::1]:1").unwrap().with_protocol(Protocol::PeerJs).protocol, Protocol::PeerJs);
    }

    #[test]
    fn protocols_parse_by_name() {
        for p in Protocol::ALL {
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(Protocol::default(), Protocol::Parley);
        let e = "PeerJS".parse::<Protocol>().unwrap_err();
        assert!(e.contains("expected parley, matchbox or peerjs"), "{e}");
    }

    #[test]
    fn other_hosts_are_refused_with_a_clear_error() {
        for url in [
            "http://10.0.0.1:8080",
            "http://192.168.1.10:8080",
            "http://0.0.0.0:8080",
            "http://example.com:8080",
            "http://localhost.example.com:8080",
            "http://128.0.0.1:8080",
            "http://[2001:db8::1]:8080",
            "http://[::]:8080",
        ] {
            let e = parse(url).unwrap_err().to_string();
            assert!(e.contains("refusing host") && e.contains("127.x.x.x, ::1 or localhost"), "{url}: {e}");
        }
    }

    #[test]
    fn malformed_or_unsupported_urls_are_refused() {
        assert!(parse("127.0.0.1:8080").is_err());
        assert!(parse("not a url").is_err());
        assert!(parse("https://127.0.0.1:8443").unwrap_err().to_string().contains("TLS"));
        assert!(parse("ftp://127.0.0.1").is_err());
        assert!(parse("http://127.0.0.1:8080/v1/signal").unwrap_err().to_string().contains("base URL"));
        assert!(parse("http://user:pw@127.0.0.1:8080").is_err());
    }

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("127.255.0.9".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn localhost_and_literals_resolve_to_loopback() {
        parse("http://127.0.0.1:8080").unwrap().check_resolution().await.unwrap();
        parse("http://[::1]:8080").unwrap().check_resolution().await.unwrap();
    }
}
