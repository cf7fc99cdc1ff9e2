//! The test stack (placeholder until implemented).
