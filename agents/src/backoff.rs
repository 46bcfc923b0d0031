//! When to restart: an exponential backoff between restarts, and the
//! budget of restarts a policy allows within its window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::spec::RestartPolicy;

/// The wait before the first restart: short, so a crash costs little.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait between restarts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// A run at least this long counts as healthy: the next restart waits
/// [`FIRST_DELAY`] again.
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// The wait before each restart: [`FIRST_DELAY`], doubling after each
/// short run up to [`MAX_DELAY`], back to the first after a healthy run.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: FIRST_DELAY }
    }

    /// The wait before restarting a process that ran for `ran`.
    pub(crate) fn delay(&mut self, ran: Duration) -> Duration {
        if ran >= HEALTHY_RUN {
            self.next = FIRST_DELAY;
        }
        let delay = self.next;
        self.next = (delay * 2).min(MAX_DELAY);
        delay
    }
}

/// The restarts made within the policy's window, to tell when there
/// have been too many.
#[derive(Clone, Debug, Default)]
pub(crate) struct Budget {
    restarts: VecDeque<Instant>,
}

impl Budget {
    /// Take one restart at `now` if the policy allows another within its
    /// window; `false` when `max` were already made within it.
    pub(crate) fn take(&mut self, now: Instant, policy: &RestartPolicy) -> bool {
        while let Some(&first) = self.restarts.front() {
            if now.duration_since(first) >= policy.window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        if self.restarts.len() >= policy.max as usize {
            return false;
        }
        self.restarts.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Restart;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets_after_a_healthy_run() {
        let mut b = Backoff::new();
        let short = Duration::from_millis(5);
        let delays: Vec<_> = (0..8).map(|_| b.delay(short)).collect();
        assert_eq!(delays[0], FIRST_DELAY);
        assert_eq!(delays[1], FIRST_DELAY * 2);
        assert_eq!(delays[2], FIRST_DELAY * 4);
        assert_eq!(*delays.last().unwrap(), MAX_DELAY);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(b.delay(HEALTHY_RUN), FIRST_DELAY);
    }

    #[test]
    fn budget_allows_max_restarts_per_window() {
        let policy = RestartPolicy {
            restart: Restart::Always,
            max: 3,
            window: Duration::from_secs(60),
        };
        let mut budget = Budget::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(budget.take(t0 + Duration::from_secs(i), &policy));
        }
        assert!(!budget.take(t0 + Duration::from_secs(10), &policy));
        // Once the first restart leaves the window, one more is allowed.
        assert!(budget.take(t0 + Duration::from_secs(60), &policy));
        assert!(!budget.take(t0 + Duration::from_secs(60), &policy));
    }
}
