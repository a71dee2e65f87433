//! Availability, bookable slots and scheduled sessions (DESIGN.md §3).
