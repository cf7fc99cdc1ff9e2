//! Argument shapes and response builders of the standard methods: /get, /changes, /query,
//! /queryChanges, /set (RFC 8620 §5.1-5.6).

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::Call;
use crate::jmap::error::MethodError;
use crate::jmap::state::{CannotCalculate, Changes, DataType};

/// Most ids a /query returns when the client asks for more (or gives no limit).
pub const MAX_QUERY_LIMIT: usize = 1000;

/// Arguments -> typed struct; any mismatch (unknown argument, wrong type) is `invalidArguments`.
pub fn parse_args<T: DeserializeOwned>(args: Map<String, Value>) -> Result<T, MethodError> {
    serde_json::from_value(Value::Object(args))
        .map_err(|e| MethodError::invalid_arguments(e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetArgs {
    pub account_id: String,
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    pub properties: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangesArgs {
    pub account_id: String,
    pub since_state: String,
    #[serde(default)]
    pub max_changes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetArgs {
    pub account_id: String,
    #[serde(default)]
    pub if_in_state: Option<String>,
    #[serde(default)]
    pub create: Option<Map<String, Value>>,
    #[serde(default)]
    pub update: Option<Map<String, Value>>,
    #[serde(default)]
    pub destroy: Option<Vec<String>>,
}

impl SetArgs {
    pub fn count(&self) -> usize {
        self.create.as_ref().map_or(0, Map::len)
            + self.update.as_ref().map_or(0, Map::len)
            + self.destroy.as_ref().map_or(0, Vec::len)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Comparator {
    pub property: String,
    #[serde(default = "yes")]
    pub is_ascending: bool,
    #[serde(default)]
    pub collation: Option<String>,
    #[serde(default)]
    pub keyword: Option<String>,
}

fn yes() -> bool {
    true
}

/// /query paging arguments (each method's argument struct carries them: serde's `flatten`
/// does not combine with `deny_unknown_fields`).
#[derive(Debug, Clone, Default)]
pub struct Paging {
    pub position: i64,
    pub anchor: Option<String>,
    pub anchor_offset: i64,
    pub limit: Option<u64>,
    pub calculate_total: bool,
}

/// A FilterOperator tree over conditions `C`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter<C> {
    And(Vec<Filter<C>>),
    Or(Vec<Filter<C>>),
    Not(Vec<Filter<C>>),
    Cond(C),
}

/// Parses one FilterCondition object.
pub type CondParser<'a, C> = &'a dyn Fn(&Map<String, Value>) -> Result<C, MethodError>;

/// How big one filter may be (`maxFilterConditions`, `maxFilterDepth` of our limits
/// capability): matching costs conditions times messages, so the size is bounded up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterCaps {
    /// FilterConditions and FilterOperators together.
    pub max_conditions: usize,
    /// FilterOperators nested inside each other (a lone condition is 0 deep).
    pub max_depth: usize,
}

impl FilterCaps {
    /// `unsupportedFilter` (RFC 8620 §5.5: valid, but this server will not process it) naming
    /// the cap, when `value` is over one; walks at most `max_conditions + 1` nodes.
    fn check(&self, value: &Value) -> Result<(), MethodError> {
        let mut nodes = 0usize;
        // (node, its operator depth); an explicit stack, so hostile nesting cannot overflow ours.
        let mut todo = vec![(value, 0usize)];
        while let Some((node, depth)) = todo.pop() {
            let Value::Object(obj) = node else { continue };
            nodes += 1;
            if nodes > self.max_conditions {
                return Err(MethodError::unsupported_filter(format!(
                    "filter has more than {} conditions and operators (maxFilterConditions)",
                    self.max_conditions
                )));
            }
            if obj.contains_key("operator")
                && let Some(Value::Array(list)) = obj.get("conditions")
            {
                let depth = depth + 1;
                if depth > self.max_depth {
                    return Err(MethodError::unsupported_filter(format!(
                        "filter operators nested more than {} deep (maxFilterDepth)",
                        self.max_depth
                    )));
                }
                todo.extend(list.iter().map(|v| (v, depth)));
            }
        }
        Ok(())
    }
}

impl<C> Filter<C> {
    /// Parses a filter within `caps`.
    pub fn parse(
        value: &Value,
        cond: CondParser<'_, C>,
        caps: FilterCaps,
    ) -> Result<Self, MethodError> {
        caps.check(value)?;
        Self::parse_tree(value, cond)
    }

    fn parse_tree(value: &Value, cond: CondParser<'_, C>) -> Result<Self, MethodError> {
        let Value::Object(obj) = value else {
            return Err(MethodError::invalid_arguments("filter must be an object"));
        };
        let Some(op) = obj.get("operator") else {
            return cond(obj).map(Filter::Cond);
        };
        let conditions = match obj.get("conditions") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| Filter::parse_tree(v, cond))
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(MethodError::invalid_arguments(
                    "FilterOperator needs a conditions array",
                ));
            }
        };
        if obj.keys().any(|k| k != "operator" && k != "conditions") {
            return Err(MethodError::invalid_arguments(
                "unknown member in FilterOperator",
            ));
        }
        match op.as_str() {
            Some("AND") => Ok(Filter::And(conditions)),
            Some("OR") => Ok(Filter::Or(conditions)),
            Some("NOT") => Ok(Filter::Not(conditions)),
            _ => Err(MethodError::unsupported_filter(format!(
                "unknown operator {op}"
            ))),
        }
    }

    pub fn matches(&self, test: &dyn Fn(&C) -> bool) -> bool {
        match self {
            Filter::And(list) => list.iter().all(|f| f.matches(test)),
            Filter::Or(list) => list.iter().any(|f| f.matches(test)),
            Filter::Not(list) => !list.iter().any(|f| f.matches(test)),
            Filter::Cond(c) => test(c),
        }
    }
}

/// Requested properties, validated against `all`; `id` is always returned.
pub fn select_properties(
    requested: Option<Vec<String>>,
    all: &[&str],
    default: &[&str],
) -> Result<Vec<String>, MethodError> {
    let mut props: Vec<String> = match requested {
        None => default.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            if let Some(bad) = list.iter().find(|p| !all.contains(&p.as_str())) {
                return Err(MethodError::invalid_arguments(format!(
                    "unknown property {bad:?}"
                )));
            }
            list
        }
    };
    if !props.iter().any(|p| p == "id") {
        props.insert(0, "id".into());
    }
    Ok(props)
}

/// Keeps only `props` of a full object.
pub fn project(mut full: Map<String, Value>, props: &[String]) -> Value {
    let mut out = Map::with_capacity(props.len());
    for p in props {
        if let Some(v) = full.remove(p) {
            out.insert(p.clone(), v);
        }
    }
    Value::Object(out)
}

/// Ids to fetch: the requested ones (creation ids resolved) or all; enforces maxObjectsInGet.
pub fn get_ids(
    call: &Call<'_>,
    ids: Option<Vec<String>>,
    all: impl FnOnce() -> Vec<String>,
) -> Result<Vec<String>, MethodError> {
    let limit = call.ctx.limits.max_objects_in_get;
    let ids: Vec<String> = match ids {
        Some(ids) => {
            // RFC 8620 §5.1: an id asked for twice is answered once.
            let mut seen = std::collections::HashSet::new();
            ids.into_iter()
                .map(|id| call.resolve_id(&id).unwrap_or(id))
                .filter(|id| seen.insert(id.clone()))
                .collect()
        }
        None => all(),
    };
    if ids.len() > limit {
        return Err(MethodError::request_too_large(format!(
            "{} objects requested, at most {limit} per /get",
            ids.len()
        )));
    }
    Ok(ids)
}

pub fn get_response(
    account_id: &str,
    state: String,
    list: Vec<Value>,
    not_found: Vec<String>,
) -> Value {
    json!({"accountId": account_id, "state": state, "list": list, "notFound": not_found})
}

/// A standard /changes for a tracked type.
pub fn changes(
    call: &Call<'_>,
    args: Map<String, Value>,
    kind: DataType,
) -> Result<(Value, Changes), MethodError> {
    let args: ChangesArgs = parse_args(args)?;
    call.check_account(&args.account_id)?;
    let max = match args.max_changes {
        Some(0) => {
            return Err(MethodError::invalid_arguments(
                "maxChanges must be positive",
            ));
        }
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        None => None,
    };
    call.refresh();
    let c = call
        .tracker
        .changes(kind, &args.since_state, max)
        .map_err(|CannotCalculate| MethodError::cannot_calculate_changes())?;
    let value = json!({
        "accountId": call.account_id(),
        "oldState": c.old_state,
        "newState": c.new_state,
        "hasMoreChanges": c.has_more_changes,
        "created": c.created,
        "updated": c.updated,
        "destroyed": c.destroyed,
    });
    Ok((value, c))
}

/// /queryChanges: we keep no query history, which RFC 8620 §5.6 allows.
pub fn query_changes(call: &mut Call<'_>, args: Map<String, Value>) -> Result<Value, MethodError> {
    let account = args
        .get("accountId")
        .and_then(Value::as_str)
        .ok_or_else(|| MethodError::invalid_arguments("accountId is required"))?;
    call.check_account(account)?;
    Err(MethodError::cannot_calculate_changes())
}

/// Applies position/anchor/limit to sorted ids (RFC 8620 §5.5).
pub fn page(
    call: &Call<'_>,
    ids: Vec<String>,
    paging: &Paging,
    query_state: String,
) -> Result<Value, MethodError> {
    let total = ids.len();
    let start = match &paging.anchor {
        Some(anchor) => {
            let anchor = call.resolve_id(anchor).unwrap_or_else(|| anchor.clone());
            let index = ids
                .iter()
                .position(|id| *id == anchor)
                .ok_or_else(MethodError::anchor_not_found)?;
            let index = i64::try_from(index).unwrap_or(i64::MAX);
            usize::try_from(index.saturating_add(paging.anchor_offset).max(0)).unwrap_or(0)
        }
        None if paging.position < 0 => {
            let back = usize::try_from(paging.position.unsigned_abs()).unwrap_or(usize::MAX);
            total.saturating_sub(back)
        }
        None => usize::try_from(paging.position).unwrap_or(usize::MAX),
    };
    let requested = paging
        .limit
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let limit = requested.unwrap_or(MAX_QUERY_LIMIT).min(MAX_QUERY_LIMIT);
    let start = start.min(total);
    let page: Vec<String> = ids.into_iter().skip(start).take(limit).collect();
    let mut out = json!({
        "accountId": call.account_id(),
        "queryState": query_state,
        "canCalculateChanges": false,
        "position": start,
        "ids": page,
    });
    if paging.calculate_total {
        out["total"] = json!(total);
    }
    if requested.is_none_or(|r| r > MAX_QUERY_LIMIT) {
        out["limit"] = json!(limit);
    }
    Ok(out)
}

/// The /set response skeleton.
pub struct SetResponse {
    pub created: Map<String, Value>,
    pub updated: Map<String, Value>,
    pub destroyed: Vec<String>,
    pub not_created: Map<String, Value>,
    pub not_updated: Map<String, Value>,
    pub not_destroyed: Map<String, Value>,
}

impl SetResponse {
    pub fn new() -> Self {
        Self {
            created: Map::new(),
            updated: Map::new(),
            destroyed: Vec::new(),
            not_created: Map::new(),
            not_updated: Map::new(),
            not_destroyed: Map::new(),
        }
    }

    pub fn into_json(self, account_id: &str, old_state: String, new_state: String) -> Value {
        let opt = |m: Map<String, Value>| {
            if m.is_empty() {
                Value::Null
            } else {
                Value::Object(m)
            }
        };
        json!({
            "accountId": account_id,
            "oldState": old_state,
            "newState": new_state,
            "created": opt(self.created),
            "updated": opt(self.updated),
            "destroyed": if self.destroyed.is_empty() { Value::Null } else { json!(self.destroyed) },
            "notCreated": opt(self.not_created),
            "notUpdated": opt(self.not_updated),
            "notDestroyed": opt(self.not_destroyed),
        })
    }
}

/// Common /set preamble: account, maxObjectsInSet, ifInState.
pub fn check_set(
    call: &Call<'_>,
    account_id: &str,
    count: usize,
    if_in_state: Option<&str>,
    current: &str,
) -> Result<(), MethodError> {
    call.check_account(account_id)?;
    let limit = call.ctx.limits.max_objects_in_set;
    if count > limit {
        return Err(MethodError::request_too_large(format!(
            "{count} operations, at most {limit} per /set"
        )));
    }
    if let Some(expected) = if_in_state
        && expected != current
    {
        return Err(MethodError::state_mismatch());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match() {
        let cond = |m: &Map<String, Value>| -> Result<i64, MethodError> {
            m.get("n")
                .and_then(Value::as_i64)
                .ok_or_else(|| MethodError::unsupported_filter("n"))
        };
        let caps = FilterCaps {
            max_conditions: 10,
            max_depth: 3,
        };
        let f = Filter::parse(
            &json!({"operator": "AND", "conditions": [{"n": 1}, {"operator": "NOT", "conditions": [{"n": 2}]}]}),
            &cond,
            caps,
        )
        .unwrap();
        assert!(f.matches(&|c| *c == 1 || *c == 3));
        assert!(!f.matches(&|c| *c == 1 || *c == 2));
        assert!(Filter::parse(&json!({"operator": "XOR", "conditions": []}), &cond, caps).is_err());
        assert!(Filter::parse(&json!({"operator": "AND"}), &cond, caps).is_err());
        assert!(Filter::parse(&json!([1]), &cond, caps).is_err());
        assert_eq!(
            Filter::parse(&json!({"x": 1}), &cond, caps)
                .unwrap_err()
                .kind,
            "unsupportedFilter"
        );
    }

    #[test]
    fn filters_over_the_caps_are_unsupported() {
        let cond = |_: &Map<String, Value>| -> Result<(), MethodError> { Ok(()) };
        let caps = FilterCaps {
            max_conditions: 5,
            max_depth: 2,
        };
        let or = |list: Vec<Value>| json!({"operator": "OR", "conditions": list});
        // At the caps: 5 nodes (operators count), 2 operators deep.
        let at = or(vec![
            json!({"a": 1}),
            json!({"a": 2}),
            or(vec![json!({"a": 3})]),
        ]);
        assert!(Filter::parse(&at, &cond, caps).is_ok());
        let wide = or(vec![json!({"a": 1}); 5]);
        let e = Filter::parse(&wide, &cond, caps).unwrap_err();
        assert_eq!(e.kind, "unsupportedFilter");
        assert!(
            e.description
                .as_deref()
                .unwrap()
                .contains("maxFilterConditions"),
            "{e:?}"
        );
        let deep = or(vec![or(vec![or(vec![])])]);
        let e = Filter::parse(&deep, &cond, caps).unwrap_err();
        assert_eq!(e.kind, "unsupportedFilter");
        assert!(
            e.description.as_deref().unwrap().contains("maxFilterDepth"),
            "{e:?}"
        );
    }

    #[test]
    fn properties_always_include_id() {
        let p = select_properties(Some(vec!["name".into()]), &["id", "name"], &["id"]).unwrap();
        assert_eq!(p, vec!["id", "name"]);
        assert!(select_properties(Some(vec!["bogus".into()]), &["id"], &["id"]).is_err());
    }
}
