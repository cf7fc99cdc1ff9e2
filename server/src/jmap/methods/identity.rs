//! Identity/get, /changes, /set (RFC 8621 §6): exactly one identity, the user's own address,
//! which never changes.

use serde_json::{Map, Value, json};

use super::{Call, ChangesArgs, GetArgs, SetArgs, SetResponse, get_ids, get_response};
use super::{check_set, parse_args, project, select_properties};
use crate::jmap::error::{MethodError, SetError};
use crate::jmap::ids;

const PROPERTIES: [&str; 8] = [
    "id",
    "name",
    "email",
    "replyTo",
    "bcc",
    "textSignature",
    "htmlSignature",
    "mayDelete",
];

/// Identities never change: one fixed state.
const STATE: &str = "i0";

pub fn identity(user: &str) -> Map<String, Value> {
    let v = json!({
        "id": ids::identity_id(user),
        "name": "",
        "email": user,
        "replyTo": null,
        "bcc": null,
        "textSignature": "",
        "htmlSignature": "",
        "mayDelete": false,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub fn get(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: GetArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    let props = select_properties(args.properties, &PROPERTIES, &PROPERTIES)?;
    let own = ids::identity_id(call.user());
    let ids = get_ids(call, args.ids, || vec![own.clone()])?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        if id == own {
            list.push(project(identity(call.user()), &props));
        } else {
            not_found.push(id);
        }
    }
    Ok(get_response(
        call.account_id(),
        STATE.into(),
        list,
        not_found,
    ))
}

pub fn changes(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: ChangesArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    if args.since_state != STATE {
        return Err(MethodError::cannot_calculate_changes());
    }
    Ok(json!({
        "accountId": call.account_id(), "oldState": STATE, "newState": STATE,
        "hasMoreChanges": false, "created": [], "updated": [], "destroyed": [],
    }))
}

pub fn set(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: SetArgs = parse_args(args)?;
    check_set(
        call,
        &args.account_id,
        args.count(),
        args.if_in_state.as_deref(),
        STATE,
    )?;
    let mut res = SetResponse::new();
    let no = || SetError::forbidden("identities are managed by the directory").to_json();
    for cid in args.create.unwrap_or_default().keys() {
        res.not_created.insert(cid.clone(), no());
    }
    for id in args.update.unwrap_or_default().keys() {
        res.not_updated.insert(id.clone(), no());
    }
    for id in args.destroy.unwrap_or_default() {
        res.not_destroyed.insert(id, no());
    }
    Ok(res.into_json(call.account_id(), STATE.into(), STATE.into()))
}
