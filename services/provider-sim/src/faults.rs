//! Faults injected at run time (`PUT /admin/faults`), for chaos tests: extra latency before a
//! call is worked on, a rate of 503 answers, and late answers (the call is done at once, its
//! answer held back past the client's timeout). Parsing and the per-call plan only; the HTTP
//! layer waits and draws.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The faults in force; all off by default. `PUT /admin/faults` replaces them whole (a field
/// left out is off), `DELETE /admin/faults` turns them all off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Every `/v1` call waits this long before it is worked on (it is worked on even when the
    /// client gave up meanwhile), in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Fraction (0..=1) of `/v1` calls answered 503 without doing anything (after the latency).
    #[serde(default)]
    pub failure_rate: f64,
    /// A charge is done (captured in the books) at once, but answered only after this many
    /// milliseconds: set it above the client's timeout to make outcomes unknown.
    #[serde(default)]
    pub answer_after_ms: Option<u64>,
}

impl Faults {
    /// Parses a `PUT /admin/faults` body; the error says what is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if !value.is_object() {
            return Err("the faults must be a JSON object".into());
        }
        let faults: Faults = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if !(0.0..=1.0).contains(&faults.failure_rate) {
            return Err(format!(
                "failure_rate must be a fraction between 0 and 1, got {}",
                faults.failure_rate
            ));
        }
        Ok(faults)
    }

    /// The wait before a call is worked on.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    /// Whether a call with random `draw` in [0, 1) fails.
    pub fn fails(&self, draw: f64) -> bool {
        draw < self.failure_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_out_fields_are_off_and_unknown_ones_are_refused() {
        let faults = Faults::parse(br#"{"answer_after_ms": 3000}"#).unwrap();
        assert_eq!(
            faults,
            Faults {
                answer_after_ms: Some(3000),
                ..Faults::default()
            }
        );
        assert_eq!(Faults::parse(b"{}").unwrap(), Faults::default());
        assert!(Faults::parse(br#"{"latency": 5}"#).is_err());
        assert!(Faults::parse(br#"{"failure_rate": 1.5}"#)
            .unwrap_err()
            .contains("failure_rate"));
    }

    #[test]
    fn rate_zero_never_fails_and_rate_one_always_fails() {
        let never = Faults::default();
        let always = Faults {
            failure_rate: 1.0,
            ..Faults::default()
        };
        for draw in [0.0, 0.5, 0.999] {
            assert!(!never.fails(draw));
            assert!(always.fails(draw));
        }
    }
}
