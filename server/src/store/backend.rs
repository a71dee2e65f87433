//! Which database a URL names, how to connect to it, and why connecting
//! to it failed.

use std::borrow::Cow;
use std::net::IpAddr;

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

    /// The URL to connect to `url` with: `url` itself, except that a
    /// PostgreSQL URL whose host is this machine (`localhost`, an address
    /// in 127.0.0.0/8, `::1`) and that sets no `sslmode` gets
    /// `sslmode=allow`: a connection without TLS, and with TLS only if the
    /// server refuses it without (PostgreSQL's own `allow`, libpq's
    /// documentation, "SSL Support"). sqlx's default is `prefer`, TLS
    /// whenever the server offers it: on loopback that encrypts what never
    /// leaves the machine, and cost about 7 % of the calls paired per
    /// second (`load-tests/README.md`, thirteenth run). An explicit
    /// `sslmode`, another host or a Unix socket is left as written.
    pub fn connect_url(self, url: &str) -> Cow<'_, str> {
        if self != Backend::Postgres {
            return Cow::Borrowed(url);
        }
        let Ok(mut parsed) = url::Url::parse(url) else { return Cow::Borrowed(url) };
        if parsed.query_pairs().any(|(k, _)| k == "sslmode" || k == "ssl-mode") {
            return Cow::Borrowed(url);
        }
        // A `host` parameter overrides the URL's host (a Unix socket's
        // directory, or a name).
        let host = parsed
            .query_pairs()
            .find(|(k, _)| k == "host")
            .map(|(_, v)| v.into_owned())
            .or_else(|| parsed.host_str().map(str::to_owned));
        let loopback = host.is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        });
        if !loopback {
            return Cow::Borrowed(url);
        }
        parsed.query_pairs_mut().append_pair("sslmode", "allow");
        Cow::Owned(parsed.into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_postgres_without_sslmode_connects_without_tls_first() {
        let url = |u: &str| Backend::of(u).expect("a known scheme").connect_url(u).into_owned();
        assert_eq!(
            url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test?sslmode=allow"
        );
        assert_eq!(
            url("postgresql://u:p@localhost/db?application_name=x"),
            "postgresql://u:p@localhost/db?application_name=x&sslmode=allow"
        );
        assert_eq!(url("postgres://u@[::1]:5432/db"), "postgres://u@[::1]:5432/db?sslmode=allow");
        assert_eq!(url("postgres://u@127.3.0.9/db"), "postgres://u@127.3.0.9/db?sslmode=allow");
        assert_eq!(
            url("postgres://u@db.example/db?host=127.0.0.1"),
            "postgres://u@db.example/db?host=127.0.0.1&sslmode=allow"
        );
    }

    #[test]
    fn an_explicit_sslmode_another_host_or_a_socket_is_kept() {
        for u in [
            "postgres://u@127.0.0.1/db?sslmode=require",
            "postgres://u@localhost/db?sslmode=prefer",
            "postgres://u@db.example:5432/db",
            "postgres://u@10.0.0.5/db",
            "postgres://u@127.0.0.1/db?host=db.example",
            "postgres:///db?host=/var/run/postgresql",
            "sqlite://data/parley.db",
        ] {
            assert_eq!(Backend::of(u).expect("a known scheme").connect_url(u), u, "{u}");
        }
    }
}
