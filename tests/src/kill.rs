//! Aiming SIGKILLs at a window of the agent's work: [`KillSearch`] picks the delay after
//! which a run is killed, learns from where each kill landed, and counts the landings, so
//! a crash test can show that its kills hit the window it is named after.

use std::collections::BTreeMap;
use std::time::Duration;

/// Where a kill landed relative to the window a test aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landing {
    /// Before the window: nothing it covers had happened yet.
    Early,
    /// Inside the window.
    Inside,
    /// After the window (or the run had ended).
    Late,
}

/// Chooses kill delays (half uniformly over the calibrated span of a run, half bisecting
/// between the latest delay that landed early and the earliest that landed late) from a
/// seed that is printed, and counts where kills landed.
#[derive(Debug)]
pub struct KillSearch {
    seed: u64,
    rng: u64,
    span: Duration,
    early: Duration,
    late: Duration,
    inside: usize,
    /// Kills per window label, as the test named them.
    pub counts: BTreeMap<String, usize>,
    picks: u64,
}

impl KillSearch {
    /// A search seeded from `DROVER_KILL_SEED`, else from the clock; prints the seed.
    pub fn from_env() -> KillSearch {
        let seed = std::env::var("DROVER_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                now.expect("clock after 1970").as_nanos() as u64
            });
        eprintln!("kill seed {seed} (rerun with DROVER_KILL_SEED={seed})");
        KillSearch::new(seed)
    }

    /// A search with this seed.
    pub fn new(seed: u64) -> KillSearch {
        KillSearch {
            seed,
            rng: seed,
            span: Duration::ZERO,
            early: Duration::ZERO,
            late: Duration::ZERO,
            inside: 0,
            counts: BTreeMap::new(),
            picks: 0,
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Tells it how long a whole run takes; delays stay within 1.2 times the longest.
    pub fn calibrate(&mut self, run: Duration) {
        self.span = self.span.max(run + run / 5);
        if self.late.is_zero() {
            self.late = self.span;
        }
    }

    /// The next delay to kill after.
    pub fn next_delay(&mut self) -> Duration {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        self.picks += 1;
        if !self.picks.is_multiple_of(2) || self.early >= self.late {
            return self.span.mul_f64(unit);
        }
        self.early + (self.late - self.early).mul_f64(unit)
    }

    /// Records that the kill after `delay` landed in `window` (a label), `landing`.
    pub fn record(&mut self, delay: Duration, window: String, landing: Landing) {
        *self.counts.entry(window).or_default() += 1;
        match landing {
            Landing::Early => self.early = self.early.max(delay),
            Landing::Late => self.late = self.late.min(delay),
            Landing::Inside => self.inside += 1,
        }
        if self.early >= self.late {
            // Timing noise crossed the bounds: widen again around the crossing.
            (self.early, self.late) = (self.late.mul_f64(0.8), self.early.mul_f64(1.2));
        }
    }

    /// How many kills landed inside the window.
    pub fn inside(&self) -> usize {
        self.inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_narrow_towards_the_window_between_early_and_late_landings() {
        let mut search = KillSearch::new(7);
        search.calibrate(Duration::from_millis(100));
        search.record(Duration::from_millis(30), "early".into(), Landing::Early);
        search.record(Duration::from_millis(40), "late".into(), Landing::Late);
        for _ in 0..50 {
            let delay = search.next_delay();
            assert!(delay <= Duration::from_millis(120), "{delay:?}");
            if search.picks.is_multiple_of(2) {
                assert!(
                    delay >= Duration::from_millis(30) && delay <= Duration::from_millis(40),
                    "{delay:?}"
                );
            }
        }
        assert_eq!(search.counts.len(), 2);
        assert_eq!(search.inside(), 0);
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let delays = |seed| {
            let mut s = KillSearch::new(seed);
            s.calibrate(Duration::from_millis(50));
            (0..5).map(|_| s.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(42), delays(42));
        assert_ne!(delays(42), delays(43));
    }
}
