//! In-memory display sink (placeholder, filled in shortly).
