//! Device API v1 JSON bodies.
