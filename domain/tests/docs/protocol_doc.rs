//! docs/protocol.md documents every message type and every error code, as
//! on the wire (in backticks). Keeps the document in step with the code.

use parley_domain::protocol::{ClientMessage, ErrorCode, ServerMessage};

#[test]
fn the_protocol_document_names_every_message_and_error_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md exists");
    let mut missing: Vec<String> = Vec::new();
    let names = ClientMessage::TYPES.iter().chain(ServerMessage::TYPES).copied();
    let codes = ErrorCode::ALL.iter().map(|c| c.as_str());
    for name in names.chain(codes) {
        if !doc.contains(&format!("`{name}`")) {
            missing.push(name.to_owned());
        }
    }
    assert!(missing.is_empty(), "docs/protocol.md does not mention: {missing:?}");
}
