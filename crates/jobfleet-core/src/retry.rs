//! The retry schedule: how long a failed job waits before its next attempt.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ConfigErrorKind};

/// Exponential backoff with a cap and deterministic jitter.
///
/// The delay after failed attempt `n` (1-based) is
/// `min(initial * factor^(n-1), max) * (1 - jitter * u)`, where `u` in `[0, 1)` is derived
/// from the job's seed and `n` alone. It is a pure function, so every worker computes the same
/// schedule for the same job, and jitter only ever shortens a delay (the cap holds).
///
/// The default is 1 s, doubling, capped at 1 h, with 20 % jitter:
/// 1 s, 2 s, 4 s, ..., 34 min, then 1 h.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySchedule {
    /// Delay after the first failed attempt. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Growth per attempt, `>= 1.0`. Default `2.0`.
    pub factor: f64,
    /// Upper bound of any delay. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Fraction of the delay that may be removed at random, `0.0..=1.0`. Default `0.2`.
    pub jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl RetrySchedule {
    /// The delay before the attempt after failed attempt `attempt` (1-based; `0` is treated as
    /// `1`), for a job whose jitter seed is `seed` (see [`crate::JobId::jitter_seed`]).
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1024) as i32;
        let nominal = self.initial.as_secs_f64() * self.factor.powi(exponent);
        let capped = nominal.min(self.max.as_secs_f64());
        let unit = unit_interval(seed ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Duration::try_from_secs_f64((capped * (1.0 - self.jitter * unit)).max(0.0))
            .unwrap_or(self.max)
    }

    /// Checks every field, naming the first bad one.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::InvalidValue`] for a zero `initial`, a `factor` below 1 or not
    /// finite, `max < initial`, or `jitter` outside `0..=1`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, msg: &str| {
            Err(ConfigError::new(ConfigErrorKind::InvalidValue, field, msg))
        };
        if self.initial.is_zero() {
            return bad("initial", "must be greater than zero");
        }
        if !self.factor.is_finite() || self.factor < 1.0 {
            return bad("factor", "must be a finite number >= 1.0");
        }
        if self.max < self.initial {
            return bad("max", "must be at least `initial`");
        }
        if self.max > MAX_RETRY_DELAY {
            return bad("max", "must be at most 366 days");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad("jitter", "must be between 0.0 and 1.0");
        }
        Ok(())
    }
}

/// Longest retry delay accepted.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(366 * 24 * 3600);

/// splitmix64 of `x`, mapped to `[0, 1)`.
fn unit_interval(x: u64) -> f64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact() -> RetrySchedule {
        RetrySchedule {
            jitter: 0.0,
            ..RetrySchedule::default()
        }
    }

    #[test]
    fn grows_exponentially_then_caps() {
        let s = exact();
        let secs: Vec<u64> = (1..=14).map(|n| s.delay(n, 7).as_secs()).collect();
        assert_eq!(
            secs,
            [
                1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600
            ]
        );
        assert_eq!(s.delay(0, 7), s.delay(1, 7));
        assert_eq!(s.delay(u32::MAX, 7), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_only_shortens_and_stays_within_bounds() {
        let s = RetrySchedule::default();
        for seed in 0..500u64 {
            for attempt in 1..20 {
                let nominal = exact().delay(attempt, seed).as_secs_f64();
                let jittered = s.delay(attempt, seed).as_secs_f64();
                assert!(jittered <= nominal + 1e-9);
                assert!(jittered >= nominal * 0.8 - 1e-9);
            }
        }
    }

    #[test]
    fn is_a_pure_function_of_seed_and_attempt() {
        let s = RetrySchedule::default();
        assert_eq!(s.delay(3, 42), s.delay(3, 42));
        let spread: std::collections::HashSet<_> =
            (0..100u64).map(|seed| s.delay(5, seed)).collect();
        assert!(
            spread.len() > 90,
            "jitter should spread jobs apart, got {} values",
            spread.len()
        );
    }

    #[test]
    fn validate_names_the_bad_field() {
        let cases = [
            (
                RetrySchedule {
                    initial: Duration::ZERO,
                    ..Default::default()
                },
                "initial",
            ),
            (
                RetrySchedule {
                    factor: 0.5,
                    ..Default::default()
                },
                "factor",
            ),
            (
                RetrySchedule {
                    factor: f64::NAN,
                    ..Default::default()
                },
                "factor",
            ),
            (
                RetrySchedule {
                    max: Duration::from_millis(10),
                    ..Default::default()
                },
                "max",
            ),
            (
                RetrySchedule {
                    jitter: 1.5,
                    ..Default::default()
                },
                "jitter",
            ),
        ];
        for (schedule, field) in cases {
            let err = schedule.validate().unwrap_err();
            assert_eq!(
                (err.kind(), err.field()),
                (ConfigErrorKind::InvalidValue, field)
            );
        }
        assert!(RetrySchedule::default().validate().is_ok());
    }
}
