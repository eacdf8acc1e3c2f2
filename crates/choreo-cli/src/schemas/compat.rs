//! BACKWARD compatibility of one schema against an older one, with reasons a person can act on.
//!
//! The verdict is apache-avro's [`SchemaCompatibility::can_read`] with the old schema as writer and
//! the new one as reader: a consumer on the new schema must read every event written with the old
//! one. Anything short of full compatibility is a break (a partial match means some old events
//! would fail to decode). One rule goes beyond the registry's BACKWARD: a field the old schema
//! requires (no default) may not be removed. In a choreography the producer is deployed on its
//! own, so consumers still on the old schema read its new events, and resolving those against a
//! field with no default fails; give the field a default first, remove it later. apache-avro's errors say little ("Field 'x' in reader schema must have a
//! default value"), so [`explain`](super::explain) walks both schemas field by field and names
//! the field and the rule; apache-avro's own message is the fallback when the walk finds nothing.
//! Pure: no I/O.

use std::fmt;

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;

use super::explain::explain;

/// One reason the new schema cannot read what the old one wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// Where, as a field path (`lines[].quantity`); empty for the record itself.
    pub field: String,
    pub rule: Rule,
}

/// The rule a change breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A field the old schema lacks was added without a default.
    AddedWithoutDefault,
    /// A field the old schema requires (it has no default there) was removed.
    RemovedWithoutDefault,
    /// The type changed in a way Avro cannot promote (e.g. long to string).
    TypeChanged { from: String, to: String },
    /// Enum symbols old events may carry are gone, and the enum has no default.
    SymbolsRemoved { name: String, symbols: Vec<String> },
    /// A union lost branches that old events may hold.
    BranchesRemoved {
        from: String,
        to: String,
        removed: Vec<String>,
    },
    /// A record, enum or fixed type has another name, so old events do not resolve to it.
    Renamed { from: String, to: String },
    /// apache-avro's own reason, when the walk finds none.
    Other(String),
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.field.is_empty() {
            "the record".to_owned()
        } else {
            format!("field `{}`", self.field)
        };
        match &self.rule {
            Rule::AddedWithoutDefault => write!(
                f,
                "{what} was added without a default: a reader of the new schema cannot read old \
                 events that lack it"
            ),
            Rule::RemovedWithoutDefault => write!(
                f,
                "{what} was removed but has no default in the old schema: consumers still on \
                 the old schema cannot read new events that lack it (give it a default first, \
                 remove it later)"
            ),
            Rule::TypeChanged { from, to } => write!(
                f,
                "{what} changed type from {from} to {to}: a reader of the new schema cannot read \
                 old events that hold a {from} (Avro only promotes int to long, float or double, \
                 long to float or double, float to double, and string to and from bytes)"
            ),
            Rule::SymbolsRemoved { name, symbols } => write!(
                f,
                "{what}: enum {name} lost symbol(s) {} and has no default: a reader of the new \
                 schema cannot read old events that carry them",
                symbols.join(", ")
            ),
            Rule::BranchesRemoved { from, to, removed } => write!(
                f,
                "{what} no longer accepts {} (was {from}, now {to}): a reader of the new schema \
                 cannot read old events that hold it",
                removed.join(" or ")
            ),
            Rule::Renamed { from, to } => write!(
                f,
                "{what}: type {from} was renamed to {to}: Avro matches named types by name, so old \
                 events do not resolve to the new one"
            ),
            Rule::Other(message) => write!(f, "{what}: {message}"),
        }
    }
}

/// Whether `new` reads everything `old` wrote and removed no field `old` requires; if not,
/// every reason found.
pub fn check_compatible(old: &Schema, new: &Schema) -> Result<(), Vec<Break>> {
    let mut breaks = explain(old, new);
    match SchemaCompatibility::can_read(old, new) {
        // apache-avro's verdict settles BACKWARD; only the rule beyond it can remain.
        Ok(Compatibility::Full) => breaks.retain(|b| b.rule == Rule::RemovedWithoutDefault),
        verdict if breaks.iter().all(|b| b.rule == Rule::RemovedWithoutDefault) => {
            let message = match verdict {
                Err(e) => error_chain(&e),
                Ok(_) => {
                    "only some old events could be read (apache-avro: partially compatible)".into()
                }
            };
            breaks.push(Break {
                field: String::new(),
                rule: Rule::Other(message),
            });
        }
        _ => {}
    }
    if breaks.is_empty() {
        Ok(())
    } else {
        Err(breaks)
    }
}

/// BACKWARD_TRANSITIVE plus the removed-field rule: `new` against every earlier version, each
/// named by a label (`version 2`, `commit 1a2b3c`). Returns one line per distinct reason with the versions it breaks against;
/// empty when `new` reads them all.
pub fn check_transitive(earlier: &[(String, Schema)], new: &Schema) -> Vec<String> {
    let mut reasons: Vec<(String, Vec<&str>)> = Vec::new();
    for (label, old) in earlier {
        for reason in check_compatible(old, new).err().unwrap_or_default() {
            let reason = reason.to_string();
            match reasons.iter_mut().find(|(known, _)| *known == reason) {
                Some((_, labels)) => labels.push(label),
                None => reasons.push((reason, vec![label])),
            }
        }
    }
    reasons
        .into_iter()
        .map(|(reason, labels)| format!("{reason} (against {})", labels.join(", ")))
        .collect()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record `shop.test.Probe` with the given fields (JSON objects, comma-separated).
    fn probe(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"Probe","namespace":"shop.test","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    fn breaks(old: &str, new: &str) -> Vec<String> {
        match check_compatible(&probe(old), &probe(new)) {
            Ok(()) => Vec::new(),
            Err(breaks) => breaks.iter().map(ToString::to_string).collect(),
        }
    }

    const ID: &str = r#"{"name":"id","type":"string"}"#;

    #[test]
    fn a_field_added_with_a_default_is_compatible() {
        let new = format!(r#"{ID},{{"name":"note","type":["null","string"],"default":null}}"#);
        assert_eq!(breaks(ID, &new), Vec::<String>::new());
    }

    #[test]
    fn a_removed_field_with_a_default_is_compatible() {
        let old = format!(r#"{ID},{{"name":"note","type":["null","string"],"default":null}}"#);
        assert_eq!(breaks(&old, ID), Vec::<String>::new());
    }

    #[test]
    fn a_removed_required_field_breaks_consumers_still_on_the_old_schema() {
        let old = format!(r#"{ID},{{"name":"customer_id","type":"string"}}"#);
        assert_eq!(
            breaks(&old, ID),
            [
                "field `customer_id` was removed but has no default in the old schema: consumers \
                 still on the old schema cannot read new events that lack it (give it a default \
                 first, remove it later)"
            ]
        );
    }

    #[test]
    fn a_field_added_without_a_default_is_named_with_the_rule() {
        let new = format!(r#"{ID},{{"name":"gift_note","type":"string"}}"#);
        assert_eq!(
            breaks(ID, &new),
            [
                "field `gift_note` was added without a default: a reader of the new schema cannot \
              read old events that lack it"
            ]
        );
    }

    #[test]
    fn a_type_change_names_both_types() {
        let old = r#"{"name":"total_minor","type":"long"}"#;
        let new = r#"{"name":"total_minor","type":"string"}"#;
        let found = breaks(old, new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("field `total_minor` changed type from long to string:"),
            "{found:?}"
        );
    }

    #[test]
    fn a_promotion_avro_allows_is_compatible() {
        let old = r#"{"name":"n","type":"int"}"#;
        let new = r#"{"name":"n","type":"long"}"#;
        assert!(breaks(old, new).is_empty());
        assert_eq!(breaks(new, old).len(), 1, "long back to int loses values");
    }

    #[test]
    fn a_removed_enum_symbol_is_named_unless_the_enum_has_a_default() {
        let reason = |symbols: &str, default: &str| {
            format!(
                r#"{{"name":"reason","type":{{"type":"enum","name":"Reason","symbols":[{symbols}]{default}}}}}"#
            )
        };
        let old = reason(r#""A","B","TIMEOUT""#, "");
        let found = breaks(&old, &reason(r#""A","B""#, ""));
        assert_eq!(
            found,
            ["field `reason`: enum shop.test.Reason lost symbol(s) TIMEOUT and has no default: a \
              reader of the new schema cannot read old events that carry them"]
        );
        assert!(breaks(&old, &reason(r#""A","B""#, r#","default":"A""#)).is_empty());
    }

    #[test]
    fn a_field_of_a_nested_record_is_named_by_its_path() {
        let lines = |extra: &str| {
            format!(
                r#"{{"name":"lines","type":{{"type":"array","items":{{"type":"record","name":"Line","fields":[{{"name":"sku","type":"string"}}{extra}]}}}}}}"#
            )
        };
        let found = breaks(&lines(""), &lines(r#",{"name":"quantity","type":"int"}"#));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("field `lines[].quantity` was added without a default"),
            "{found:?}"
        );
    }

    #[test]
    fn a_union_that_loses_null_is_named() {
        let old = r#"{"name":"detail","type":["null","string"],"default":null}"#;
        let new = r#"{"name":"detail","type":"string"}"#;
        let found = breaks(old, new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "field `detail` no longer accepts null (was [null, string], now string)"
            ),
            "{found:?}"
        );
    }

    #[test]
    fn a_renamed_record_is_a_break_of_the_record_itself() {
        let old = probe(ID);
        let new = Schema::parse_str(
            r#"{"type":"record","name":"Other","namespace":"shop.test","fields":[{"name":"id","type":"string"}]}"#,
        )
        .unwrap();
        let found = check_compatible(&old, &new).unwrap_err();
        assert_eq!(found[0].field, "");
        assert!(
            found[0]
                .to_string()
                .starts_with("the record: type shop.test.Probe was renamed to shop.test.Other"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn a_type_used_twice_is_compared_through_its_reference() {
        let fields = |extra: &str| {
            format!(
                r#"{{"name":"a","type":{{"type":"record","name":"Money","fields":[{{"name":"minor","type":"long"}}{extra}]}}}},{{"name":"b","type":"Money"}}"#
            )
        };
        let found = breaks(
            &fields(""),
            &fields(r#",{"name":"currency","type":"string"}"#),
        );
        assert!(
            found[0].starts_with("field `a.currency` was added without a default"),
            "{found:?}"
        );
    }

    #[test]
    fn a_change_is_checked_against_every_earlier_version_not_only_the_last() {
        let v1 = probe(ID);
        let v2 = probe(&format!(
            r#"{ID},{{"name":"note","type":"string","default":""}}"#
        ));
        // v3 drops the default: it reads v2's events (they have `note`) but not v1's.
        let v3 = probe(&format!(r#"{ID},{{"name":"note","type":"string"}}"#));
        let earlier = [("version 1".to_owned(), v1), ("version 2".to_owned(), v2)];
        let found = check_transitive(&earlier, &v3);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("field `note` was added without a default"));
        assert!(found[0].ends_with("(against version 1)"), "{found:?}");
    }

    #[test]
    fn one_reason_against_several_versions_is_listed_once() {
        let earlier = [
            ("commit a".to_owned(), probe(ID)),
            ("commit b".to_owned(), probe(ID)),
        ];
        let new = probe(&format!(r#"{ID},{{"name":"x","type":"int"}}"#));
        let found = check_transitive(&earlier, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].ends_with("(against commit a, commit b)"),
            "{found:?}"
        );
    }
}
