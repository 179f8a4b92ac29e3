//! Where each value sits in the file, so a rule broken by a value points at its line.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Byte offsets of the values of table keys (`server.workers` → offset) and of keys in arrays
/// of tables (`source[1].minpoll` → offset), for pointing validation errors at a line. Only
/// called on text that already parsed.
pub(super) fn value_spans(text: &str) -> BTreeMap<String, usize> {
    toml::from_str::<SpanIndex>(text)
        .map(|s| s.0)
        .unwrap_or_default()
}

/// The top level of a file: each table (or array of tables) and the offsets of its values.
struct SpanIndex(BTreeMap<String, usize>);

/// One top-level value: a table's keys (`.key`) or an array of tables' keys (`[i].key`).
struct SpanSection(Vec<(String, usize)>);

impl<'de> Deserialize<'de> for SpanIndex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SpanIndex;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SpanIndex, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(table) = map.next_key::<String>()? {
                    let section: SpanSection = map.next_value()?;
                    for (key, offset) in section.0 {
                        out.insert(format!("{table}{key}"), offset);
                    }
                }
                Ok(SpanIndex(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for SpanSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type Keys = BTreeMap<String, toml::Spanned<toml::Value>>;
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SpanSection;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table or an array of tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SpanSection, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: toml::Spanned<toml::Value> = map.next_value()?;
                    out.push((format!(".{key}"), value.span().start));
                }
                Ok(SpanSection(out))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SpanSection, A::Error> {
                let mut out = Vec::new();
                let mut i = 0;
                while let Some(keys) = seq.next_element::<Keys>()? {
                    for (key, value) in keys {
                        out.push((format!("[{i}].{key}"), value.span().start));
                    }
                    i += 1;
                }
                Ok(SpanSection(out))
            }
        }
        d.deserialize_any(V)
    }
}
