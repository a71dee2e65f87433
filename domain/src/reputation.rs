//! A consultant's reputation: the Bayesian average of their review stars.
//!
//! With few reviews a plain mean is noise (one 5-star review would rank
//! above a hundred 4.9s), so every consultant starts with
//! [`PRIOR_WEIGHT`] imaginary reviews of [`PRIOR_MEAN`] stars:
//!
//! `score = (PRIOR_WEIGHT × PRIOR_MEAN + Σ stars) / (PRIOR_WEIGHT + n)`
//!
//! The prior is fixed (not the platform's live mean) so a score does not
//! move when other consultants are reviewed, and tests can compute it.

/// The prior's mean, in stars (1–5).
pub const PRIOR_MEAN: f64 = 3.5;

/// How many reviews the prior is worth.
pub const PRIOR_WEIGHT: f64 = 5.0;

/// The Bayesian average of `count` reviews whose stars add up to
/// `stars_sum` (each 1–5), in stars; [`PRIOR_MEAN`] with no reviews.
pub fn bayesian_average(count: u64, stars_sum: u64) -> f64 {
    (PRIOR_WEIGHT * PRIOR_MEAN + stars_sum as f64) / (PRIOR_WEIGHT + count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_reviews_is_the_prior() {
        assert_eq!(bayesian_average(0, 0), PRIOR_MEAN);
    }

    #[test]
    fn many_good_reviews_outrank_one_perfect_one() {
        let one_perfect = bayesian_average(1, 5);
        let hundred_good = bayesian_average(100, 490);
        assert!(hundred_good > one_perfect, "{hundred_good} vs {one_perfect}");
        assert!((one_perfect - 3.75).abs() < 1e-9);
    }

    #[test]
    fn the_score_tends_to_the_mean() {
        let s = bayesian_average(10_000, 10_000 * 2);
        assert!((s - 2.0).abs() < 0.01, "{s}");
    }
}
