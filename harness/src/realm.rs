//! Realm description (placeholder until implemented).
