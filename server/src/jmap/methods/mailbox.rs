//! Mailbox/get, /changes, /query, /set (RFC 8621 §2). The store has no rename or delete, so
//! /set creates only.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Call, Comparator, Filter, GetArgs, Paging, SetResponse};
use super::{changes as std_changes, check_set, get_ids, get_response, page, parse_args};
use super::{project, select_properties};
use crate::jmap::error::{MethodError, SetError};
use crate::jmap::state::DataType;
use crate::jmap::view::{MailboxView, Snapshot};
use crate::store::{DELIMITER, StoreError};

const PROPERTIES: [&str; 11] = [
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
    "isSubscribed",
];

const COUNTS: [&str; 4] = [
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
];

pub fn to_json(m: &MailboxView) -> Map<String, Value> {
    let obj = json!({
        "id": m.id,
        "name": m.display_name,
        "parentId": m.parent_id,
        "role": m.role,
        "sortOrder": m.sort_order,
        "totalEmails": m.total_emails,
        "unreadEmails": m.unread_emails,
        "totalThreads": m.total_threads,
        "unreadThreads": m.unread_threads,
        "myRights": {
            "mayReadItems": true, "mayAddItems": true, "mayRemoveItems": true,
            "maySetSeen": true, "maySetKeywords": true, "mayCreateChild": true,
            "mayRename": false, "mayDelete": false, "maySubmit": true
        },
        "isSubscribed": true,
    });
    match obj {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub fn get(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: GetArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    let props = select_properties(args.properties, &PROPERTIES, &PROPERTIES)?;
    let (snap, states) = call.refresh();
    let ids = get_ids(call, args.ids, || {
        snap.mailboxes.iter().map(|m| m.id.clone()).collect()
    })?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        match snap.mailbox(&id) {
            Some(m) => list.push(project(to_json(m), &props)),
            None => not_found.push(id),
        }
    }
    Ok(get_response(
        call.account_id(),
        call.state(states.mailbox),
        list,
        not_found,
    ))
}

pub fn changes(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let (mut value, c) = std_changes(call, args, DataType::Mailbox)?;
    value["updatedProperties"] = if c.counts_only && !c.updated.is_empty() {
        json!(COUNTS)
    } else {
        Value::Null
    };
    Ok(value)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QueryArgs {
    account_id: String,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    sort: Option<Vec<Comparator>>,
    #[serde(default)]
    position: i64,
    #[serde(default)]
    anchor: Option<String>,
    #[serde(default)]
    anchor_offset: i64,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    calculate_total: bool,
    #[serde(default)]
    sort_as_tree: bool,
    #[serde(default)]
    filter_as_tree: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    ParentId(Option<String>),
    Name(String),
    Role(Option<String>),
    HasAnyRole(bool),
    IsSubscribed(bool),
}

fn parse_cond(m: &Map<String, Value>) -> Result<Vec<Cond>, MethodError> {
    let mut out = Vec::new();
    for (k, v) in m {
        let bad = || MethodError::invalid_arguments(format!("bad value for filter {k:?}"));
        let c = match k.as_str() {
            "parentId" => Cond::ParentId(match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                _ => return Err(bad()),
            }),
            "name" => Cond::Name(v.as_str().ok_or_else(bad)?.to_lowercase()),
            "role" => Cond::Role(match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                _ => return Err(bad()),
            }),
            "hasAnyRole" => Cond::HasAnyRole(v.as_bool().ok_or_else(bad)?),
            "isSubscribed" => Cond::IsSubscribed(v.as_bool().ok_or_else(bad)?),
            other => {
                return Err(MethodError::unsupported_filter(format!(
                    "unknown Mailbox filter {other:?}"
                )));
            }
        };
        out.push(c);
    }
    Ok(out)
}

fn cond_matches(m: &MailboxView, conds: &[Cond]) -> bool {
    conds.iter().all(|c| match c {
        Cond::ParentId(p) => m.parent_id == *p,
        Cond::Name(n) => m.display_name.to_lowercase().contains(n.as_str()),
        Cond::Role(r) => m.role.map(str::to_string) == *r,
        Cond::HasAnyRole(b) => m.role.is_some() == *b,
        Cond::IsSubscribed(b) => *b,
    })
}

pub fn query(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: QueryArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    let filter = args
        .filter
        .as_ref()
        .map(|f| Filter::parse(f, &parse_cond, call.filter_caps()))
        .transpose()?;
    let (snap, states) = call.refresh();
    let mut list: Vec<&MailboxView> = snap
        .mailboxes
        .iter()
        .filter(|m| {
            filter
                .as_ref()
                .is_none_or(|f| f.matches(&|c| cond_matches(m, c)))
        })
        .collect();
    let sort = args.sort.unwrap_or_default();
    for c in &sort {
        if !matches!(c.property.as_str(), "name" | "sortOrder") {
            return Err(MethodError::unsupported_sort(format!(
                "cannot sort mailboxes by {:?}",
                c.property
            )));
        }
    }
    list.sort_by(|a, b| {
        for c in &sort {
            let ord = match c.property.as_str() {
                "sortOrder" => a.sort_order.cmp(&b.sort_order),
                _ => a
                    .display_name
                    .to_lowercase()
                    .cmp(&b.display_name.to_lowercase()),
            };
            let ord = if c.is_ascending { ord } else { ord.reverse() };
            if ord.is_ne() {
                return ord;
            }
        }
        a.name.cmp(&b.name)
    });
    if args.sort_as_tree || args.filter_as_tree {
        list = as_tree(&snap, list, args.filter_as_tree);
    }
    let ids = list.into_iter().map(|m| m.id.clone()).collect();
    let paging = Paging {
        position: args.position,
        anchor: args.anchor,
        anchor_offset: args.anchor_offset,
        limit: args.limit,
        calculate_total: args.calculate_total,
    };
    page(call, ids, &paging, call.state(states.mailbox))
}

/// Parents before children, siblings in the given order; with `filter_as_tree`, a mailbox
/// whose parent was filtered out is dropped too.
fn as_tree<'a>(
    snap: &'a Snapshot,
    list: Vec<&'a MailboxView>,
    drop_orphans: bool,
) -> Vec<&'a MailboxView> {
    let present: std::collections::HashSet<&str> = list.iter().map(|m| m.id.as_str()).collect();
    let mut out = Vec::with_capacity(list.len());
    fn visit<'a>(parent: Option<&str>, list: &[&'a MailboxView], out: &mut Vec<&'a MailboxView>) {
        for m in list.iter().filter(|m| m.parent_id.as_deref() == parent) {
            out.push(m);
            visit(Some(&m.id), list, out);
        }
    }
    // Roots: no parent, or (without filter_as_tree) a parent not in the result.
    let roots: Vec<&MailboxView> = list
        .iter()
        .copied()
        .filter(|m| match &m.parent_id {
            None => true,
            Some(p) => !drop_orphans && !present.contains(p.as_str()) && snap.mailbox(p).is_some(),
        })
        .collect();
    for r in roots {
        out.push(r);
        visit(Some(&r.id), &list, &mut out);
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MailboxSetArgs {
    account_id: String,
    #[serde(default)]
    if_in_state: Option<String>,
    #[serde(default)]
    create: Option<Map<String, Value>>,
    #[serde(default)]
    update: Option<Map<String, Value>>,
    #[serde(default)]
    destroy: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    on_destroy_remove_emails: bool,
}

pub fn set(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let args: MailboxSetArgs = parse_args(args)?;
    let (snap, states) = call.refresh();
    let old_state = call.state(states.mailbox);
    let count = args.create.as_ref().map_or(0, Map::len)
        + args.update.as_ref().map_or(0, Map::len)
        + args.destroy.as_ref().map_or(0, Vec::len);
    check_set(
        call,
        &args.account_id,
        count,
        args.if_in_state.as_deref(),
        &old_state,
    )?;
    let mut res = SetResponse::new();
    let mut snap = snap;
    for (cid, obj) in args.create.unwrap_or_default() {
        match create_one(call, &snap, &obj) {
            Ok(name) => {
                let (fresh, _) = call.refresh();
                snap = fresh;
                match snap.mailboxes.iter().find(|m| m.name == name) {
                    Some(m) => {
                        call.created_ids.insert(cid.clone(), m.id.clone());
                        res.created.insert(
                            cid,
                            json!({
                                "id": m.id, "role": m.role, "sortOrder": m.sort_order,
                                "totalEmails": 0, "unreadEmails": 0, "totalThreads": 0,
                                "unreadThreads": 0, "myRights": to_json(m)["myRights"],
                                "isSubscribed": true,
                            }),
                        );
                    }
                    None => {
                        res.not_created.insert(
                            cid,
                            SetError::new("serverFail", "mailbox vanished after creation")
                                .to_json(),
                        );
                    }
                }
            }
            Err(e) => {
                res.not_created.insert(cid, e.to_json());
            }
        }
    }
    for (id, patch) in args.update.unwrap_or_default() {
        let id = call.resolve_id(&id).unwrap_or(id);
        let err = match snap.mailbox(&id) {
            None => SetError::not_found(),
            Some(_) => match patch.as_object() {
                // Everything is always subscribed; saying so again changes nothing.
                Some(p)
                    if p.iter()
                        .all(|(k, v)| k == "isSubscribed" && *v == json!(true)) =>
                {
                    res.updated.insert(id, Value::Null);
                    continue;
                }
                _ => SetError::forbidden("mailboxes cannot be renamed or moved here"),
            },
        };
        res.not_updated.insert(id, err.to_json());
    }
    for id in args.destroy.unwrap_or_default() {
        let id = call.resolve_id(&id).unwrap_or(id);
        let err = match snap.mailbox(&id) {
            None => SetError::not_found(),
            Some(_) => SetError::forbidden("mailboxes cannot be deleted here"),
        };
        res.not_destroyed.insert(id, err.to_json());
    }
    let (_, states) = call.refresh();
    Ok(res.into_json(call.account_id(), old_state, call.state(states.mailbox)))
}

/// Creates one mailbox; its full store name on success.
fn create_one(call: &Call<'_>, snap: &Snapshot, obj: &Value) -> Result<String, SetError> {
    let Some(obj) = obj.as_object() else {
        return Err(SetError::invalid_properties(&[], "not an object"));
    };
    for (k, v) in obj {
        let ok = match k.as_str() {
            "name" | "parentId" => true,
            "role" => v.is_null(),
            "isSubscribed" => v.is_boolean(),
            "sortOrder" => v.is_u64(),
            _ => false,
        };
        if !ok {
            return Err(SetError::invalid_properties(
                &[k.as_str()],
                format!("{k:?} cannot be set"),
            ));
        }
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && !n.contains(DELIMITER))
        .ok_or_else(|| {
            SetError::invalid_properties(&["name"], "name must be a non-empty string without '/'")
        })?;
    let full = match obj.get("parentId") {
        None | Some(Value::Null) => name.to_string(),
        Some(Value::String(pid)) => {
            let pid = call.resolve_id(pid).unwrap_or_else(|| pid.clone());
            let parent = snap
                .mailbox(&pid)
                .ok_or_else(|| SetError::invalid_properties(&["parentId"], "no such parent"))?;
            format!("{}{DELIMITER}{name}", parent.name)
        }
        Some(_) => return Err(SetError::invalid_properties(&["parentId"], "must be an id")),
    };
    match call.store().create_mailbox(call.user(), &full) {
        Ok(()) => Ok(full),
        Err(StoreError::MailboxExists(_)) => Err(SetError::invalid_properties(
            &["name"],
            "a mailbox with this name already exists",
        )),
        Err(StoreError::InvalidName(_)) => {
            Err(SetError::invalid_properties(&["name"], "invalid name"))
        }
        Err(e) => Err(SetError::new("serverFail", e.to_string())),
    }
}
