//! Per-plugin call statistics and the back-off that follows repeated failures.
//!
//! After [`FAILURES_BEFORE_BACKOFF`] consecutive failed calls a plugin is unhealthy. When
//! those failures are misbehaviour (traps, spinning past the deadline, memory overruns),
//! its calls are also refused without running it for a delay that doubles with each
//! further failure, from [`BACKOFF_BASE`] up to [`BACKOFF_MAX`]. Errors the plugin returns
//! about its peer (vCenter down, bad password) never pause it, so it recovers on the next
//! cycle. The first call after a delay is a probe: success makes the plugin healthy again.

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

pub const FAILURES_BEFORE_BACKOFF: u32 = 3;
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// A plugin's health as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The last call succeeded, or none has run yet.
    Healthy,
    /// The last call failed; calls still run.
    Degraded,
    /// Repeated failures: calls are refused until the back-off ends.
    Unhealthy,
}

/// A failure as recorded for status output.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedFailure {
    pub kind: &'static str,
    pub message: String,
    pub at: SystemTime,
}

/// Call statistics of one plugin.
#[derive(Debug, Clone, Default)]
pub struct HealthTracker {
    pub calls: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    /// Consecutive failures that were traps, spins or memory overruns.
    pub consecutive_misbehaviour: u32,
    pub last_error: Option<RecordedFailure>,
    pub last_duration: Option<Duration>,
    pub total_duration: Duration,
    backoff_until: Option<Instant>,
}

impl HealthTracker {
    pub fn health(&self) -> Health {
        if self.consecutive_failures >= FAILURES_BEFORE_BACKOFF {
            Health::Unhealthy
        } else if self.consecutive_failures > 0 {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }

    /// Returns the end of the back-off if calls must still be refused at `now`.
    pub fn backoff_remaining(&self, now: Instant) -> Option<Duration> {
        self.backoff_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    pub fn record_success(&mut self, duration: Duration) {
        self.record_call(duration);
        self.consecutive_failures = 0;
        self.consecutive_misbehaviour = 0;
        self.backoff_until = None;
    }

    pub fn record_failure(
        &mut self,
        duration: Duration,
        kind: &'static str,
        message: String,
        misbehaviour: bool,
    ) {
        self.record_call(duration);
        self.failures += 1;
        self.consecutive_failures += 1;
        self.last_error = Some(RecordedFailure {
            kind,
            message,
            at: SystemTime::now(),
        });
        if misbehaviour {
            self.consecutive_misbehaviour += 1;
        }
        if self.consecutive_misbehaviour >= FAILURES_BEFORE_BACKOFF {
            let doublings = (self.consecutive_misbehaviour - FAILURES_BEFORE_BACKOFF).min(16);
            let delay = BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX);
            self.backoff_until = Some(Instant::now() + delay);
        }
    }

    fn record_call(&mut self, duration: Duration) {
        self.calls += 1;
        self.last_duration = Some(duration);
        self.total_duration += duration;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_after_third_failure() {
        let mut tracker = HealthTracker::default();
        for _ in 0..2 {
            tracker.record_failure(Duration::ZERO, "trap", "boom".into(), true);
            assert_eq!(tracker.health(), Health::Degraded);
            assert!(tracker.backoff_remaining(Instant::now()).is_none());
        }
        tracker.record_failure(Duration::ZERO, "trap", "boom".into(), true);
        assert_eq!(tracker.health(), Health::Unhealthy);
        let remaining = tracker.backoff_remaining(Instant::now()).unwrap();
        assert!(remaining <= BACKOFF_BASE);
        assert!(remaining > BACKOFF_BASE / 2);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut tracker = HealthTracker::default();
        for _ in 0..4 {
            tracker.record_failure(Duration::ZERO, "trap", "boom".into(), true);
        }
        let remaining = tracker.backoff_remaining(Instant::now()).unwrap();
        assert!(remaining > BACKOFF_BASE);
        assert!(remaining <= BACKOFF_BASE * 2);
        for _ in 0..40 {
            tracker.record_failure(Duration::ZERO, "trap", "boom".into(), true);
        }
        assert!(tracker.backoff_remaining(Instant::now()).unwrap() <= BACKOFF_MAX);
    }

    #[test]
    fn reported_errors_do_not_back_off() {
        let mut tracker = HealthTracker::default();
        for _ in 0..5 {
            tracker.record_failure(Duration::ZERO, "unreachable", "vCenter down".into(), false);
        }
        assert_eq!(tracker.health(), Health::Unhealthy);
        assert!(tracker.backoff_remaining(Instant::now()).is_none());
    }

    #[test]
    fn success_clears_backoff() {
        let mut tracker = HealthTracker::default();
        for _ in 0..5 {
            tracker.record_failure(Duration::ZERO, "trap", "boom".into(), true);
        }
        tracker.record_success(Duration::from_millis(2));
        assert_eq!(tracker.health(), Health::Healthy);
        assert!(tracker.backoff_remaining(Instant::now()).is_none());
        assert_eq!(tracker.calls, 6);
        assert_eq!(tracker.failures, 5);
        assert!(tracker.last_error.is_some());
    }
}
