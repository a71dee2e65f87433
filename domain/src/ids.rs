//! Validated identifiers.
//!
//! Ids are opaque strings. [`UserId`]s come from the operator's platform (the
//! JWT `sub` claim), so they are validated on construction; [`CallId`] and
//! [`SessionId`] are minted by the server (`call_…` / `ses_…` followed by a
//! UUIDv7) but validated the same way when they arrive from a client.
//!
//! An id is shared, not copied: a clone is a reference count's increment
//! ([`Arc<str>`]), so the hub's maps, a room's members and the records of
//! a call and its session, which each hold the same few ids, hold one
//! allocation of each (load-tests/README.md, twenty-fourth run).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The string is empty.
    Empty,
    /// The string is longer than [`MAX_ID_LEN`] bytes.
    TooLong(usize),
    /// The string holds a character outside `[A-Za-z0-9_.@:-]`.
    BadChar(char),
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => write!(f, "id is empty"),
            IdError::TooLong(n) => write!(f, "id is {n} bytes long; at most {MAX_ID_LEN} allowed"),
            IdError::BadChar(c) => write!(f, "id contains {c:?}; only A-Z a-z 0-9 _ . @ : - are allowed"),
        }
    }
}

impl std::error::Error for IdError {}

fn validate(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(s.len()));
    }
    // Byte by byte: every byte before the first refused one is ASCII, so
    // that byte starts the character reported.
    match s.bytes().position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b':' | b'-'))) {
        Some(i) => Err(IdError::BadChar(s[i..].chars().next().expect("a character starts at the refused byte"))),
        None => Ok(()),
    }
}

/// Reads an id from a string, borrowed or not, into one allocation (the
/// id's own): a `String` first would be a second.
struct IdVisitor<T>(fn(&str) -> Result<T, IdError>);

impl<T> serde::de::Visitor<'_> for IdVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id: 1 to 64 characters of A-Z a-z 0-9 _ . @ : -")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
        (self.0)(s).map_err(E::custom)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Serialised as a JSON string; cloned by reference count.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `s` (1–64 bytes of `[A-Za-z0-9_.@:-]`).
            ///
            /// # Errors
            ///
            /// [`IdError`]: empty, longer than [`MAX_ID_LEN`], or a character
            /// outside the set.
            pub fn parse(s: impl AsRef<str>) -> Result<Self, IdError> {
                let s = s.as_ref();
                validate(s)?;
                Ok(Self(Arc::from(s)))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether `s` would parse: for a reader that keeps the id
            /// borrowed from its input (the relay's fast path).
            ///
            /// # Errors
            ///
            /// [`IdError`]: as [`Self::parse`] would return.
            pub fn check(s: &str) -> Result<(), IdError> {
                validate(s)
            }
        }

        // Hashed and compared as its string (the derives see one `Arc<str>`
        // field, hashed and compared as its `str`), so a map keyed by the id
        // may be searched by a `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(IdVisitor(|s| Self::parse(s)))
            }
        }
    };
}

id_type!(
    /// A user (seeker or consultant), as named by the operator's platform in
    /// the JWT `sub` claim.
    UserId
);
id_type!(
    /// One instant-call attempt: from `call.request` until it is accepted or
    /// ends unanswered.
    CallId
);
id_type!(
    /// A session: the room an accepted call (or a booking) opens, and the
    /// unit that is metered and billed.
    SessionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_platform_style_ids() {
        for ok in ["u1", "user_42", "a.b@c:d-e", &"x".repeat(64)] {
            assert!(UserId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert_eq!(UserId::parse(""), Err(IdError::Empty));
        assert_eq!(UserId::parse("x".repeat(65)), Err(IdError::TooLong(65)));
        assert_eq!(UserId::parse("a b"), Err(IdError::BadChar(' ')));
        assert_eq!(UserId::parse("a/b"), Err(IdError::BadChar('/')));
        // The character reported whole, not its first byte.
        assert_eq!(UserId::parse("ab\u{e9}_\u{1f600}"), Err(IdError::BadChar('\u{e9}')));
        assert_eq!(UserId::parse("u_\u{1f600}"), Err(IdError::BadChar('\u{1f600}')));
    }

    #[test]
    fn a_borrowed_id_is_checked_and_finds_its_owned_key() {
        assert_eq!(SessionId::check("ses_1"), Ok(()));
        assert_eq!(SessionId::check("ses 1"), Err(IdError::BadChar(' ')));
        assert_eq!(SessionId::check(""), Err(IdError::Empty));
        let rooms = std::collections::HashMap::from([(SessionId::parse("ses_1").unwrap(), 7)]);
        assert_eq!(rooms.get("ses_1"), Some(&7));
        assert_eq!(rooms.get("ses_2"), None);
    }

    #[test]
    fn deserialising_validates() {
        let err = serde_json::from_str::<SessionId>("\"a b\"").unwrap_err().to_string();
        assert!(err.contains("only A-Z"), "{err}");
        assert_eq!(serde_json::from_str::<CallId>("\"call_1\"").unwrap().as_str(), "call_1");
    }
}
