//! Why a schema cannot read an older one's events, found by walking both, field by field.
//!
//! [`explain`] pairs each field of the new record (the reader) with the old one's (the writer) by
//! name or alias, as Avro resolution does, and descends into nested records, arrays, maps and
//! unions, so a break is named by its path (`lines[].quantity`) and its rule: added without a
//! default, type changed beyond Avro's promotions, enum symbol or union branch removed, named type
//! renamed. It also lists a field removed although the old schema requires it (no default): the
//! new reader skips it, but consumers still on the old schema cannot read new events (see
//! [`super::compat`]). References to named types are followed within each schema. It explains;
//! the verdict is [`super::compat::check_compatible`].

use std::collections::{HashMap, HashSet};
use std::iter::once;

use apache_avro::schema::{EnumSchema, RecordSchema};
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use super::compat::{Break, Rule};

/// Compares `old` (the writer) with `new` (the reader) field by field and lists each change that
/// keeps `new` from reading `old`'s events, and each field `old` requires that `new` removed.
pub fn explain(old: &Schema, new: &Schema) -> Vec<Break> {
    let mut walker = Walker {
        old: named_types(old),
        new: named_types(new),
        seen: HashSet::new(),
    };
    walker.compare(old, new, "")
}

struct Walker<'a> {
    old: HashMap<String, &'a Schema>,
    new: HashMap<String, &'a Schema>,
    /// Record pairs already compared, so recursive types end.
    seen: HashSet<(String, String)>,
}

impl<'a> Walker<'a> {
    fn compare(&mut self, writer: &'a Schema, reader: &'a Schema, path: &str) -> Vec<Break> {
        let w = resolve(&self.old, writer);
        let r = resolve(&self.new, reader);
        match (w, r) {
            (Schema::Union(branches), _) => self.old_union(w, branches.variants(), r, path),
            (_, Schema::Union(branches)) => match self.matching_branch(w, branches.variants()) {
                Some(branch) => self.compare(w, branch, path),
                None => vec![type_changed(path, w, r)],
            },
            (Schema::Record(old), Schema::Record(new)) => self.records(old, new, path),
            (Schema::Enum(old), Schema::Enum(new)) => enums(old, new, path),
            (Schema::Array(old), Schema::Array(new)) => {
                self.compare(&old.items, &new.items, &format!("{path}[]"))
            }
            (Schema::Map(old), Schema::Map(new)) => {
                self.compare(&old.types, &new.types, &format!("{path}{{}}"))
            }
            _ if self.same_shape(w, r) => Vec::new(),
            _ => vec![type_changed(path, w, r)],
        }
    }

    /// Every branch of the old union must be readable by the new schema.
    fn old_union(
        &mut self,
        w: &'a Schema,
        branches: &'a [Schema],
        r: &'a Schema,
        path: &str,
    ) -> Vec<Break> {
        let mut breaks = Vec::new();
        let mut removed = Vec::new();
        for branch in branches {
            let branch = resolve(&self.old, branch);
            let target = match r {
                Schema::Union(readers) => self.matching_branch(branch, readers.variants()),
                _ => Some(r).filter(|r| self.same_shape(branch, r)),
            };
            match target {
                Some(target) => breaks.extend(self.compare(branch, target, path)),
                None => removed.push(describe(branch)),
            }
        }
        if !removed.is_empty() {
            breaks.insert(
                0,
                Break {
                    field: path.to_owned(),
                    rule: Rule::BranchesRemoved {
                        from: describe(w),
                        to: describe(r),
                        removed,
                    },
                },
            );
        }
        breaks
    }

    fn matching_branch(&self, w: &Schema, branches: &'a [Schema]) -> Option<&'a Schema> {
        branches
            .iter()
            .map(|b| resolve(&self.new, b))
            .find(|b| self.same_shape(w, b))
    }

    /// Whether `r` is the kind of schema that can read `w` at this level (same named type, same
    /// container, or a primitive Avro promotes), leaving what is inside to [`Walker::compare`].
    fn same_shape(&self, w: &Schema, r: &Schema) -> bool {
        let w = resolve(&self.old, w);
        let r = resolve(&self.new, r);
        match (w, r) {
            (Schema::Record(a), Schema::Record(b)) => a.name.name() == b.name.name(),
            (Schema::Enum(a), Schema::Enum(b)) => a.name.name() == b.name.name(),
            (Schema::Array(_), Schema::Array(_)) | (Schema::Map(_), Schema::Map(_)) => true,
            _ if is_leaf(w) && is_leaf(r) => SchemaCompatibility::can_read(w, r).is_ok(),
            _ => false,
        }
    }

    fn records(&mut self, old: &'a RecordSchema, new: &'a RecordSchema, path: &str) -> Vec<Break> {
        let (old_name, new_name) = (old.name.fullname(None), new.name.fullname(None));
        if old.name.name() != new.name.name() {
            return vec![renamed(path, old_name, new_name)];
        }
        if !self.seen.insert((old_name, new_name)) {
            return Vec::new();
        }
        let mut breaks = Vec::new();
        for field in &new.fields {
            let field_path = field_path(path, &field.name);
            // Matched by name, then by the new field's aliases, as Avro resolves them.
            let before = once(&field.name)
                .chain(field.aliases.iter())
                .find_map(|name| old.fields.iter().find(|f| &f.name == name));
            match before {
                Some(before) => {
                    breaks.extend(self.compare(&before.schema, &field.schema, &field_path))
                }
                None if field.default.is_none() => breaks.push(Break {
                    field: field_path,
                    rule: Rule::AddedWithoutDefault,
                }),
                None => {}
            }
        }
        for field in old.fields.iter().filter(|f| f.default.is_none()) {
            // An old reader matches by its own field's name and aliases (a new field's aliases
            // help new readers only).
            let kept = new
                .fields
                .iter()
                .any(|f| f.name == field.name || field.aliases.contains(&f.name));
            if !kept {
                breaks.push(Break {
                    field: field_path(path, &field.name),
                    rule: Rule::RemovedWithoutDefault,
                });
            }
        }
        breaks
    }
}

/// `name` inside the record at `path`: `lines[].quantity`, or `total_minor` at the top.
fn field_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn enums(old: &EnumSchema, new: &EnumSchema, path: &str) -> Vec<Break> {
    let name = new.name.fullname(None);
    if old.name.name() != new.name.name() {
        return vec![renamed(path, old.name.fullname(None), name)];
    }
    if new.default.is_some() {
        return Vec::new();
    }
    let symbols: Vec<String> = old
        .symbols
        .iter()
        .filter(|s| !new.symbols.contains(s))
        .cloned()
        .collect();
    if symbols.is_empty() {
        return Vec::new();
    }
    vec![Break {
        field: path.to_owned(),
        rule: Rule::SymbolsRemoved { name, symbols },
    }]
}

fn type_changed(path: &str, w: &Schema, r: &Schema) -> Break {
    Break {
        field: path.to_owned(),
        rule: Rule::TypeChanged {
            from: describe(w),
            to: describe(r),
        },
    }
}

fn renamed(path: &str, from: String, to: String) -> Break {
    Break {
        field: path.to_owned(),
        rule: Rule::Renamed { from, to },
    }
}

/// Types with nothing named inside them, which apache-avro can compare on their own.
fn is_leaf(schema: &Schema) -> bool {
    !matches!(
        schema,
        Schema::Record(_)
            | Schema::Enum(_)
            | Schema::Array(_)
            | Schema::Map(_)
            | Schema::Union(_)
            | Schema::Ref { .. }
    )
}

/// A reference to a named type, replaced by its definition (found in the same schema).
fn resolve<'a>(names: &HashMap<String, &'a Schema>, schema: &'a Schema) -> &'a Schema {
    match schema {
        Schema::Ref { name } => names.get(&name.fullname(None)).copied().unwrap_or(schema),
        _ => schema,
    }
}

/// Every record, enum and fixed type defined in `schema`, by full name.
fn named_types(schema: &Schema) -> HashMap<String, &Schema> {
    fn walk<'a>(schema: &'a Schema, names: &mut HashMap<String, &'a Schema>) {
        match schema {
            Schema::Record(record) => {
                names.insert(record.name.fullname(None), schema);
                for field in &record.fields {
                    walk(&field.schema, names);
                }
            }
            Schema::Enum(e) => {
                names.insert(e.name.fullname(None), schema);
            }
            Schema::Fixed(fixed) => {
                names.insert(fixed.name.fullname(None), schema);
            }
            Schema::Array(array) => walk(&array.items, names),
            Schema::Map(map) => walk(&map.types, names),
            Schema::Union(union) => union.variants().iter().for_each(|b| walk(b, names)),
            _ => {}
        }
    }
    let mut names = HashMap::new();
    walk(schema, &mut names);
    names
}

/// How a type reads in a message: `long`, `long (timestamp-millis)`, `[null, string]`.
pub fn describe(schema: &Schema) -> String {
    let simple = match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int => "int",
        Schema::Long => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::Bytes => "bytes",
        Schema::String => "string",
        Schema::BigDecimal => "bytes (big-decimal)",
        Schema::Uuid(_) => "uuid",
        Schema::Date => "int (date)",
        Schema::TimeMillis => "int (time-millis)",
        Schema::TimeMicros => "long (time-micros)",
        Schema::TimestampMillis => "long (timestamp-millis)",
        Schema::TimestampMicros => "long (timestamp-micros)",
        Schema::TimestampNanos => "long (timestamp-nanos)",
        Schema::LocalTimestampMillis => "long (local-timestamp-millis)",
        Schema::LocalTimestampMicros => "long (local-timestamp-micros)",
        Schema::LocalTimestampNanos => "long (local-timestamp-nanos)",
        Schema::Duration(_) => "fixed (duration)",
        _ => "",
    };
    if !simple.is_empty() {
        return simple.to_owned();
    }
    match schema {
        Schema::Array(array) => format!("array of {}", describe(&array.items)),
        Schema::Map(map) => format!("map of {}", describe(&map.types)),
        Schema::Union(union) => {
            let branches: Vec<String> = union.variants().iter().map(describe).collect();
            format!("[{}]", branches.join(", "))
        }
        Schema::Record(record) => format!("record {}", record.name.fullname(None)),
        Schema::Enum(e) => format!("enum {}", e.name.fullname(None)),
        Schema::Fixed(fixed) => {
            format!("fixed {} ({} bytes)", fixed.name.fullname(None), fixed.size)
        }
        Schema::Decimal(d) => format!("decimal({}, {})", d.precision, d.scale),
        Schema::Ref { name } => name.fullname(None),
        _ => format!("{:?}", apache_avro::schema::SchemaKind::from(schema)).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> Schema {
        Schema::parse_str(text).unwrap()
    }

    #[test]
    fn identical_schemas_have_nothing_to_explain() {
        let probe = schema(r#"{"type":"record","name":"P","fields":[{"name":"a","type":"long"}]}"#);
        assert!(explain(&probe, &probe).is_empty());
    }

    #[test]
    fn a_field_read_through_an_alias_is_the_same_field_for_new_readers_only() {
        let old =
            schema(r#"{"type":"record","name":"P","fields":[{"name":"total","type":"long"}]}"#);
        let new = schema(
            r#"{"type":"record","name":"P","fields":[{"name":"total_minor","aliases":["total"],"type":"long"}]}"#,
        );
        // The new reader finds `total` through the alias; an old reader has no alias to find
        // `total_minor` by, so for it the field is gone.
        let found = explain(&old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].field.as_str(), &found[0].rule),
            ("total", &Rule::RemovedWithoutDefault)
        );
    }

    #[test]
    fn an_int_that_becomes_a_union_with_a_long_is_still_readable() {
        let old = schema(r#"{"type":"record","name":"P","fields":[{"name":"n","type":"int"}]}"#);
        let new = schema(
            r#"{"type":"record","name":"P","fields":[{"name":"n","type":["null","long"]}]}"#,
        );
        assert!(explain(&old, &new).is_empty());
    }

    #[test]
    fn logical_types_are_described_with_their_base_type() {
        let schema = Schema::parse_str(r#"{"type":"long","logicalType":"timestamp-millis"}"#);
        assert_eq!(describe(&schema.unwrap()), "long (timestamp-millis)");
    }
}
