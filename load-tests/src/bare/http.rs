//! The little HTTP the relay needs: a request head, the WebSocket upgrade,
//! and a few JSON answers (each on a connection of its own,
//! `Connection: close`).

use parley_domain::UserId;
use parley_domain::protocol::rest::{DevLoginRequest, DevLoginResponse};
use parley_domain::protocol::{ErrorBody, ErrorCode, Role, UserInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};

use super::auth::{Keys, Refusal, missing_token};
use crate::tokens::User;

/// The longest request head read.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The longest request body read (dev login).
const MAX_BODY_BYTES: usize = 16 * 1024;
/// The largest WebSocket message accepted (Parley's limit).
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Each connection's read buffer: a ~3.5 KB SDP fits in one read.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// A request line and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a request head (with or without the blank line that ends
    /// it) with `httparse`; `None` if it is not an HTTP/1.x request head.
    pub(super) fn parse(bytes: &[u8]) -> Option<Head> {
        let mut end = bytes.to_vec();
        if !end.ends_with(b"\r\n\r\n") {
            end.extend_from_slice(b"\r\n\r\n");
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&end) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return None,
        }
        let headers = request
            .headers
            .iter()
            .map(|h| Some((h.name.to_ascii_lowercase(), std::str::from_utf8(h.value).ok()?.trim().to_owned())))
            .collect::<Option<Vec<_>>>()?;
        Some(Head { method: request.method?.to_owned(), target: request.path?.to_owned(), headers })
    }

    /// The path, without the query.
    pub(super) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The first value of header `name` (lower case).
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether this is a version 13 WebSocket upgrade (`GET`, `Upgrade:
    /// websocket`, a key).
    pub(super) fn is_websocket_upgrade(&self) -> bool {
        self.method == "GET"
            && self.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
            && self.header("sec-websocket-key").is_some()
            && self.header("sec-websocket-version") == Some("13")
    }

    /// The bearer token of the `Authorization` header.
    pub(super) fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
    }
}

/// Reads a request head; returns it with the bytes read past it, or `None`
/// if the connection ended first or the head is malformed or too long.
pub(super) async fn read_head(tcp: &mut TcpStream) -> std::io::Result<Option<(Head, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(1024);
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf[end + 4..].to_vec();
            return Ok(Head::parse(&buf[..end]).map(|head| (head, rest)));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
    }
}

/// The WebSocket settings of every connection.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// Answers `101 Switching Protocols` to an upgrade `head` and returns the
/// WebSocket (`rest`: bytes the client sent after the head).
pub(super) async fn upgrade(mut tcp: TcpStream, head: &Head, rest: Vec<u8>) -> Option<WebSocketStream<TcpStream>> {
    let accept = derive_accept_key(head.header("sec-websocket-key")?.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(response.as_bytes()).await.ok()?;
    Some(WebSocketStream::from_partially_read(tcp, rest, WsRole::Server, Some(config())).await)
}

/// Answers a plain HTTP request: health, the consultants list (the
/// generator's token check), dev login; anything else is `404`.
pub(super) async fn answer(tcp: &mut TcpStream, head: &Head, rest: Vec<u8>, keys: &Keys) {
    let verified = || head.bearer().ok_or_else(missing_token).and_then(|t| keys.verify(t));
    let result = match (head.method.as_str(), head.path()) {
        ("GET", "/healthz" | "/readyz") => Ok(r#"{"status":"ok"}"#.to_owned()),
        ("GET", "/v1/consultants") => verified().map(|_| "[]".to_owned()),
        ("POST", "/v1/dev/login") => match read_body(tcp, head, rest).await {
            Ok(body) => dev_login(keys, &body),
            Err(refusal) => Err(refusal),
        },
        (_, "/v1/signal") => Err(refusal(400, ErrorCode::InvalidField, "expected a WebSocket upgrade")),
        (_, path) => Err(refusal(404, ErrorCode::UnknownRoute, &format!("no route {path} in the bare relay"))),
    };
    match result {
        Ok(body) => respond(tcp, 200, &body).await,
        Err(r) => refuse(tcp, r).await,
    }
}

/// Answers `refusal` as Parley does: its status and an [`ErrorBody`].
pub(super) async fn refuse(tcp: &mut TcpStream, refusal: Refusal) {
    let body = ErrorBody { code: refusal.code, message: refusal.message };
    respond(tcp, refusal.status, &serde_json::to_string(&body).expect("error bodies serialise")).await;
}

fn refusal(status: u16, code: ErrorCode, message: &str) -> Refusal {
    Refusal { status, code, message: message.to_owned() }
}

/// Writes a JSON response and closes the connection.
async fn respond(tcp: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Internal Server Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    if tcp.write_all(response.as_bytes()).await.is_ok() {
        let _ = tcp.shutdown().await;
    }
}

/// The request body (`Content-Length` bytes; `rest` holds its start).
async fn read_body(tcp: &mut TcpStream, head: &Head, mut rest: Vec<u8>) -> Result<Vec<u8>, Refusal> {
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| refusal(400, ErrorCode::InvalidField, "a Content-Length is required"))?;
    if len > MAX_BODY_BYTES {
        return Err(refusal(413, ErrorCode::PayloadTooLarge, "body too large"));
    }
    while rest.len() < len {
        let mut chunk = vec![0; len - rest.len()];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(refusal(400, ErrorCode::InvalidField, "body cut short")),
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
        }
    }
    rest.truncate(len);
    Ok(rest)
}

/// `POST /v1/dev/login`: a token for the user named in `body`, minted with
/// the relay's secret (seekers and consultants only; the role defaults to
/// seeker and the name to the id, as there is no user store).
pub(super) fn dev_login(keys: &Keys, body: &[u8]) -> Result<String, Refusal> {
    let request: DevLoginRequest =
        serde_json::from_slice(body).map_err(|e| refusal(400, ErrorCode::InvalidField, &e.to_string()))?;
    let id = UserId::parse(request.user_id).map_err(|e| refusal(400, ErrorCode::InvalidField, &e.to_string()))?;
    let role = request.role.unwrap_or(Role::Seeker);
    if !matches!(role, Role::Seeker | Role::Consultant) {
        return Err(refusal(403, ErrorCode::RoleNotAllowed, "dev login makes seekers and consultants only"));
    }
    let name = request.name.unwrap_or_else(|| id.to_string());
    let user = User { id: id.to_string(), name: name.clone(), role, premium: false };
    let token = keys.mint(&user).map_err(|e| refusal(500, ErrorCode::Internal, &format!("{e:#}")))?;
    let response = DevLoginResponse { token, user: UserInfo { id, name, role } };
    Ok(serde_json::to_string(&response).expect("responses serialise"))
}
