//! Core/echo (RFC 8620 §4).

use serde_json::{Map, Value};

pub fn echo(args: Map<String, Value>) -> Value {
    Value::Object(args)
}
