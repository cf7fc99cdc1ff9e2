//! The size of a request before it is built. A parsed JSON tree is many times larger than its
//! text (`{"a":1}` is 7 bytes of text and a ~700-byte `BTreeMap` node), so the byte limit alone
//! lets a 2 MB request cost the server 100 MB. [`measure`] walks the text once without
//! allocating, counting values and nesting and estimating the tree's size, and stops at the
//! first value over the limits; only then is the request parsed for real.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Limits;
use super::error::RequestError;

/// What measuring found: enough to reserve memory for the parsed tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub values: usize,
    /// Estimated heap bytes of the `serde_json::Value` tree (an estimate, not a measurement).
    pub estimated_bytes: usize,
}

/// One `Value` in a `Vec` or a map node, plus the slack a growing `Vec` keeps.
const VALUE_BYTES: usize = 2 * std::mem::size_of::<serde_json::Value>();
/// One `BTreeMap` node: up to 11 keys (`String`) and values (`Value`), plus its header.
const MAP_NODE_BYTES: usize = 11 * (24 + 32) + 64;
const MAP_NODE_KEYS: usize = 11;

struct Meter {
    max_values: usize,
    max_depth: usize,
    values: usize,
    depth: usize,
    bytes: usize,
    /// Set when a limit stopped the walk (the serde error then only carries a message).
    over: Option<RequestError>,
}

impl Meter {
    fn value<E: de::Error>(&mut self, heap: usize) -> Result<(), E> {
        self.values += 1;
        if self.values > self.max_values {
            self.over = Some(RequestError::Limit {
                limit: "maxValuesInRequest",
                detail: format!("more than {} JSON values", self.max_values),
            });
            return Err(E::custom("too many values"));
        }
        self.bytes = self.bytes.saturating_add(VALUE_BYTES + heap);
        Ok(())
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.value(0)?;
        self.depth += 1;
        if self.depth > self.max_depth {
            self.over = Some(RequestError::Limit {
                limit: "maxDepthInRequest",
                detail: format!(
                    "arrays and objects nested more than {} deep",
                    self.max_depth
                ),
            });
            return Err(E::custom("nested too deep"));
        }
        Ok(())
    }
}

/// Counts `body` against `limits`: `notJSON` if it is not JSON, the `limit` error naming
/// `maxValuesInRequest` or `maxDepthInRequest` if it is too big once parsed.
pub fn measure(body: &[u8], limits: &Limits) -> Result<Shape, RequestError> {
    let mut meter = Meter {
        max_values: limits.max_values_in_request,
        max_depth: limits.max_depth_in_request,
        values: 0,
        depth: 0,
        bytes: 0,
        over: None,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let walked = Node { meter: &mut meter }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match (walked, meter.over) {
        (Err(_), Some(over)) => Err(over),
        (Err(e), None) => Err(RequestError::NotJson(e.to_string())),
        (Ok(()), _) => Ok(Shape {
            values: meter.values,
            estimated_bytes: meter.bytes,
        }),
    }
}

/// Any JSON value, counted and dropped.
struct Node<'a> {
    meter: &'a mut Meter,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.meter.value(0)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.meter.value(0)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.meter.value(0)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.meter.value(0)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.meter.value(0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.meter.value(v.len())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.meter.enter()?;
        while seq
            .next_element_seed(Node {
                meter: &mut *self.meter,
            })?
            .is_some()
        {}
        self.meter.depth -= 1;
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.meter.enter()?;
        let mut keys = 0usize;
        while map
            .next_key_seed(Key {
                meter: &mut *self.meter,
            })?
            .is_some()
        {
            map.next_value_seed(Node {
                meter: &mut *self.meter,
            })?;
            keys += 1;
        }
        let nodes = keys.div_ceil(MAP_NODE_KEYS);
        self.meter.bytes = self
            .meter
            .bytes
            .saturating_add(nodes.saturating_mul(MAP_NODE_BYTES));
        self.meter.depth -= 1;
        Ok(())
    }
}

/// An object key: its bytes count, it is not a value of its own.
struct Key<'a> {
    meter: &'a mut Meter,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.meter.bytes = self.meter.bytes.saturating_add(v.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(values: usize, depth: usize) -> Limits {
        Limits {
            max_values_in_request: values,
            max_depth_in_request: depth,
            ..Limits::new(1 << 20)
        }
    }

    #[test]
    fn counts_values_and_refuses_over_the_limits() {
        let doc = br#"{"a": [1, "two", null, {"b": true}], "c": 1.5}"#;
        // The object, a, 1, "two", null, the inner object, true, 1.5.
        let shape = measure(doc, &limits(8, 3)).unwrap();
        assert_eq!(shape.values, 8);
        assert!(shape.estimated_bytes > 2 * MAP_NODE_BYTES, "{shape:?}");
        assert_eq!(
            measure(doc, &limits(7, 3)),
            Err(RequestError::Limit {
                limit: "maxValuesInRequest",
                detail: "more than 7 JSON values".into()
            })
        );
        assert!(matches!(
            measure(doc, &limits(8, 2)),
            Err(RequestError::Limit {
                limit: "maxDepthInRequest",
                ..
            })
        ));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            measure(deep.as_bytes(), &limits(1000, 32)),
            Err(RequestError::Limit {
                limit: "maxDepthInRequest",
                ..
            })
        ));
    }

    #[test]
    fn bad_json_is_not_json() {
        for bad in [&b"{"[..], b"\xff", b"[1] [2]", b"{\"a\" 1}", b""] {
            assert!(
                matches!(
                    measure(bad, &limits(100, 10)),
                    Err(RequestError::NotJson(_))
                ),
                "{bad:?}"
            );
        }
    }
}
