//! Reviews, reputation and consultant metrics.
