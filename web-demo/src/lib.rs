//! The web demo (`web-demo/`: HTML, CSS and ES modules, no build step) has
//! no Rust code: this package exists for its browser tests in `tests/`,
//! which serve the demo from an in-process `parley` and drive Debian's
//! headless chromium over the DevTools protocol.
