//! Email/get, /changes, /query, /set, /import (RFC 8621 §4).

mod body;
mod get;
mod query;
mod set;

pub use get::{get, utc_date};
pub use query::query;
pub use set::{import, set};

use serde_json::{Map, Value};

use super::{Call, changes as std_changes};
use crate::jmap::error::MethodError;
use crate::jmap::state::DataType;
use crate::jmap::view::{EmailView, parse_message};

pub fn changes(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    std_changes(call, args, DataType::Email).map(|(v, _)| v)
}

/// The decoded bytes and media type of one MIME part (part blob downloads).
pub fn email_part_blob(e: &EmailView, part: u32) -> Option<(Vec<u8>, String)> {
    let msg = parse_message(e.meta.data.as_slice())?;
    let p = msg.parts.get(part as usize)?;
    let data = body::part_bytes(&msg, part)?;
    Some((data, body::part_type(p)))
}
