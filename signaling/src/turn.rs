//! ICE servers handed out in `room.join`, with time-limited TURN credentials
//! per the TURN REST API (draft-uberti-behave-turn-rest-00, as implemented by
//! coturn's `use-auth-secret`): username `<expiry unix secs>:<user id>`,
//! password `base64(HMAC-SHA1(secret, username))`.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use parley_domain::protocol::IceServer;
use parley_domain::{Timestamp, UserId};
use sha1::Sha1;

/// STUN/TURN configuration. Empty lists (the default) mean host candidates
/// only, which is enough on one machine or LAN.
#[derive(Debug, Clone, Default)]
pub struct IceConfig {
    /// `stun:` URLs, handed out as they are.
    pub stun_urls: Vec<String>,
    /// `turn:` / `turns:` URLs; handed out only when `turn_secret` is set.
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn `static-auth-secret`).
    pub turn_secret: Option<String>,
    /// How long TURN credentials stay valid.
    pub turn_ttl: Duration,
}

impl IceConfig {
    /// The ICE servers for `user` at `now`.
    pub fn ice_servers(&self, user: &UserId, now: Timestamp) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun_urls.is_empty() {
            servers.push(IceServer { urls: self.stun_urls.clone(), username: None, credential: None });
        }
        if let (false, Some(secret)) = (self.turn_urls.is_empty(), &self.turn_secret) {
            let expiry = now.plus(self.turn_ttl).unix_secs();
            let username = format!("{expiry}:{user}");
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                credential: Some(turn_password(secret, &username)),
                username: Some(username),
            });
        }
        servers
    }
}

/// The TURN REST API password for `username`: base64 of HMAC-SHA1.
pub fn turn_password(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_follow_the_rest_api() {
        let cfg = IceConfig {
            stun_urls: vec!["stun:stun.example.org:3478".into()],
            turn_urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
            turn_secret: Some("north".into()),
            turn_ttl: Duration::from_secs(3600),
        };
        let user = UserId::parse("u1").unwrap();
        let servers = cfg.ice_servers(&user, Timestamp::from_unix_millis(1_700_000_000_500));
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].username, None);
        let turn = &servers[1];
        assert_eq!(turn.username.as_deref(), Some("1700003600:u1"));
        // Computed independently: printf '1700003600:u1' | openssl sha1 -hmac north -binary | base64
        assert_eq!(turn.credential.as_deref(), Some("v/htRUiFiOnpNCbrnctUyh6uZAg="));
        assert_ne!(turn_password("north", "1700003600:u1"), turn_password("south", "1700003600:u1"));
    }

    #[test]
    fn no_turn_without_a_secret() {
        let cfg = IceConfig { turn_urls: vec!["turn:x".into()], ..Default::default() };
        assert!(cfg.ice_servers(&UserId::parse("u").unwrap(), Timestamp::from_unix_millis(0)).is_empty());
    }
}
