//! The socket against tungstenite's client over an in-memory pipe, and
//! against hand-made frames where a client library would not send them.

use super::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite as ts;
use tokio_tungstenite::tungstenite::protocol::Role;

const MAX: usize = 64 * 1024;

async fn pair() -> (Socket<DuplexStream>, WebSocketStream<DuplexStream>) {
    let (server, client) = duplex(256 * 1024);
    (Socket::new(server, MAX), WebSocketStream::from_raw_socket(client, Role::Client, None).await)
}

/// A masked client frame, as on the wire (RFC 6455 §5.2).
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn text(msg: Option<Result<Message, SocketError>>) -> String {
    match msg {
        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[tokio::test]
async fn messages_go_both_ways_and_the_buffers_are_given_back() {
    let (mut server, mut client) = pair().await;
    let sdp = "a=candidate ".repeat(300); // 3.6 KB, like an SDP
    client.send(ts::Message::text(sdp.clone())).await.unwrap();
    client.send(ts::Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(text(server.next().await), sdp);
    assert!(matches!(server.next().await, Some(Ok(Message::Binary(b))) if b[..] == [1, 2, 3]));
    assert_eq!(server.buffered_capacity(), 0, "nothing is kept between frames");

    server.feed(Message::Text(sdp.as_str().into())).await.unwrap();
    server.feed(Message::Text("short".into())).await.unwrap();
    server.flush().await.unwrap();
    assert_eq!(server.buffered_capacity(), 0, "a grown write buffer is given back once written");
    assert_eq!(client.next().await.unwrap().unwrap(), ts::Message::text(sdp));
    assert_eq!(client.next().await.unwrap().unwrap(), ts::Message::text("short"));

    server.send(Message::Text("x".repeat(100).into())).await.unwrap();
    assert!(server.buffered_capacity() <= KEEP_WRITE, "a small one is kept for the next write");
}

#[tokio::test]
async fn frames_in_one_read_come_one_by_one_and_a_split_frame_waits_for_its_end() {
    let (mut server, mut raw) = {
        let (server, client) = duplex(256 * 1024);
        (Socket::new(server, MAX), client)
    };
    // More than a task's budget of messages (128) in one read: past it,
    // reading yields to the scheduler and then goes on.
    let mut bytes = Vec::new();
    for i in 0..300 {
        bytes.extend(frame(true, 1, format!("message {i}").as_bytes()));
    }
    let last = frame(true, 1, "y".repeat(1000).as_bytes());
    bytes.extend_from_slice(&last[..500]);
    raw.write_all(&bytes).await.unwrap();
    for i in 0..300 {
        assert_eq!(text(server.next().await), format!("message {i}"));
    }
    raw.write_all(&last[500..]).await.unwrap();
    assert_eq!(text(server.next().await), "y".repeat(1000));
    assert_eq!(server.buffered_capacity(), 0);
}

#[tokio::test]
async fn fragments_are_joined_and_control_frames_may_come_between_them() {
    let (mut server, mut raw) = {
        let (server, client) = duplex(256 * 1024);
        (Socket::new(server, MAX), client)
    };
    let mut bytes = frame(false, 1, "hello ".as_bytes());
    bytes.extend(frame(true, 9, b"are you there"));
    bytes.extend(frame(false, 0, "wor".as_bytes()));
    bytes.extend(frame(true, 0, "ld ✓".as_bytes()));
    raw.write_all(&bytes).await.unwrap();
    assert!(matches!(server.next().await, Some(Ok(Message::Ping(p))) if p[..] == b"are you there"[..]));
    assert_eq!(text(server.next().await), "hello world ✓");
    // The ping was answered with a pong of the same payload (§5.5.3).
    let mut reply = [0u8; 15];
    raw.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[..2], [0x8a, 13]);
    assert_eq!(&reply[2..], b"are you there");
}

#[tokio::test]
async fn a_server_ping_is_answered_by_the_client_and_its_pong_read() {
    let (mut server, mut client) = pair().await;
    server.send(Message::Ping(7u64.to_be_bytes().to_vec().into())).await.unwrap();
    // The client answers pings as it reads.
    let reader = tokio::spawn(async move { while client.next().await.is_some() {} });
    assert!(matches!(server.next().await, Some(Ok(Message::Pong(p))) if p[..] == 7u64.to_be_bytes()));
    reader.abort();
}

#[tokio::test]
async fn a_close_is_echoed_and_ends_the_stream() {
    let (mut server, mut client) = pair().await;
    let close = ts::protocol::CloseFrame { code: ts::protocol::frame::coding::CloseCode::Normal, reason: "bye".into() };
    client.send(ts::Message::Close(Some(close))).await.unwrap();
    let read = server.next().await;
    assert!(matches!(read, Some(Ok(Message::Close(Some(ref f)))) if f.code == 1000 && f.reason == "bye"), "{read:?}");
    assert!(server.next().await.is_none());
    match client.next().await {
        Some(Ok(ts::Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1000),
        other => panic!("the close is echoed: {other:?}"),
    }
    assert!(matches!(server.send(Message::Text("late".into())).await, Err(SocketError::Closed)));
}

#[tokio::test]
async fn a_close_read_with_an_earlier_message_is_echoed_when_it_is_returned() {
    let (server, mut raw) = duplex(256 * 1024);
    let mut server = Socket::new(server, MAX);
    let mut bytes = frame(true, 1, b"last words");
    bytes.extend(frame(true, 8, &1000u16.to_be_bytes()));
    raw.write_all(&bytes).await.unwrap();
    assert_eq!(text(server.next().await), "last words");
    assert!(matches!(server.next().await, Some(Ok(Message::Close(Some(f)))) if f.code == 1000));
    // The echo is on the wire before the caller drops the socket.
    let mut reply = [0u8; 4];
    tokio::time::timeout(std::time::Duration::from_secs(10), raw.read_exact(&mut reply)).await.unwrap().unwrap();
    assert_eq!(reply, [0x88, 2, 0x03, 0xe8]);
    assert!(server.next().await.is_none());
}

#[tokio::test]
async fn the_server_closes_with_its_code_and_reason() {
    let (mut server, mut client) = pair().await;
    server.send(Message::Close(Some(CloseFrame { code: 4000, reason: "replaced".into() }))).await.unwrap();
    match client.next().await {
        Some(Ok(ts::Message::Close(Some(f)))) => assert_eq!((u16::from(f.code), f.reason.as_str()), (4000, "replaced")),
        other => panic!("{other:?}"),
    }
}

/// Feeds `bytes` to a fresh socket and returns what it read.
async fn read_raw(bytes: Vec<u8>) -> Option<Result<Message, SocketError>> {
    let (server, mut client) = duplex(256 * 1024);
    let mut server = Socket::new(server, MAX);
    client.write_all(&bytes).await.unwrap();
    drop(client); // what was written is still read, then the end
    server.next().await
}

#[tokio::test]
async fn frames_that_break_the_rules_are_errors_with_the_code_to_close_with() {
    let code = |r: Option<Result<Message, SocketError>>| match r {
        Some(Err(e)) => e.close().map(|(code, _)| code),
        other => panic!("expected an error, got {other:?}"),
    };
    let mut unmasked = vec![0x81, 2];
    unmasked.extend_from_slice(b"hi");
    assert_eq!(code(read_raw(unmasked).await), Some(1002), "an unmasked client frame");
    assert_eq!(code(read_raw(frame(true, 3, b"x")).await), Some(1002), "a reserved opcode");
    let mut rsv = frame(true, 1, b"x");
    rsv[0] |= 0x40;
    assert_eq!(code(read_raw(rsv).await), Some(1002), "a reserved bit");
    assert_eq!(code(read_raw(frame(false, 9, b"x")).await), Some(1002), "a fragmented ping");
    assert_eq!(code(read_raw(frame(true, 9, &[0; 126])).await), Some(1002), "a ping over 125 bytes");
    assert_eq!(code(read_raw(frame(true, 0, b"x")).await), Some(1002), "a continuation of nothing");
    let mut twice = frame(false, 1, b"a");
    twice.extend(frame(true, 1, b"b"));
    assert_eq!(code(read_raw(twice).await), Some(1002), "a new message inside a fragmented one");
    assert_eq!(code(read_raw(frame(true, 8, &[0x03])).await), Some(1002), "a one-byte close payload");
    assert_eq!(code(read_raw(frame(true, 8, &1005u16.to_be_bytes())).await), Some(1002), "close code 1005 on the wire");
    assert_eq!(code(read_raw(frame(true, 1, &[0xff, 0xfe])).await), Some(1007), "text that is not UTF-8");
    let mut split = frame(false, 1, &[0xe2, 0x9c]);
    split.extend(frame(true, 0, &[0x93]));
    assert_eq!(text(read_raw(split).await), "✓", "UTF-8 is checked on the whole message");
    let mut header_only = frame(true, 1, &[]);
    header_only[1] = 0x80 | 127;
    header_only.splice(2..2, ((MAX + 1) as u64).to_be_bytes());
    assert_eq!(code(read_raw(header_only).await), Some(1009), "over the limit, known from the header alone");
    let mut fragments = frame(false, 1, &vec![b'a'; MAX / 2 + 1]);
    fragments.extend(frame(true, 0, &vec![b'b'; MAX / 2]));
    assert_eq!(code(read_raw(fragments).await), Some(1009), "fragments over the limit together");
    assert!(read_raw(Vec::new()).await.is_none(), "a connection closed without a frame ends the stream");
}

#[test]
fn unmasking_is_the_masks_xor_at_every_length() {
    let mask = [1, 2, 3, 4];
    for len in 0..13 {
        let original: Vec<u8> = (0..len as u8).collect();
        let mut data = original.clone();
        unmask(&mut data, mask);
        let expected: Vec<u8> = original.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        assert_eq!(data, expected, "{len} bytes");
    }
}

#[test]
fn a_long_close_reason_is_cut_to_a_control_frame_at_a_character_boundary() {
    let frame = CloseFrame { code: 4000, reason: Utf8Bytes::from("é".repeat(100)) };
    let payload = close_payload(&frame);
    assert_eq!(payload.len(), 2 + 122, "61 two-byte characters fit in 123 bytes");
    assert_eq!(&payload[..2], &4000u16.to_be_bytes());
    assert_eq!(std::str::from_utf8(&payload[2..]), Ok("é".repeat(61).as_str()));
    let short = CloseFrame { code: 1000, reason: Utf8Bytes::from("bye") };
    assert_eq!(close_payload(&short), b"\x03\xe8bye");
}
