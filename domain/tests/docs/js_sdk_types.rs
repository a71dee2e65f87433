//! The JavaScript SDK's TypeScript declarations (`sdk/js/parley.d.ts`) and
//! its `ErrorCode` constants (`sdk/js/parley.js`) are kept in step with
//! `domain::protocol` (ARCHITECTURE.md invariant): every message type and
//! every error code appears in them as a string literal.

use parley_domain::protocol::{ClientMessage, ErrorCode, ServerMessage};

fn read(file: &str) -> String {
    let path = format!("{}/../sdk/js/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn quoted(doc: &str, name: &str) -> bool {
    doc.contains(&format!("\"{name}\"")) || doc.contains(&format!("'{name}'"))
}

#[test]
fn the_typescript_declarations_name_every_message_and_error_code() {
    let dts = read("parley.d.ts");
    let names = ClientMessage::TYPES.iter().chain(ServerMessage::TYPES).copied();
    let codes = ErrorCode::ALL.iter().map(|c| c.as_str());
    let missing: Vec<&str> = names.chain(codes).filter(|n| !quoted(&dts, n)).collect();
    assert!(missing.is_empty(), "sdk/js/parley.d.ts does not declare: {missing:?}");
}

#[test]
fn the_js_sdk_knows_every_error_code() {
    let js = read("parley.js");
    let missing: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).filter(|n| !quoted(&js, n)).collect();
    assert!(missing.is_empty(), "sdk/js/parley.js ErrorCode lacks: {missing:?}");
}
