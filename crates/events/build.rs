//! Generates the event types from the .avsc files (the source of truth) with rsgen-avro, and an
//! `choreo::avro::Event` impl for each event with its topic taken from topics/*.yaml. An event
//! with no schema, or a schema on no topic, fails the build.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(serde::Deserialize)]
struct TopicSpec {
    name: String,
    events: Vec<String>,
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let schemas_dir = root.join("schemas");
    let topics_dir = root.join("topics");
    println!("cargo:rerun-if-changed={}", schemas_dir.display());
    println!("cargo:rerun-if-changed={}", topics_dir.display());

    let files = files_with_extension(&schemas_dir, "avsc");
    let texts: Vec<String> = files.iter().map(|f| read(f)).collect();
    let schemas = rsgen_avro::Schema::parse_list(texts.iter().map(String::as_str))
        .unwrap_or_else(|e| panic!("schemas/*.avsc do not parse together: {e}"));

    let mut topic_of: BTreeMap<String, String> = BTreeMap::new();
    for file in files_with_extension(&topics_dir, "yaml") {
        let spec: TopicSpec = serde_yaml_ng::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for event in spec.events {
            if let Some(other) = topic_of.insert(event.clone(), spec.name.clone()) {
                panic!("{event} is listed on two topics, {other} and {}", spec.name);
            }
        }
    }

    let mut code = String::new();
    rsgen_avro::Generator::builder()
        .build()
        .expect("rsgen-avro generator")
        .generate(
            &rsgen_avro::Source::Schemas(&schemas),
            &mut Buffer(&mut code),
        )
        .expect("generate Rust types from schemas/*.avsc");

    let mut events = Vec::new();
    for (file, schema) in files.iter().zip(&schemas) {
        let name = schema
            .name()
            .unwrap_or_else(|| panic!("{}: the top level must be a named record", file.display()));
        let full_name = name.fullname(None);
        let topic = topic_of.remove(&full_name).unwrap_or_else(|| {
            panic!(
                "{}: {full_name} is on no topic; list it under `events:` in topics/*.yaml",
                file.display()
            )
        });
        let path = file.canonicalize().expect("schema path");
        writeln!(
            code,
            "impl choreo::avro::Event for {ty} {{\n    const NAME: &'static str = {full_name:?};\n    \
             const SCHEMA: &'static str = include_str!({path:?});\n    const TOPIC: &'static str = {topic:?};\n}}\n",
            ty = name.name,
        )
        .unwrap();
        events.push((full_name, name.name.clone(), topic));
    }
    if let Some((event, topic)) = topic_of.into_iter().next() {
        panic!("topics/{topic}.yaml lists {event}, but no schemas/**/*.avsc defines it");
    }
    write_shop_event(&mut code, &events);
    let mut topics: Vec<&str> = events.iter().map(|(_, _, topic)| topic.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    writeln!(code, "/// Every topic a shop event travels on, sorted.").unwrap();
    writeln!(code, "pub const TOPICS: &[&str] = &{topics:?};").unwrap();
    writeln!(code, "/// Every event: (full name, Rust type name, topic).").unwrap();
    writeln!(code, "pub const ALL: &[(&str, &str, &str)] = &{events:?};").unwrap();

    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("events.rs");
    std::fs::write(out, code).expect("write generated events");
}

/// `ShopEvent`: one variant per event, decoded by the `event_type` header, so a handler matches
/// on the events it cares about and passes over the rest.
fn write_shop_event(code: &mut String, events: &[(String, String, String)]) {
    code.push_str("/// Any shop event, decoded by its `event_type` header.\n");
    code.push_str("#[derive(Debug, Clone, PartialEq)]\npub enum ShopEvent {\n");
    for (_, ty, _) in events {
        writeln!(code, "    {ty}({ty}),").unwrap();
    }
    code.push_str("}\n\nimpl ShopEvent {\n");
    code.push_str(
        "    /// Decodes `value` as the event `event_type` names; `None` for an event type this \
         build does not know (a newer producer's), which a handler may pass over.\n",
    );
    code.push_str(
        "    pub async fn decode(codec: &choreo::avro::Codec, event_type: &str, value: &[u8]) \
         -> Result<Option<Self>, choreo::avro::CodecError> {\n        Ok(Some(match event_type {\n",
    );
    for (full, ty, _) in events {
        writeln!(
            code,
            "            {full:?} => Self::{ty}(codec.decode::<{ty}>(value).await?),"
        )
        .unwrap();
    }
    code.push_str("            _ => return Ok(None),\n        }))\n    }\n\n");
    code.push_str(
        "    /// Whether this build knows events of `event_type` (what a consumer's \
         `Handler::knows` answers).\n    pub fn is_known(event_type: &str) -> bool {\n        matches!(event_type, ",
    );
    let names: Vec<String> = events
        .iter()
        .map(|(full, _, _)| format!("{full:?}"))
        .collect();
    code.push_str(&names.join(" | "));
    code.push_str(")\n    }\n\n");
    code.push_str("    /// The event's full Avro name.\n    pub fn name(&self) -> &'static str {\n        match self {\n");
    for (_, ty, _) in events {
        writeln!(
            code,
            "            Self::{ty}(_) => <{ty} as choreo::avro::Event>::NAME,"
        )
        .unwrap();
    }
    code.push_str("        }\n    }\n}\n\n");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// rsgen-avro writes to `io::Write`; collect into the generated source.
struct Buffer<'a>(&'a mut String);

impl std::io::Write for Buffer<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .push_str(std::str::from_utf8(bytes).map_err(std::io::Error::other)?);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
