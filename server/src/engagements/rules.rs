//! The checks of the escrow area's request bodies (E1, E3–E5): sizes,
//! texts, currencies and links. Pure: no IO.

use parley_domain::protocol::ErrorCode;
use parley_domain::protocol::rest::{
    CreateEngagement, MAX_ENGAGEMENT_TEXT, MAX_LINKS, MAX_MILESTONES, MAX_PACKAGE_SESSIONS,
};
use parley_domain::{Currency, Money};

use crate::kernel::ApiError;

/// The most one engagement may hold, in minor units (EUR 100 000.00).
pub const MAX_ENGAGEMENT_MINOR: i64 = 10_000_000;

/// The longest package session, minutes.
pub const MAX_SESSION_MINUTES: u32 = 240;

fn invalid(m: String) -> ApiError {
    ApiError::BadRequest(ErrorCode::InvalidField, m)
}

/// `field`: 1–[`MAX_ENGAGEMENT_TEXT`] characters, not only white space; trimmed.
pub fn text(field: &str, value: &str) -> Result<String, ApiError> {
    let t = value.trim();
    if t.is_empty() || t.chars().count() > MAX_ENGAGEMENT_TEXT {
        return Err(invalid(format!("{field}: 1 to {MAX_ENGAGEMENT_TEXT} characters")));
    }
    Ok(t.to_owned())
}

/// Submission links: at most [`MAX_LINKS`], each an `http(s)` URL of at
/// most 2000 characters.
pub fn links(links: &[String]) -> Result<Vec<String>, ApiError> {
    if links.len() > MAX_LINKS {
        return Err(invalid(format!("links: at most {MAX_LINKS}")));
    }
    links
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let rest = l.strip_prefix("https://").or_else(|| l.strip_prefix("http://")).unwrap_or("");
            if rest.is_empty() || l.len() > 2000 || l.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(format!("links[{i}]: an http(s) URL")));
            }
            Ok(l.clone())
        })
        .collect()
}

/// An amount of an engagement: in an accepted currency, 1 or more.
fn amount(field: &str, m: Money, accepted: &[Currency]) -> Result<(), ApiError> {
    if !accepted.contains(&m.currency) {
        return Err(ApiError::BadRequest(
            ErrorCode::UnsupportedCurrency,
            format!("{field}.currency: {} is not accepted here", m.currency),
        ));
    }
    if m.amount_minor <= 0 {
        return Err(invalid(format!("{field}.amount_minor: at least 1")));
    }
    Ok(())
}

/// The terms of `POST /v1/engagements`, checked: exactly one of `package`
/// and `milestones`; 1–[`MAX_PACKAGE_SESSIONS`] sessions of
/// 1–[`MAX_SESSION_MINUTES`] minutes, or 1–[`MAX_MILESTONES`] milestones in
/// one currency; every amount at least 1 in an accepted currency; a total of
/// at most [`MAX_ENGAGEMENT_MINOR`]. 400 `invalid_field` /
/// `unsupported_currency` / `missing_field`.
pub fn terms(req: &CreateEngagement, accepted: &[Currency]) -> Result<parley_billing::Terms, ApiError> {
    let terms = match (&req.package, &req.milestones) {
        (Some(p), None) => {
            if p.sessions == 0 || p.sessions > MAX_PACKAGE_SESSIONS {
                return Err(invalid(format!("package.sessions: 1 to {MAX_PACKAGE_SESSIONS}")));
            }
            if p.minutes == 0 || p.minutes > MAX_SESSION_MINUTES {
                return Err(invalid(format!("package.minutes: 1 to {MAX_SESSION_MINUTES}")));
            }
            amount("package.price", p.price, accepted)?;
            parley_billing::Terms::Package { sessions: p.sessions, minutes: p.minutes, price: p.price }
        }
        (None, Some(items)) => {
            if items.is_empty() || items.len() > MAX_MILESTONES {
                return Err(invalid(format!("milestones: 1 to {MAX_MILESTONES}")));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, m) in items.iter().enumerate() {
                amount(&format!("milestones[{i}].amount"), m.amount, accepted)?;
                if m.amount.currency != items[0].amount.currency {
                    return Err(invalid(format!("milestones[{i}].amount.currency: every milestone in one currency")));
                }
                out.push((text(&format!("milestones[{i}].description"), &m.description)?, m.amount));
            }
            parley_billing::Terms::Milestones(out)
        }
        (Some(_), Some(_)) => return Err(invalid("package, milestones: give one of them, not both".into())),
        (None, None) => {
            return Err(ApiError::BadRequest(ErrorCode::MissingField, "package or milestones: give one".into()));
        }
    };
    let total = terms.total().map_err(|_| invalid("the engagement's total is too large".into()))?;
    if total.amount_minor > MAX_ENGAGEMENT_MINOR {
        return Err(invalid(format!("the engagement's total: at most {MAX_ENGAGEMENT_MINOR} minor units")));
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use parley_domain::protocol::rest::{MilestoneTerms, PackageTerms};
    use parley_domain::{Currency, Money, UserId};

    use super::*;

    fn eur(m: i64) -> Money {
        Money::new(m, Currency::parse("EUR").unwrap())
    }

    fn req(package: Option<PackageTerms>, milestones: Option<Vec<MilestoneTerms>>) -> CreateEngagement {
        CreateEngagement {
            consultant_id: UserId::parse("c").unwrap(),
            title: "t".into(),
            package,
            milestones,
            payment_method: "pm_card_visa".into(),
        }
    }

    #[test]
    fn terms_need_exactly_one_kind_one_currency_and_positive_amounts() {
        let accepted = [Currency::parse("EUR").unwrap()];
        let ms = |a: i64, c: &str| MilestoneTerms {
            description: "d".into(),
            amount: Money::new(a, Currency::parse(c).unwrap()),
        };
        let pkg = PackageTerms { sessions: 3, minutes: 60, price: eur(5000) };
        let total = terms(&req(Some(pkg), None), &accepted).unwrap().total().unwrap();
        assert_eq!(total, eur(15000));
        assert!(terms(&req(None, None), &accepted).is_err());
        assert!(terms(&req(Some(pkg), Some(vec![ms(1, "EUR")])), &accepted).is_err());
        assert!(terms(&req(None, Some(vec![ms(0, "EUR")])), &accepted).is_err());
        assert!(terms(&req(None, Some(vec![ms(1, "USD")])), &accepted).is_err());
        assert!(terms(&req(None, Some(vec![])), &accepted).is_err());
        assert!(terms(&req(Some(PackageTerms { sessions: 0, ..pkg }), None), &accepted).is_err());
        let two = terms(&req(None, Some(vec![ms(100, "EUR"), ms(250, "EUR")])), &accepted).unwrap();
        assert_eq!(two.total().unwrap(), eur(350));
    }

    #[test]
    fn links_are_http_urls() {
        assert!(links(&["https://example.com/pr/1".into()]).is_ok());
        assert!(links(&["javascript:alert(1)".into()]).is_err());
        assert!(links(&vec!["https://e.com".to_owned(); MAX_LINKS + 1]).is_err());
    }
}
