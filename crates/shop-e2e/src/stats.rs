//! Latency figures of the load, scale and chaos tools: an HdrHistogram of microseconds (three
//! significant digits, so a quantile is within 0.1 % of the exact one) instead of a sorted copy
//! of every sample. Quantiles and the maximum read as milliseconds or seconds; NaN when nothing
//! was recorded, which the tools print as such.

use hdrhistogram::Histogram;

/// Durations recorded for quantiles.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            histogram: Histogram::new(3).expect("three significant digits are valid"),
        }
    }
}

impl FromIterator<chrono::TimeDelta> for Latencies {
    fn from_iter<I: IntoIterator<Item = chrono::TimeDelta>>(iter: I) -> Self {
        let mut latencies = Self::default();
        iter.into_iter().for_each(|d| latencies.record(d));
        latencies
    }
}

impl Latencies {
    /// Records `duration`; a negative one (clocks of two processes) counts as zero.
    pub fn record(&mut self, duration: chrono::TimeDelta) {
        let micros = duration.num_microseconds().unwrap_or(i64::MAX).max(0);
        self.histogram
            .record(u64::try_from(micros).unwrap_or(0))
            .expect("an auto-resizing histogram takes any value");
    }

    /// How many durations were recorded.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The `q` quantile (0.5: the median) in milliseconds, NaN when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.micros(self.histogram.value_at_quantile(q)) / 1000.0
    }

    /// The `q` quantile in seconds, NaN when empty.
    pub fn quantile_secs(&self, q: f64) -> f64 {
        self.quantile_ms(q) / 1000.0
    }

    /// The longest in milliseconds, NaN when empty.
    pub fn max_ms(&self) -> f64 {
        self.micros(self.histogram.max()) / 1000.0
    }

    /// The longest in seconds, NaN when empty.
    pub fn max_secs(&self) -> f64 {
        self.max_ms() / 1000.0
    }

    /// `value` as recorded: the histogram answers with the highest value of its bucket, this
    /// with the lowest, so a recorded value reads back as itself.
    fn micros(&self, value: u64) -> f64 {
        if self.is_empty() {
            f64::NAN
        } else {
            self.histogram.lowest_equivalent(value) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn ms(values: &[i64]) -> Latencies {
        values.iter().map(|v| TimeDelta::milliseconds(*v)).collect()
    }

    #[test]
    fn quantiles_pick_from_the_recorded_values() {
        let latencies = ms(&[5, 1, 3, 2, 4]);
        assert_eq!(latencies.len(), 5);
        assert_eq!(latencies.quantile_ms(0.5), 3.0);
        assert_eq!(latencies.quantile_ms(0.99), 5.0);
        assert_eq!(latencies.quantile_ms(0.0), 1.0);
        assert_eq!(latencies.max_ms(), 5.0);
        assert_eq!(latencies.quantile_secs(0.5), 0.003);
    }

    #[test]
    fn nothing_recorded_reads_as_nan() {
        let none = Latencies::default();
        assert!(none.is_empty());
        assert!(none.quantile_ms(0.5).is_nan());
        assert!(none.max_secs().is_nan());
    }

    #[test]
    fn quantiles_stay_within_a_thousandth_of_the_exact_value() {
        let values: Vec<i64> = (1..=10_000).map(|i| i * 37 % 100_000 + 1).collect();
        let latencies = ms(&values);
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for q in [0.5, 0.9, 0.99] {
            let exact = sorted[(q * sorted.len() as f64).ceil() as usize - 1] as f64;
            let found = latencies.quantile_ms(q);
            assert!(
                (found - exact).abs() <= exact / 1000.0,
                "q {q}: {found} vs {exact}"
            );
        }
    }

    #[test]
    fn a_negative_duration_counts_as_zero() {
        let latencies = ms(&[-3, 2]);
        assert_eq!(latencies.quantile_ms(0.0), 0.0);
    }
}
