//! Billing's single-row inserts ([`parley_billing::Statement::insert`]: a
//! hold, a sandbox intent) of the writers of one batch, inserted together:
//! one statement per table and columns instead of one per row.

use std::collections::HashMap;

use parley_billing::{Arg, Done, Statement};
use serde_json::Value;

use super::{multi_row, placeholders, rows_per_statement};
use crate::store::Backend;

/// Billing's single-row inserts into one table and columns: the table and
/// columns, their number, and each row's writer (index in the batch) and
/// values.
pub(super) type RowGroup<'a> = (&'static str, usize, Vec<(usize, &'a [Arg])>);

/// The table and columns, and the values, of `statements` when they are
/// one single-row insert that shares an insert with other writers' rows.
pub(super) fn row_insert(statements: &[Statement]) -> Option<(&'static str, &[Arg])> {
    match statements {
        [only] => only.insert_into(),
        _ => None,
    }
}

/// Inserts each group's rows and records each writer's outcome (one row
/// inserted) in `ran`. A failing row fails its statement, and so the
/// batch, whose writes are then retried one by one.
///
/// SQLite: a multi-row `VALUES` of up to [`rows_per_statement`] rows. A
/// statement there is a hop to the connection's thread and back, and
/// preparing a long one costs little.
///
/// PostgreSQL: one statement per group whatever its rows, its text the
/// same at every row count and so prepared once per connection: the rows
/// go as one JSON array in one parameter, expanded by
/// `json_populate_recordset` into the table's row type (each value through
/// its column's input function; columns not named keep their defaults).
/// A multi-row `VALUES` was slower there (each row count another text to
/// parse and plan: 770 to 860 connections/s against 1,040 to 1,140 row by
/// row at 500 rows a statement, 1,141 to 1,324 against 1,516 to 1,575 at
/// 64, the eleventh run), and row by row a batch of 255 holds took 100 to
/// 180 ms of round trips (twenty-seventh run).
pub(super) async fn insert(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    groups: &[RowGroup<'_>],
    ran: &mut HashMap<usize, Vec<Done>>,
) -> Result<(), sqlx::Error> {
    for (into, columns, group) in groups {
        match backend {
            Backend::Sqlite => {
                for chunk in group.chunks(rows_per_statement(backend)) {
                    let sql = format!("INSERT INTO {into} VALUES {}", placeholders(backend, chunk.len(), *columns));
                    let values = chunk.iter().flat_map(|(_, values)| values.iter());
                    values.fold(multi_row(sql, chunk.len()), |q, v| v.bind_to(q)).execute(&mut *conn).await?;
                }
            }
            Backend::Postgres => {
                let (table, names) = table_and_columns(into)?;
                let rows: Vec<Value> = group
                    .iter()
                    .map(|(_, values)| Value::Object(names.iter().zip(values.iter()).map(json_field).collect()))
                    .collect();
                let sql = format!(
                    "INSERT INTO {into} SELECT {} FROM json_populate_recordset(NULL::{table}, $1::json)",
                    names.join(", ")
                );
                let json = serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(json).execute(&mut *conn).await?;
            }
        }
        for (i, _) in group {
            ran.insert(*i, vec![Done { rows_affected: 1, row: None }]);
        }
    }
    Ok(())
}

/// `"holds (session_id, call_id)"` → `("holds", ["session_id", "call_id"])`.
fn table_and_columns(into: &str) -> Result<(&str, Vec<&str>), sqlx::Error> {
    let bad = || sqlx::Error::Protocol(format!("an insert's table and columns cannot be read: {into}"));
    let (table, columns) = into.split_once('(').ok_or_else(bad)?;
    let columns = columns.trim_end().strip_suffix(')').ok_or_else(bad)?;
    Ok((table.trim(), columns.split(',').map(str::trim).collect()))
}

/// One column of a row as a JSON object's field: integers as numbers,
/// text as strings, NULL as null.
fn json_field((name, value): (&&str, &Arg)) -> (String, Value) {
    let value = match value {
        Arg::Int(v) => v.map_or(Value::Null, Value::from),
        Arg::Text(v) => v.as_deref().map_or(Value::Null, Value::from),
    };
    ((*name).to_owned(), value)
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;

    #[test]
    fn an_inserts_table_and_columns_are_read_from_its_into() {
        assert_eq!(
            table_and_columns("holds (session_id, call_id,\n  seeker_id)").unwrap(),
            ("holds", vec!["session_id", "call_id", "seeker_id"])
        );
        assert!(table_and_columns("holds").is_err());
    }

    #[test]
    fn a_row_is_a_json_object_of_its_columns() {
        let values = [Arg::Int(Some(3000)), Arg::Text(Some("a\"b".into())), Arg::Int(None), Arg::Text(None)];
        let names = ["amount_minor", "id", "expires_ms", "destination"];
        let row: Map<String, Value> = names.iter().zip(values.iter()).map(json_field).collect();
        assert_eq!(
            Value::Object(row),
            json!({"amount_minor": 3000, "id": "a\"b", "expires_ms": null, "destination": null})
        );
    }
}
