//! Lifeguard's local health multiplier (Dadgar et al., 2018), with
//! memberlist's rules: a node that is itself slow or cut off (its probes
//! fail, it has to refute suspicions of itself) waits longer before it
//! blames others.

/// The highest score.
pub const MAX: u32 = 8;

/// The local health score, 0 (healthy) to [`MAX`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health(u32);

impl Health {
    /// The score.
    pub fn score(self) -> u32 {
        self.0
    }

    /// A probe this node started failed.
    pub fn probe_failed(&mut self) {
        self.0 = (self.0 + 1).min(MAX);
    }

    /// This node refutes a suspicion of itself.
    pub fn refuting(&mut self) {
        self.0 = (self.0 + 1).min(MAX);
    }

    /// A probe this node started was answered.
    pub fn probe_answered(&mut self) {
        self.0 = self.0.saturating_sub(1);
    }

    /// `ms` scaled by (1 + score).
    pub fn scale(self, ms: u64) -> u64 {
        ms.saturating_mul(1 + u64::from(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_scaling() {
        let mut h = Health::default();
        h.probe_answered();
        assert_eq!(h.score(), 0);
        for _ in 0..20 {
            h.probe_failed();
        }
        assert_eq!(h.score(), MAX);
        h.probe_answered();
        h.refuting();
        assert_eq!(h.scale(100), 900);
    }
}
