//! Which database a URL names, and why connecting to it failed.

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres:` / `postgresql:` URLs.
    Postgres,
}

impl Backend {
    /// The backend of `url`, or `None` for an unsupported scheme.
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// Why [`SqlStore::connect`](super::SqlStore::connect) failed. Each variant names `DATABASE_URL`,
/// the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL names neither SQLite (`sqlite:`) nor PostgreSQL (`postgres://`).
    #[error("DATABASE_URL: expected sqlite: or postgres:// URL")]
    UnsupportedUrl,
    /// The URL does not parse as connect options for its database.
    #[error("DATABASE_URL: invalid URL")]
    Url(#[source] sqlx::Error),
    /// The database could not be opened or reached.
    #[error("DATABASE_URL: cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// A migration failed (the schema is left as the failed one found it).
    #[error("DATABASE_URL: cannot migrate the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
