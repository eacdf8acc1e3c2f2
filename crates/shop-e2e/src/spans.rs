//! One trace's spans as a tree: a span's chain of parents up to the root, the services along
//! it, and the whole trace as text, one line per span. Pure; the spans come from the OTLP sink
//! ([`crate::otlp`]).

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::otlp::SpanRecord;

/// The spans of one trace, by id.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    spans: Vec<SpanRecord>,
    by_id: HashMap<String, usize>,
}

/// A span and its ancestors, innermost first.
#[derive(Debug, Clone)]
pub struct Chain<'a> {
    pub spans: Vec<&'a SpanRecord>,
    /// The parent of the last span when the trace does not hold it: a span not received (yet),
    /// or the caller's own span when the root was a child of a client's `traceparent`. `None`:
    /// the last span is a root.
    pub missing_parent: Option<&'a str>,
}

impl Chain<'_> {
    /// The services along the chain, root first, consecutive repeats collapsed.
    pub fn services(&self) -> Vec<&str> {
        let mut services: Vec<&str> = self
            .spans
            .iter()
            .rev()
            .map(|s| s.service.as_str())
            .collect();
        services.dedup();
        services
    }

    /// Whether a span of the chain is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.spans.iter().any(|s| s.name == name)
    }

    /// The chain as `service:name` steps, root first, for messages.
    pub fn describe(&self) -> String {
        let steps: Vec<String> = self
            .spans
            .iter()
            .rev()
            .map(|s| format!("{}:{}", s.service, s.name))
            .collect();
        let head = self
            .missing_parent
            .map(|p| format!("(parent {p} not received) "))
            .unwrap_or_default();
        format!("{head}{}", steps.join(" -> "))
    }
}

impl Trace {
    pub fn new(mut spans: Vec<SpanRecord>) -> Self {
        spans.sort_by_key(|s| (s.start_unix_nano, s.end_unix_nano));
        let by_id = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id.clone(), i))
            .collect();
        Self { spans, by_id }
    }

    pub fn spans(&self) -> &[SpanRecord] {
        &self.spans
    }

    pub fn get(&self, span_id: &str) -> Option<&SpanRecord> {
        self.by_id.get(span_id).map(|&i| &self.spans[i])
    }

    /// `span` and its parents, as far as they have arrived.
    pub fn chain<'a>(&'a self, span: &'a SpanRecord) -> Chain<'a> {
        let mut spans = vec![span];
        let mut at = span;
        while let Some(parent) = &at.parent_span_id {
            match self.get(parent) {
                // A span id seen twice would be a cycle: stop rather than loop.
                Some(next) if spans.len() <= self.spans.len() => {
                    spans.push(next);
                    at = next;
                }
                _ => {
                    return Chain {
                        spans,
                        missing_parent: Some(parent),
                    }
                }
            }
        }
        Chain {
            spans,
            missing_parent: None,
        }
    }

    /// The spans with no parent in this trace (roots, and spans whose parent has not arrived).
    fn tops(&self) -> Vec<&SpanRecord> {
        self.spans
            .iter()
            .filter(|s| {
                s.parent_span_id
                    .as_ref()
                    .is_none_or(|p| !self.by_id.contains_key(p))
            })
            .collect()
    }

    /// One line per span in tree order (children by start time): service, name, start offset
    /// from the trace's first span and duration, in ms.
    pub fn render(&self) -> String {
        let mut children: HashMap<&str, Vec<&SpanRecord>> = HashMap::new();
        for span in &self.spans {
            if let Some(parent) = span.parent_span_id.as_deref() {
                children.entry(parent).or_default().push(span);
            }
        }
        let origin = self
            .spans
            .iter()
            .map(|s| s.start_unix_nano)
            .min()
            .unwrap_or(0);
        let mut out = String::new();
        let mut stack: Vec<(&SpanRecord, usize)> =
            self.tops().into_iter().map(|s| (s, 0)).rev().collect();
        while let Some((span, depth)) = stack.pop() {
            let ms = |nanos: u64| nanos as f64 / 1e6;
            let orphan = match &span.parent_span_id {
                Some(_) if depth == 0 => "  (parent not received)",
                _ => "",
            };
            let _ = writeln!(
                out,
                "{:>9.1} ms {:>8.1} ms  {:<12} {}{}{orphan}",
                ms(span.start_unix_nano.saturating_sub(origin)),
                ms(span.duration_nanos()),
                span.service,
                "  ".repeat(depth),
                span.name,
            );
            if let Some(kids) = children.get(span.span_id.as_str()) {
                stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, service: &str, name: &str, start: u64) -> SpanRecord {
        SpanRecord {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            name: name.into(),
            kind: "internal".into(),
            service: service.into(),
            attributes: Default::default(),
            start_unix_nano: start * 1_000_000,
            end_unix_nano: start * 1_000_000 + 2_000_000,
        }
    }

    fn trace() -> Trace {
        Trace::new(vec![
            span("c", Some("b"), "order", "create shop.orders.v1", 3),
            span("a", None, "gateway", "POST /orders", 0),
            span("b", Some("a"), "order", "POST /orders", 1),
            span("d", Some("c"), "inventory", "process shop.orders.v1", 5),
            span("e", Some("b"), "order", "SELECT", 2),
        ])
    }

    #[test]
    fn a_chain_walks_up_to_the_root_and_collapses_repeated_services() {
        let trace = trace();
        let chain = trace.chain(trace.get("d").unwrap());
        assert_eq!(chain.missing_parent, None);
        assert_eq!(chain.services(), ["gateway", "order", "inventory"]);
        assert!(chain.has("create shop.orders.v1"));
        assert!(!chain.has("SELECT"));
    }

    #[test]
    fn a_chain_with_a_parent_not_received_is_incomplete() {
        let trace = Trace::new(vec![span("d", Some("x"), "inventory", "process", 0)]);
        let chain = trace.chain(&trace.spans()[0]);
        assert_eq!(chain.missing_parent, Some("x"));
        assert!(chain.describe().starts_with("(parent x not received)"));
    }

    #[test]
    fn the_text_tree_lists_children_under_their_parent_by_start() {
        let text = trace().render();
        let names: Vec<&str> = text
            .lines()
            .map(|l| l.split("  ").last().unwrap().trim())
            .collect();
        assert_eq!(
            names,
            [
                "POST /orders",
                "POST /orders",
                "SELECT",
                "create shop.orders.v1",
                "process shop.orders.v1"
            ]
        );
        assert!(text.lines().nth(3).unwrap().contains("     3.0 ms"));
    }
}
