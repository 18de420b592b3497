//! A token bucket per token subject: `burst` requests at once, refilled at
//! `requests_per_second`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;

/// Subjects tracked before full buckets are dropped; a dropped bucket is full anyway, so
/// forgetting it changes no decision.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Rate limits of every subject.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            rate: config.requests_per_second,
            burst: f64::from(config.burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `subject`'s bucket at `now`.
    ///
    /// # Errors
    ///
    /// The time until a token is available, when the bucket is empty.
    pub fn check(&self, subject: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, bucket| refill(bucket, now, rate, burst) < burst);
        }
        let bucket = buckets.entry(subject.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let tokens = refill(bucket, now, self.rate, self.burst);
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }
}

/// Adds the tokens earned since the bucket's last update and returns the new count.
fn refill(bucket: &mut Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let earned = now.saturating_duration_since(bucket.updated).as_secs_f64() * rate;
    bucket.tokens = (bucket.tokens + earned).min(burst);
    bucket.updated = now;
    bucket.tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests_per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            requests_per_second,
            burst,
        })
    }

    #[test]
    fn burst_then_rejects() {
        let limiter = limiter(1.0, 3);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("alice", now).is_ok());
        }
        let wait = limiter.check("alice", now).unwrap_err();
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
    }

    #[test]
    fn refills_at_the_rate() {
        let limiter = limiter(2.0, 1);
        let now = Instant::now();
        assert!(limiter.check("alice", now).is_ok());
        assert!(limiter.check("alice", now).is_err());
        assert!(
            limiter
                .check("alice", now + Duration::from_millis(500))
                .is_ok()
        );
    }

    #[test]
    fn subjects_have_own_buckets() {
        let limiter = limiter(1.0, 1);
        let now = Instant::now();
        assert!(limiter.check("alice", now).is_ok());
        assert!(limiter.check("bob", now).is_ok());
        assert!(limiter.check("alice", now).is_err());
    }
}
