//! Scripted touch source (placeholder, filled in shortly).
