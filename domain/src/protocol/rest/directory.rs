//! Consultant profiles, the directory and promotions.
