//! The shop's order saga as `sagas/order.yaml` declares it (built in), the one description of
//! its rules that `choreo trace` reads too: the checks in [`crate::invariants`] judge from the
//! events on the topics whether each saga reached the end its order did and did every
//! compensation that end owes, by [`choreo::saga`]'s evaluation. Which end an order's status
//! stands for is the only thing said here; the unit tests check the file against the shop's
//! schemas and topics.

use std::path::Path;
use std::sync::OnceLock;

use choreo::saga::{Observed, Saga};

use crate::topics::Seen;

const FILE: &str = "sagas/order.yaml";
const TEXT: &str = include_str!("../../../sagas/order.yaml");

/// The order service's final statuses, and the saga's end each stands for.
const ENDS: [(&str, &str); 2] = [("shipped", "completed"), ("cancelled", "cancelled")];

/// The order saga.
pub fn order() -> &'static Saga {
    static SAGA: OnceLock<Saga> = OnceLock::new();
    SAGA.get_or_init(|| {
        Saga::parse(Path::new(FILE), TEXT).unwrap_or_else(|e| panic!("{e} (checked by tests)"))
    })
}

/// The end of the saga an order in this final status reached, if it is one.
pub fn end_of(status: &str) -> Option<&'static str> {
    ENDS.iter().find(|(s, _)| *s == status).map(|(_, end)| *end)
}

impl Observed for Seen {
    fn event(&self) -> &str {
        &self.event_type
    }

    fn at_ms(&self) -> Option<i64> {
        self.occurred_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
            .or(self.timestamp_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saga_file_parses() {
        if let Err(e) = Saga::parse(Path::new(FILE), TEXT) {
            panic!("{e}");
        }
        assert_eq!(order().start, "OrderPlaced");
    }

    /// shop_events::ALL is built from schemas/**/*.avsc and topics/*.yaml, and its build fails
    /// on a schema on no topic or a topic event with no schema: an event in it has both.
    #[test]
    fn every_event_the_saga_names_has_a_schema_and_a_topic() {
        for event in order().events() {
            let found = shop_events::ALL
                .iter()
                .find(|(_, short, _)| *short == event);
            let Some((full, _, topic)) = found else {
                panic!("{FILE} names {event}, but no schemas/**/*.avsc defines it");
            };
            assert!(
                shop_events::TOPICS.contains(topic),
                "{full} is on {topic}, not a shop topic"
            );
        }
    }

    #[test]
    fn every_final_status_of_an_order_is_an_end_of_the_saga() {
        for (status, end) in ENDS {
            assert!(
                order().end(end).is_some(),
                "{status}: no end `{end}` in {FILE}"
            );
        }
        assert_eq!(end_of("shipped"), Some("completed"));
        assert_eq!(end_of("placed"), None);
    }
}
