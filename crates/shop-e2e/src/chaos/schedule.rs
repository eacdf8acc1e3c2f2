//! The faults and a seeded schedule of them, pure: the same seed, length and kinds give the same
//! schedule. A schedule starts with a quiet warm-up (the baseline latency), then every chosen
//! kind once in a seeded order, then seeded picks until the run's end, each fault separated from
//! the next by a pause in which the shop must recover (all thirteen once take about 280 s). The
//! injector runs the steps one after the other, so a fault that takes longer than planned
//! pushes the rest back.

use std::time::Duration;

use crate::mix::Seeded;

/// A kind of fault the suite injects into the running shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL each service's process in turn, 3 s apart; the supervisor starts each again.
    Kill,
    /// SIGTERM each service's process in turn (SIGKILL if one has not exited within 35 s);
    /// each started again.
    Term,
    /// SIGKILL every process (both replicas) of inventory or of payment at once.
    KillReplicas,
    /// SIGSTOP a consumer process past its 10 s session timeout, then SIGCONT (a zombie member).
    FreezeConsumer,
    /// SIGSTOP the broker past the consumers' session timeout, then SIGCONT.
    BrokerPause,
    /// `scripts/stack restart kafka`.
    BrokerRestart,
    /// The broker paused past the session timeout, resumed and restarted at once, twice.
    BrokerFlap,
    /// PostgreSQL stopped with `pg_ctl -m immediate` (a crash) and started again.
    PgRestart,
    /// Every relay's advisory-lock connection terminated (`pg_terminate_backend`).
    RelayLock,
    /// The registry stopped while a service restarts with an empty schema cache, then started.
    RegistryCold,
    /// The provider captures but answers only after the payment client's timeout.
    ProviderSlow,
    /// The provider answers 503 to most calls for a while.
    ProviderFlaky,
    /// A service restarted with a handler that panics once (`CHOREO_FAULT_PANIC_ONCE`).
    Panic,
}

impl Fault {
    pub const ALL: [Fault; 13] = [
        Fault::Kill,
        Fault::Term,
        Fault::KillReplicas,
        Fault::FreezeConsumer,
        Fault::BrokerPause,
        Fault::BrokerRestart,
        Fault::BrokerFlap,
        Fault::PgRestart,
        Fault::RelayLock,
        Fault::RegistryCold,
        Fault::ProviderSlow,
        Fault::ProviderFlaky,
        Fault::Panic,
    ];

    /// The name on the command line (`--faults kill,broker-pause`) and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Term => "term",
            Fault::KillReplicas => "kill-replicas",
            Fault::FreezeConsumer => "freeze-consumer",
            Fault::BrokerPause => "broker-pause",
            Fault::BrokerRestart => "broker-restart",
            Fault::BrokerFlap => "broker-flap",
            Fault::PgRestart => "pg-restart",
            Fault::RelayLock => "relay-lock",
            Fault::RegistryCold => "registry-cold",
            Fault::ProviderSlow => "provider-slow",
            Fault::ProviderFlaky => "provider-flaky",
            Fault::Panic => "panic",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault '{name}' (one of: {})", names.join(", "))
            })
    }

    /// About how long the fault lasts, for planning (the broker's own stop and start vary).
    pub fn planned(self) -> Duration {
        Duration::from_secs(match self {
            Fault::KillReplicas | Fault::RelayLock => 2,
            Fault::Kill | Fault::Term => 13,
            Fault::Panic => 4,
            Fault::PgRestart => 5,
            Fault::ProviderSlow | Fault::ProviderFlaky => 10,
            Fault::FreezeConsumer | Fault::BrokerPause | Fault::BrokerRestart => 12,
            Fault::RegistryCold => 12,
            Fault::BrokerFlap => 32,
        })
    }

    /// The shortest quiet time after the fault, so that the shop can be seen to serve again
    /// before the next one: longer after faults that make consumers rejoin their groups.
    pub fn recovery(self) -> Duration {
        Duration::from_secs(match self {
            Fault::Kill
            | Fault::KillReplicas
            | Fault::BrokerPause
            | Fault::BrokerRestart
            | Fault::BrokerFlap
            | Fault::RegistryCold => 12,
            _ => 4,
        })
    }
}

/// One planned fault: when it may start (from the start of the load), what, and a seeded draw
/// that picks its target (which service, which replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub fault: Fault,
    pub pick: u64,
}

/// The quiet start: the shop's baseline before the first fault.
pub const WARM_UP: Duration = Duration::from_secs(10);
/// The quiet end: load keeps flowing this long after the last fault may start.
pub const COOL_DOWN: Duration = Duration::from_secs(10);

/// A schedule of `kinds` over a run of `length`: each kind once first (even past `length`: a
/// run proves every kind it was asked for), then seeded picks while they fit; after each fault
/// a pause of its [`Fault::recovery`] and up to 4 s more.
pub fn plan(seed: u64, length: Duration, kinds: &[Fault]) -> Vec<Step> {
    let mut random = Seeded::new(seed ^ 0x00c4_a05c);
    let mut first: Vec<Fault> = kinds.to_vec();
    for i in (1..first.len()).rev() {
        first.swap(i, random.below(i as u64 + 1) as usize);
    }
    let mut steps = Vec::new();
    let mut at = WARM_UP;
    let end = length.saturating_sub(COOL_DOWN);
    let rounds = first.len();
    let mut queue = first.into_iter();
    while !kinds.is_empty() {
        let fault = queue
            .next()
            .unwrap_or_else(|| kinds[random.below(kinds.len() as u64) as usize]);
        if steps.len() >= rounds && at + fault.planned() > end {
            break;
        }
        steps.push(Step {
            at,
            fault,
            pick: random.below(u64::from(u32::MAX)),
        });
        at += fault.planned() + fault.recovery() + Duration::from_secs(random.below(5));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_plans_the_same_faults() {
        let a = plan(7, Duration::from_secs(600), &Fault::ALL);
        assert_eq!(a, plan(7, Duration::from_secs(600), &Fault::ALL));
        assert_ne!(a, plan(8, Duration::from_secs(600), &Fault::ALL));
    }

    #[test]
    fn every_kind_comes_once_before_any_comes_twice() {
        let steps = plan(11, Duration::from_secs(900), &Fault::ALL);
        let first: std::collections::HashSet<Fault> = steps
            .iter()
            .take(Fault::ALL.len())
            .map(|s| s.fault)
            .collect();
        assert_eq!(first.len(), Fault::ALL.len());
        assert!(steps.len() > Fault::ALL.len());
    }

    #[test]
    fn faults_start_after_the_warm_up_and_end_before_the_cool_down() {
        let length = Duration::from_secs(300);
        let steps = plan(3, length, &Fault::ALL);
        assert!(!steps.is_empty());
        for pair in steps.windows(2) {
            let quiet = pair[0].fault.planned() + pair[0].fault.recovery();
            assert!(pair[1].at >= pair[0].at + quiet);
        }
        assert!(steps[0].at >= WARM_UP);
        let last = steps.last().unwrap();
        assert!(last.at + last.fault.planned() <= length - COOL_DOWN);
    }

    #[test]
    fn a_short_run_still_gets_every_kind_once() {
        let steps = plan(9, Duration::from_secs(60), &Fault::ALL);
        assert_eq!(steps.len(), Fault::ALL.len());
    }

    #[test]
    fn only_the_chosen_kinds_are_planned() {
        let steps = plan(5, Duration::from_secs(200), &[Fault::Kill, Fault::Panic]);
        assert!(steps
            .iter()
            .all(|s| matches!(s.fault, Fault::Kill | Fault::Panic)));
        assert!(plan(5, Duration::from_secs(200), &[]).is_empty());
    }

    #[test]
    fn names_parse_back_to_their_faults() {
        for fault in Fault::ALL {
            assert_eq!(Fault::parse(fault.name()), Ok(fault));
        }
        assert!(Fault::parse("meteor").is_err());
    }
}
