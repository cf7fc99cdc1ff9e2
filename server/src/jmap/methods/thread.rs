//! Thread/get, Thread/changes (RFC 8621 §3). Threads group emails by the root Message-ID
//! (first `References` entry, else `In-Reply-To`, else their own Message-ID).

use serde_json::{Map, Value, json};

use super::{Call, GetArgs, changes as std_changes, get_ids, get_response, parse_args};
use super::{project, select_properties};
use crate::jmap::error::MethodError;
use crate::jmap::state::DataType;

const PROPERTIES: [&str; 2] = ["id", "emailIds"];

pub fn get(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: GetArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    let props = select_properties(args.properties, &PROPERTIES, &PROPERTIES)?;
    let (snap, states) = call.refresh();
    let ids = get_ids(call, args.ids, || snap.threads.keys().cloned().collect())?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        match snap.threads.get(&id) {
            Some(emails) => {
                let full = json!({"id": id, "emailIds": emails});
                let Value::Object(full) = full else { continue };
                list.push(project(full, &props));
            }
            None => not_found.push(id),
        }
    }
    Ok(get_response(
        call.account_id(),
        call.state(states.thread),
        list,
        not_found,
    ))
}

pub fn changes(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    std_changes(call, args, DataType::Thread).map(|(v, _)| v)
}
