//! Failure injection for tests of crash windows (issue 13, item 4).
//!
//! A [`Faults`] is a set of armed *crash points*. Code with a window
//! between an effect and its record asks [`Faults::fires`] at that point;
//! an armed point fires once and the caller then behaves as a process killed
//! there would: it abandons its open transaction (nothing it wrote is
//! committed) and returns a transient error. Production code never arms a
//! point, so [`Faults::fires`] is one uncontended lock and a lookup in an
//! empty list.
//!
//! Points in use:
//! - `sandbox.capture`, `sandbox.refund`, `sandbox.account`, and
//!   `sandbox.hold` for a refused card: the sandbox provider, after a
//!   write's effect and before its idempotency record.
//! - `sandbox.hold` for an accepted card, and `sandbox.cancel`: before the
//!   one statement that makes the effect and its record (`sandbox::keyed`).
//! - `webhook.apply`: [`crate::Billing::handle_webhook`], after the event is
//!   marked processed and its effect written, before the commit.

use std::sync::{Arc, Mutex};

/// Armed crash points, shared by clones (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<Vec<String>>>);

impl Faults {
    /// Arms `point` to fire once (arm it again to fire again).
    pub fn arm(&self, point: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(point.to_owned());
    }

    /// Whether `point` is armed; disarms it (one firing per arming).
    pub fn fires(&self, point: &str) -> bool {
        let mut armed = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match armed.iter().position(|p| p == point) {
            Some(i) => {
                armed.remove(i);
                true
            }
            None => false,
        }
    }

    /// How many armed points have not fired yet.
    pub fn pending(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
