//! Output: readable lines first, then exactly one JSON object as the last
//! line of stdout, for scripts (`parley-load … | tail -n1 | jq`).

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts by key (error codes, failure kinds), sorted for stable output.
pub type Counts = BTreeMap<String, u64>;

/// Adds one to `key` in `counts`.
pub fn bump(counts: &mut Counts, key: &str) {
    *counts.entry(key.to_owned()).or_default() += 1;
}

/// Adds every count of `other` to `counts`.
pub fn add_counts(counts: &mut Counts, other: &Counts) {
    for (k, v) in other {
        *counts.entry(k.clone()).or_default() += v;
    }
}

/// `report` as one line of JSON (never contains a newline).
pub fn json_line<T: Serialize>(report: &T) -> String {
    serde_json::to_string(report).expect("reports serialise")
}

/// Prints `report` as the last line of stdout.
pub fn print_json_line<T: Serialize>(report: &T) {
    println!("{}", json_line(report));
}

/// `Some(x)` as `x` with three decimals, `None` as `-`, for the readable lines.
pub fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{x:.3}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_single_lines() {
        #[derive(Serialize)]
        struct R {
            text: String,
            none: Option<u8>,
        }
        let line = json_line(&R { text: "a\nb".into(), none: None });
        assert!(!line.contains('\n'));
        assert_eq!(line, r#"{"text":"a\nb","none":null}"#);
    }

    #[test]
    fn counting() {
        let mut a = Counts::new();
        bump(&mut a, "rate_limited");
        bump(&mut a, "rate_limited");
        let mut b = Counts::new();
        bump(&mut b, "not_in_room");
        bump(&mut b, "rate_limited");
        add_counts(&mut a, &b);
        assert_eq!(a.get("rate_limited"), Some(&3));
        assert_eq!(a.get("not_in_room"), Some(&1));
        assert_eq!(opt(None), "-");
        assert_eq!(opt(Some(1.23456)), "1.235");
    }
}
