//! Small protocol clients for tests (placeholder until implemented).
