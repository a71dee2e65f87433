//! A consultant's availability as absolute time (DESIGN.md §3): weekly
//! local-time windows and date exceptions in an IANA time zone, turned
//! into UTC intervals and bookable slots.
//!
//! Pure: no clock, no IO; instants are Unix ms. Daylight saving is handled
//! by converting each window's local bounds separately (`chrono-tz`): a
//! `09:00–17:00` rule is 09:00–17:00 local on both sides of a change. On
//! the day of a change a window keeps its local bounds, so it is an hour
//! shorter or longer in real time: local times that do not exist (the
//! spring-forward gap) start at the first instant after the gap; local
//! times that happen twice (fall back) start at the first and end at the
//! second occurrence.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration as ChronoDuration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::{Availability, Slot, TimeWindow, Weekday};

/// Most weekly rules accepted.
pub const MAX_WEEKLY_RULES: usize = 50;
/// Most date exceptions accepted.
pub const MAX_EXCEPTIONS: usize = 100;
/// Session lengths accepted, minutes.
pub const LENGTH_RANGE_MIN: std::ops::RangeInclusive<u32> = 15..=240;
/// Most session lengths a consultant may offer.
pub const MAX_LENGTHS: usize = 6;

const MINUTE_MS: i64 = 60_000;
const DAY_MINUTES: u32 = 24 * 60;

/// Why an [`Availability`] was refused: a stable code and a message that
/// names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    /// `unknown_time_zone` or `invalid_field`.
    pub code: ErrorCode,
    /// What is wrong, naming the field.
    pub message: String,
}

fn invalid(message: impl Into<String>) -> ScheduleError {
    ScheduleError { code: ErrorCode::InvalidField, message: message.into() }
}

/// A window of local minutes after midnight, `start < end ≤ 1440`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Window {
    start: u32,
    end: u32,
}

/// A validated availability.
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: Tz,
    lengths: Vec<u32>,
    /// Monday first.
    weekly: [Vec<Window>; 7],
    exceptions: BTreeMap<NaiveDate, Vec<Window>>,
}

fn parse_time(field: &str, s: &str) -> Result<u32, ScheduleError> {
    let bad = || invalid(format!("{field}: {s:?} is not a time \"HH:MM\" (00:00–24:00)"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn window(field: &str, start: &str, end: &str) -> Result<Window, ScheduleError> {
    let w =
        Window { start: parse_time(&format!("{field}.start"), start)?, end: parse_time(&format!("{field}.end"), end)? };
    if w.start >= w.end {
        return Err(invalid(format!("{field}: start {start} is not before end {end}")));
    }
    Ok(w)
}

/// Sorts `windows` and refuses overlaps.
fn no_overlaps(field: &str, windows: &mut [Window]) -> Result<(), ScheduleError> {
    windows.sort();
    for pair in windows.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(invalid(format!(
                "{field}: windows overlap ({}–{} and {}–{})",
                hm(pair[0].start),
                hm(pair[0].end),
                hm(pair[1].start),
                hm(pair[1].end)
            )));
        }
    }
    Ok(())
}

fn hm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn weekday_index(d: Weekday) -> usize {
    match d {
        Weekday::Mon => 0,
        Weekday::Tue => 1,
        Weekday::Wed => 2,
        Weekday::Thu => 3,
        Weekday::Fri => 4,
        Weekday::Sat => 5,
        Weekday::Sun => 6,
    }
}

/// The IANA time zone named `name`, or `unknown_time_zone`.
pub fn time_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>().map_err(|_| ScheduleError {
        code: ErrorCode::UnknownTimeZone,
        message: format!("time_zone: {name:?} is not an IANA time zone (e.g. \"Europe/Paris\")"),
    })
}

impl Schedule {
    /// Validates `a`. Errors: `unknown_time_zone`; `invalid_field` for a bad
    /// time or date, an empty or overlapping window, a length outside
    /// 15–240 minutes, no lengths or more than six, too many rules, a date
    /// given twice.
    pub fn new(a: &Availability) -> Result<Schedule, ScheduleError> {
        let tz = time_zone(&a.time_zone)?;
        if a.session_lengths_min.is_empty() || a.session_lengths_min.len() > MAX_LENGTHS {
            return Err(invalid(format!("session_lengths_min: give 1 to {MAX_LENGTHS} lengths")));
        }
        let mut lengths = a.session_lengths_min.clone();
        if let Some(bad) = lengths.iter().find(|l| !LENGTH_RANGE_MIN.contains(l)) {
            return Err(invalid(format!("session_lengths_min: {bad} is outside 15–240 minutes")));
        }
        lengths.sort_unstable();
        lengths.dedup();
        if a.weekly.len() > MAX_WEEKLY_RULES {
            return Err(invalid(format!("weekly: at most {MAX_WEEKLY_RULES} rules")));
        }
        if a.exceptions.len() > MAX_EXCEPTIONS {
            return Err(invalid(format!("exceptions: at most {MAX_EXCEPTIONS} dates")));
        }
        let mut weekly: [Vec<Window>; 7] = Default::default();
        for (i, r) in a.weekly.iter().enumerate() {
            weekly[weekday_index(r.weekday)].push(window(&format!("weekly[{i}]"), &r.start, &r.end)?);
        }
        for (day, windows) in weekly.iter_mut().enumerate() {
            no_overlaps(&format!("weekly (day {})", day + 1), windows)?;
        }
        let mut exceptions = BTreeMap::new();
        for (i, e) in a.exceptions.iter().enumerate() {
            let date = NaiveDate::parse_from_str(&e.date, "%Y-%m-%d")
                .map_err(|_| invalid(format!("exceptions[{i}].date: {:?} is not a date \"YYYY-MM-DD\"", e.date)))?;
            let mut windows = e
                .windows
                .iter()
                .enumerate()
                .map(|(j, w): (usize, &TimeWindow)| window(&format!("exceptions[{i}].windows[{j}]"), &w.start, &w.end))
                .collect::<Result<Vec<_>, _>>()?;
            no_overlaps(&format!("exceptions[{i}]"), &mut windows)?;
            if exceptions.insert(date, windows).is_some() {
                return Err(invalid(format!("exceptions[{i}].date: {} is given twice", e.date)));
            }
        }
        Ok(Schedule { tz, lengths, weekly, exceptions })
    }

    /// The time zone's IANA name.
    pub fn time_zone(&self) -> &'static str {
        self.tz.name()
    }

    /// The lengths offered, minutes, ascending.
    pub fn lengths(&self) -> &[u32] {
        &self.lengths
    }

    /// Whether sessions of `length_min` minutes are offered.
    pub fn offers_length(&self, length_min: u32) -> bool {
        self.lengths.contains(&length_min)
    }

    /// The local windows of `date`: its exception, or its weekday's rules.
    fn windows_of(&self, date: NaiveDate) -> &[Window] {
        match self.exceptions.get(&date) {
            Some(w) => w,
            None => &self.weekly[date.weekday().num_days_from_monday() as usize],
        }
    }

    /// The instant of `minutes` after local midnight of `date`; `earliest`
    /// picks the first of two occurrences (fall back), else the second. A
    /// local time in a spring-forward gap maps to the first instant after it.
    fn instant(&self, date: NaiveDate, minutes: u32, earliest: bool) -> i64 {
        let midnight: NaiveDateTime = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        let mut local = midnight + ChronoDuration::minutes(i64::from(minutes));
        // Gaps are at most a few hours; step a minute at a time past one.
        for _ in 0..=DAY_MINUTES {
            match self.tz.from_local_datetime(&local) {
                LocalResult::Single(t) => return t.timestamp_millis(),
                LocalResult::Ambiguous(a, b) => return if earliest { a } else { b }.timestamp_millis(),
                LocalResult::None => local += ChronoDuration::minutes(1),
            }
        }
        unreachable!("no time zone has a day-long gap")
    }

    /// The available intervals `[start, end)` (Unix ms) that overlap
    /// `[from_ms, to_ms)`, earliest first, clipped to it.
    pub fn intervals(&self, from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
        let local_date =
            |ms: i64| Utc.timestamp_millis_opt(ms).single().map(|t| t.with_timezone(&self.tz).date_naive());
        let (Some(first), Some(last)) = (local_date(from_ms), local_date(to_ms)) else { return vec![] };
        let mut out = Vec::new();
        let mut date = first.pred_opt().unwrap_or(first);
        let end_date = last.succ_opt().unwrap_or(last);
        while date <= end_date {
            for w in self.windows_of(date) {
                let start = self.instant(date, w.start, true);
                let end = self.instant(date, w.end, false);
                let (start, end) = (start.max(from_ms), end.min(to_ms));
                if start < end {
                    out.push((start, end));
                }
            }
            date = match date.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        out.sort_unstable();
        out
    }

    /// Whether `[start_ms, start_ms + length_min)` lies inside one available
    /// interval.
    pub fn allows(&self, start_ms: i64, length_min: u32) -> bool {
        let end_ms = start_ms + i64::from(length_min) * MINUTE_MS;
        self.intervals(start_ms - MINUTE_MS * i64::from(DAY_MINUTES), end_ms + MINUTE_MS * i64::from(DAY_MINUTES))
            .iter()
            .any(|&(s, e)| s <= start_ms && end_ms <= e)
    }

    /// Bookable slots of `length_min` minutes in `[from_ms, to_ms)`: starting
    /// at each interval's start and every `length_min` after, ending inside
    /// the interval, none overlapping `busy` (`[start, end)` Unix ms).
    pub fn slots(&self, from_ms: i64, to_ms: i64, length_min: u32, busy: &[(i64, i64)]) -> Vec<Slot> {
        let step = i64::from(length_min.max(1)) * MINUTE_MS;
        let mut out = Vec::new();
        // Whole windows, so slots stay aligned to their start even when
        // `from_ms` falls inside one.
        let day = MINUTE_MS * i64::from(DAY_MINUTES);
        for (s, e) in self.intervals(from_ms - day, to_ms + day) {
            let mut start = s;
            while start + step <= e {
                let end = start + step;
                let free = !busy.iter().any(|&(b0, b1)| b0 < end && start < b1);
                if start >= from_ms && end <= to_ms && free {
                    out.push(Slot { start_ms: start, end_ms: end });
                }
                start = end;
            }
        }
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_domain::protocol::rest::{DateException, WeeklyRule};

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).expect("rfc3339").timestamp_millis()
    }

    fn rule(weekday: Weekday, start: &str, end: &str) -> WeeklyRule {
        WeeklyRule { weekday, start: start.into(), end: end.into() }
    }

    fn availability(tz: &str, weekly: Vec<WeeklyRule>) -> Availability {
        Availability { time_zone: tz.into(), session_lengths_min: vec![30, 60], weekly, exceptions: vec![] }
    }

    fn every_day(start: &str, end: &str) -> Vec<WeeklyRule> {
        use Weekday::*;
        [Mon, Tue, Wed, Thu, Fri, Sat, Sun].into_iter().map(|d| rule(d, start, end)).collect()
    }

    #[test]
    fn nine_to_five_stays_local_across_the_spring_change() {
        // Paris: CET (+01:00) until 2026-03-29 02:00, CEST (+02:00) after.
        let s = Schedule::new(&availability("Europe/Paris", every_day("09:00", "17:00"))).unwrap();
        let before = s.intervals(utc("2026-03-28T00:00:00Z"), utc("2026-03-29T00:00:00Z"));
        assert_eq!(before, vec![(utc("2026-03-28T08:00:00Z"), utc("2026-03-28T16:00:00Z"))]);
        let after = s.intervals(utc("2026-03-30T00:00:00Z"), utc("2026-03-31T00:00:00Z"));
        assert_eq!(after, vec![(utc("2026-03-30T07:00:00Z"), utc("2026-03-30T15:00:00Z"))]);
    }

    #[test]
    fn a_window_over_the_spring_gap_is_an_hour_shorter() {
        let s = Schedule::new(&availability("Europe/Paris", every_day("01:00", "04:00"))).unwrap();
        let day = s.intervals(utc("2026-03-28T22:00:00Z"), utc("2026-03-29T22:00:00Z"));
        // 01:00 CET = 00:00Z; 04:00 CEST = 02:00Z: two real hours.
        assert_eq!(day, vec![(utc("2026-03-29T00:00:00Z"), utc("2026-03-29T02:00:00Z"))]);
        let slots = s.slots(utc("2026-03-28T22:00:00Z"), utc("2026-03-29T22:00:00Z"), 60, &[]);
        assert_eq!(slots.len(), 2, "{slots:?}");
    }

    #[test]
    fn a_window_starting_in_the_gap_starts_after_it() {
        // 02:30 does not exist in Paris on 2026-03-29: the window starts at 03:00 CEST.
        let s = Schedule::new(&availability("Europe/Paris", every_day("02:30", "05:00"))).unwrap();
        let day = s.intervals(utc("2026-03-29T00:00:00Z"), utc("2026-03-29T12:00:00Z"));
        assert_eq!(day, vec![(utc("2026-03-29T01:00:00Z"), utc("2026-03-29T03:00:00Z"))]);
    }

    #[test]
    fn a_window_over_the_autumn_change_is_an_hour_longer() {
        // Paris falls back on 2026-10-25 at 03:00 CEST → 02:00 CET.
        let s = Schedule::new(&availability("Europe/Paris", every_day("01:00", "04:00"))).unwrap();
        let day = s.intervals(utc("2026-10-24T20:00:00Z"), utc("2026-10-25T20:00:00Z"));
        // 01:00 CEST = 23:00Z the day before; 04:00 CET = 03:00Z: four real hours.
        assert_eq!(day, vec![(utc("2026-10-24T23:00:00Z"), utc("2026-10-25T03:00:00Z"))]);
        // An ambiguous bound: 02:30 starts at its first occurrence (CEST).
        let s = Schedule::new(&availability("Europe/Paris", every_day("02:30", "02:45"))).unwrap();
        let day = s.intervals(utc("2026-10-24T20:00:00Z"), utc("2026-10-25T20:00:00Z"));
        assert_eq!(day, vec![(utc("2026-10-25T00:30:00Z"), utc("2026-10-25T01:45:00Z"))]);
    }

    #[test]
    fn new_york_changes_on_its_own_date() {
        let s = Schedule::new(&availability("America/New_York", every_day("09:00", "10:00"))).unwrap();
        // EST (-05:00) on 2026-03-07, EDT (-04:00) from 2026-03-08.
        assert!(s.allows(utc("2026-03-07T14:00:00Z"), 60));
        assert!(!s.allows(utc("2026-03-08T14:00:00Z"), 60));
        assert!(s.allows(utc("2026-03-08T13:00:00Z"), 60));
    }

    #[test]
    fn allows_only_whole_sessions_inside_a_window() {
        let s = Schedule::new(&availability("UTC", vec![rule(Weekday::Mon, "09:00", "12:00")])).unwrap();
        // 2026-11-23 is a Monday.
        assert!(s.allows(utc("2026-11-23T09:00:00Z"), 60));
        assert!(s.allows(utc("2026-11-23T11:00:00Z"), 60));
        assert!(s.allows(utc("2026-11-23T10:17:00Z"), 30));
        assert!(!s.allows(utc("2026-11-23T11:30:00Z"), 60), "runs past 12:00");
        assert!(!s.allows(utc("2026-11-23T08:30:00Z"), 60), "starts before 09:00");
        assert!(!s.allows(utc("2026-11-24T09:00:00Z"), 60), "a Tuesday");
    }

    #[test]
    fn exceptions_replace_the_weekly_rules_that_day() {
        let mut a = availability("UTC", vec![rule(Weekday::Mon, "09:00", "12:00")]);
        a.exceptions = vec![
            DateException { date: "2026-11-23".into(), windows: vec![] },
            DateException {
                date: "2026-11-28".into(),
                windows: vec![TimeWindow { start: "14:00".into(), end: "15:00".into() }],
            },
        ];
        let s = Schedule::new(&a).unwrap();
        assert!(!s.allows(utc("2026-11-23T09:00:00Z"), 60), "the Monday is off");
        assert!(s.allows(utc("2026-11-30T09:00:00Z"), 60), "the next Monday is not");
        assert!(s.allows(utc("2026-11-28T14:00:00Z"), 60), "a Saturday made available");
    }

    #[test]
    fn slots_skip_busy_times_and_stay_in_range() {
        let s = Schedule::new(&availability("UTC", vec![rule(Weekday::Mon, "09:00", "12:00")])).unwrap();
        let busy = [(utc("2026-11-23T10:15:00Z"), utc("2026-11-23T10:45:00Z"))];
        let slots = s.slots(utc("2026-11-23T00:00:00Z"), utc("2026-11-24T00:00:00Z"), 60, &busy);
        let starts: Vec<i64> = slots.iter().map(|s| s.start_ms).collect();
        assert_eq!(starts, vec![utc("2026-11-23T09:00:00Z"), utc("2026-11-23T11:00:00Z")]);
        let later = s.slots(utc("2026-11-23T10:30:00Z"), utc("2026-11-24T00:00:00Z"), 30, &[]);
        assert_eq!(later.first().map(|s| s.start_ms), Some(utc("2026-11-23T10:30:00Z")));
    }

    #[test]
    fn a_window_may_end_at_midnight() {
        let s = Schedule::new(&availability("UTC", vec![rule(Weekday::Mon, "23:00", "24:00")])).unwrap();
        assert!(s.allows(utc("2026-11-23T23:00:00Z"), 60));
    }

    #[test]
    fn bad_input_is_refused_with_the_field_named() {
        let err = |a: Availability| Schedule::new(&a).unwrap_err();
        let e = err(availability("Mars/Olympus", vec![]));
        assert_eq!(e.code, ErrorCode::UnknownTimeZone);
        for (start, end) in
            [("9:00", "10:00"), ("09:60", "10:00"), ("24:30", "25:00"), ("10:00", "10:00"), ("11:00", "10:00")]
        {
            let e = err(availability("UTC", vec![rule(Weekday::Mon, start, end)]));
            assert_eq!(e.code, ErrorCode::InvalidField, "{start}-{end}");
            assert!(e.message.starts_with("weekly[0]"), "{}", e.message);
        }
        let e =
            err(availability("UTC", vec![rule(Weekday::Mon, "09:00", "12:00"), rule(Weekday::Mon, "11:00", "13:00")]));
        assert!(e.message.contains("overlap"), "{}", e.message);
        let mut a = availability("UTC", vec![]);
        a.session_lengths_min = vec![10];
        assert!(err(a.clone()).message.starts_with("session_lengths_min"));
        a.session_lengths_min = vec![];
        assert!(err(a.clone()).message.starts_with("session_lengths_min"));
        a.session_lengths_min = vec![30];
        a.exceptions = vec![DateException { date: "2026-02-30".into(), windows: vec![] }];
        assert!(err(a.clone()).message.starts_with("exceptions[0].date"));
        a.exceptions = vec![
            DateException { date: "2026-02-03".into(), windows: vec![] },
            DateException { date: "2026-02-03".into(), windows: vec![] },
        ];
        assert!(err(a).message.contains("twice"));
    }
}
