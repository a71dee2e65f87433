//! The rules of a consultant profile (docs/rules.md "Profiles and
//! directory"), pure: field limits and normalisation (language codes,
//! tags) and the rating shown from reviews.

use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::{ConsultantRating, ProfileUpdate};

use crate::kernel::ApiError;

/// Longest display name, bytes.
pub const MAX_DISPLAY_NAME: usize = 100;
/// Longest headline, bytes.
pub const MAX_HEADLINE: usize = 160;
/// Longest bio, bytes.
pub const MAX_BIO: usize = 5000;
/// Most tags.
pub const MAX_TAGS: usize = 20;
/// Longest tag, bytes.
pub const MAX_TAG: usize = 40;
/// Most languages.
pub const MAX_LANGUAGES: usize = 20;
/// Most session lengths.
pub const MAX_SESSION_LENGTHS: usize = 6;
/// Shortest and longest session length offered, minutes.
pub const SESSION_MINUTES: std::ops::RangeInclusive<u32> = 15..=240;

/// A rating from `count` reviews whose stars add up to `stars_sum`.
pub fn rating(count: i64, stars_sum: i64) -> ConsultantRating {
    let count = u64::try_from(count).unwrap_or(0);
    let sum = u64::try_from(stars_sum).unwrap_or(0);
    ConsultantRating {
        count,
        mean: (count > 0).then(|| sum as f64 / count as f64),
        score: parley_domain::reputation::bayesian_average(count, sum),
    }
}

/// A language code normalised (`pt-br` → `pt-BR`), or `None` if it is not
/// a 2–3 letter language with an optional 4-letter script and an optional
/// 2-letter or 3-digit region.
pub fn language_code(raw: &str) -> Option<String> {
    let mut parts = raw.trim().split('-');
    let lang = parts.next()?;
    if !(2..=3).contains(&lang.len()) || !lang.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let mut out = lang.to_ascii_lowercase();
    let mut next = parts.next();
    if let Some(script) = next.filter(|s| s.len() == 4 && s.bytes().all(|b| b.is_ascii_alphabetic())) {
        out.push('-');
        out.push_str(&script[..1].to_ascii_uppercase());
        out.push_str(&script[1..].to_ascii_lowercase());
        next = parts.next();
    }
    if let Some(region) = next {
        let letters = region.len() == 2 && region.bytes().all(|b| b.is_ascii_alphabetic());
        let digits = region.len() == 3 && region.bytes().all(|b| b.is_ascii_digit());
        if !(letters || digits) {
            return None;
        }
        out.push('-');
        out.push_str(&region.to_ascii_uppercase());
    }
    parts.next().is_none().then_some(out)
}

/// A tag normalised (trimmed, lower-case), or why not.
pub fn tag(raw: &str) -> Result<String, String> {
    let t = raw.trim().to_lowercase();
    if t.is_empty() || t.len() > MAX_TAG {
        return Err(format!("each tag is 1-{MAX_TAG} bytes; {raw:?} is not"));
    }
    if t.chars().any(char::is_control) {
        return Err(format!("{raw:?} contains a control character"));
    }
    Ok(t)
}

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(ErrorCode::InvalidField, format!("{field}: {why}"))
}

pub(crate) fn one_line(field: &str, value: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.len() < min || v.len() > max {
        return Err(invalid(field, format!("{min}-{max} bytes (got {})", v.len())));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(field, "no control characters (line breaks, tabs, …)"));
    }
    Ok(v.to_owned())
}

/// `u` checked and normalised.
pub(crate) fn validate(u: ProfileUpdate) -> Result<ProfileUpdate, ApiError> {
    let display_name = one_line("display_name", &u.display_name, 1, MAX_DISPLAY_NAME)?;
    let headline = one_line("headline", &u.headline, 0, MAX_HEADLINE)?;
    let bio = u.bio.trim().to_owned();
    if bio.len() > MAX_BIO {
        return Err(invalid("bio", format!("at most {MAX_BIO} bytes (got {})", bio.len())));
    }
    if bio.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err(invalid("bio", "no control characters other than line breaks and tabs"));
    }
    if u.tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS} (got {})", u.tags.len())));
    }
    let mut tags: Vec<String> = Vec::with_capacity(u.tags.len());
    for raw in &u.tags {
        let t = tag(raw).map_err(|why| invalid("tags", why))?;
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if u.languages.len() > MAX_LANGUAGES {
        return Err(invalid("languages", format!("at most {MAX_LANGUAGES} (got {})", u.languages.len())));
    }
    let mut languages: Vec<String> = Vec::with_capacity(u.languages.len());
    for raw in &u.languages {
        let Some(l) = language_code(raw) else {
            return Err(invalid("languages", format!("{raw:?} is not a language code such as en, fr or pt-BR")));
        };
        if !languages.contains(&l) {
            languages.push(l);
        }
    }
    let time_zone: chrono_tz::Tz = u.time_zone.trim().parse().map_err(|_| {
        ApiError::BadRequest(
            ErrorCode::UnknownTimeZone,
            format!("time_zone: {:?} is not an IANA time zone such as Europe/Berlin", u.time_zone),
        )
    })?;
    let mut session_minutes = u.session_minutes;
    if session_minutes.is_empty() || session_minutes.len() > MAX_SESSION_LENGTHS {
        return Err(invalid(
            "session_minutes",
            format!("1-{MAX_SESSION_LENGTHS} lengths (got {})", session_minutes.len()),
        ));
    }
    if let Some(bad) = session_minutes.iter().find(|m| !SESSION_MINUTES.contains(m)) {
        return Err(invalid(
            "session_minutes",
            format!("each length is {}-{} minutes; {bad} is not", SESSION_MINUTES.start(), SESSION_MINUTES.end()),
        ));
    }
    session_minutes.sort_unstable();
    session_minutes.dedup();
    Ok(ProfileUpdate {
        display_name,
        headline,
        bio,
        tags,
        languages,
        time_zone: time_zone.name().to_owned(),
        session_minutes,
    })
}

/// Stores `p` (validated) as `consultant`'s profile: the row, its tags and
/// languages, in one transaction (the search index follows in it).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_are_checked_and_normalised() {
        assert_eq!(language_code("en").as_deref(), Some("en"));
        assert_eq!(language_code("pt-br").as_deref(), Some("pt-BR"));
        assert_eq!(language_code("ZH-hant-tw").as_deref(), Some("zh-Hant-TW"));
        assert_eq!(language_code("es-419").as_deref(), Some("es-419"));
        for bad in ["", "e", "english", "en-", "en-USA", "en_US", "en-US-x", "1a", "en-12"] {
            assert_eq!(language_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_sql_score_and_the_rating_agree() {
        let r = rating(4, 18);
        assert_eq!(r.mean, Some(4.5));
        assert!((r.score - (17.5 + 18.0) / 9.0).abs() < 1e-12);
        assert_eq!(rating(0, 0).mean, None);
    }
}
