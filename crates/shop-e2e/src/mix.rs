//! A seeded mix of orders with known outcomes, pure: the same seed gives the same orders. The
//! provider simulator decides by customer id prefix (`cus_decline`, `cus_flaky`, `cus_pending`),
//! so each kind of order is made by choosing its customer and its lines.

/// What an order is meant to meet on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// In stock, paid: confirmed and shipped.
    InStock,
    /// A line asks for more than there is: cancelled, out of stock.
    OutOfStock,
    /// The provider declines the card: cancelled, payment failed, stock released.
    Declined,
    /// The provider often fails (503): retried until captured; confirmed.
    Flaky,
    /// The customer cancels right after placing: cancelled (or confirmed, when the cancellation
    /// comes after the capture; both are correct and checked).
    CustomerCancel,
    /// The provider keeps the charge pending (the customer never authenticates): cancelled at
    /// the deadline, compensated.
    Timeout,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::InStock,
        Kind::OutOfStock,
        Kind::Declined,
        Kind::Flaky,
        Kind::CustomerCancel,
        Kind::Timeout,
    ];

    /// Percent of a mix, per kind (sums to 100).
    fn weight(self) -> u64 {
        match self {
            Kind::InStock => 55,
            Kind::OutOfStock => 10,
            Kind::Declined => 10,
            Kind::Flaky => 10,
            Kind::CustomerCancel => 10,
            Kind::Timeout => 5,
        }
    }

    fn customer_prefix(self) -> &'static str {
        match self {
            Kind::Declined => "cus_decline",
            Kind::Flaky => "cus_flaky",
            Kind::Timeout => "cus_pending",
            _ => "cus",
        }
    }

    /// The cancel reasons this kind may end with (`None` = confirmed and shipped).
    pub fn allowed_endings(self) -> &'static [Option<&'static str>] {
        match self {
            Kind::InStock | Kind::Flaky => &[None],
            Kind::OutOfStock => &[Some("out_of_stock")],
            Kind::Declined => &[Some("payment_failed")],
            Kind::CustomerCancel => &[Some("customer_request"), None],
            Kind::Timeout => &[Some("timeout")],
        }
    }
}

/// One order of a mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub kind: Kind,
    pub customer: String,
    /// (SKU, quantity)
    pub lines: Vec<(String, u32)>,
}

/// The SKUs a mix orders: `stocked` are plentiful, `scarce` has one unit only.
#[derive(Debug, Clone)]
pub struct Skus {
    pub stocked: Vec<String>,
    pub scarce: String,
}

/// A tag for one run's SKUs: 8 random hex digits. (The first 8 digits of a UUIDv7 are its
/// clock, the same for every run started within the same 65 seconds: the end-to-end test and
/// the chaos run right after it shared their stock that way.)
pub fn run_tag() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    id[id.len() - 8..].to_uppercase()
}

impl Skus {
    /// SKUs of one run (`tag`: up to 8 of A-Z 0-9, see [`run_tag`]), so runs never share stock.
    pub fn for_run(tag: &str) -> Self {
        Self {
            stocked: ["A", "B", "C"]
                .iter()
                .map(|s| format!("E2E-{tag}-{s}"))
                .collect(),
            scarce: format!("E2E-{tag}-X"),
        }
    }
}

/// A small seeded generator (xorshift64).
#[derive(Debug, Clone)]
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `n` orders of the mix, from `seed`, for the run `tag`.
pub fn plan(seed: u64, n: usize, tag: &str, skus: &Skus) -> Vec<Planned> {
    let mut random = Seeded::new(seed);
    (0..n)
        .map(|i| {
            let mut roll = random.below(100);
            let kind = *Kind::ALL
                .iter()
                .find(|k| {
                    let hit = roll < k.weight();
                    roll = roll.saturating_sub(k.weight());
                    hit
                })
                .expect("weights sum to 100");
            let mut lines: Vec<(String, u32)> = (0..1 + random.below(3))
                .map(|_| {
                    let sku = &skus.stocked[random.below(skus.stocked.len() as u64) as usize];
                    (sku.clone(), 1 + random.below(3) as u32)
                })
                .collect();
            if kind == Kind::OutOfStock {
                lines.push((skus.scarce.clone(), 2));
            }
            Planned {
                kind,
                customer: format!("{}_{tag}_{}", kind.customer_prefix(), i % 97),
                lines,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_started_together_get_their_own_skus() {
        let tags: std::collections::HashSet<String> = (0..1000).map(|_| run_tag()).collect();
        assert_eq!(tags.len(), 1000, "no two runs share a tag");
        assert!(tags
            .iter()
            .all(|t| t.len() == 8 && t.chars().all(|c| c.is_ascii_hexdigit())));
    }

    #[test]
    fn the_same_seed_plans_the_same_orders() {
        let skus = Skus::for_run("T1");
        assert_eq!(plan(7, 200, "T1", &skus), plan(7, 200, "T1", &skus));
        assert_ne!(plan(7, 200, "T1", &skus), plan(8, 200, "T1", &skus));
    }

    #[test]
    fn a_thousand_orders_hold_every_kind_near_its_weight() {
        let skus = Skus::for_run("T1");
        let orders = plan(42, 1000, "T1", &skus);
        for kind in Kind::ALL {
            let count = orders.iter().filter(|o| o.kind == kind).count() as u64;
            let expected = kind.weight() * 10;
            assert!(
                count.abs_diff(expected) < 40,
                "{kind:?}: {count} of 1000, expected ~{expected}"
            );
        }
    }

    #[test]
    fn only_out_of_stock_orders_ask_for_the_scarce_sku() {
        let skus = Skus::for_run("T1");
        for order in plan(3, 500, "T1", &skus) {
            let scarce = order.lines.iter().any(|(s, _)| *s == skus.scarce);
            assert_eq!(scarce, order.kind == Kind::OutOfStock, "{order:?}");
        }
    }

    #[test]
    fn customers_carry_the_prefix_the_provider_simulator_acts_on() {
        let skus = Skus::for_run("T1");
        for order in plan(5, 300, "T1", &skus) {
            let expected = match order.kind {
                Kind::Declined => "cus_decline_",
                Kind::Flaky => "cus_flaky_",
                Kind::Timeout => "cus_pending_",
                _ => "cus_T1",
            };
            assert!(order.customer.starts_with(expected), "{order:?}");
            assert!(shop_events::values::CustomerId::parse(&order.customer).is_ok());
        }
    }
}
