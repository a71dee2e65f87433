//! One test binary for the documents that are contracts: docs/protocol.md, docs/rules.md and the JS SDK's types.
//! Each module was a test file of its own; one binary links once.

mod js_sdk_types;
mod protocol_doc;
mod rules_doc;
