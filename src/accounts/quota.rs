//! The quota rule: which uploads a user's usage and quota allow.

use serde::Serialize;

/// The configured quota settings: the default quota (`None`: unlimited) and the
/// overflow allowed past any quota, as Ente allows 50 MiB past a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaRule {
    pub default_bytes: Option<i64>,
    pub overflow_bytes: i64,
}

/// Why an upload is refused, with the figures the answer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
pub enum QuotaRefusal {
    /// The quota is 0: Ente's "no active subscription" (402).
    #[error("this account has no storage (its quota is 0); ask the service to grant some")]
    NoActiveSubscription { usage: i64, limit: i64, size: i64 },
    /// The upload would take the usage past the quota and its overflow (426).
    #[error(
        "storing {size} more bytes would take this account's usage of {usage} bytes past its limit of {limit} bytes"
    )]
    StorageLimitExceeded { usage: i64, limit: i64, size: i64 },
}

impl QuotaRefusal {
    /// The error code Ente's clients know.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoActiveSubscription { .. } => "NO_ACTIVE_SUBSCRIPTION",
            Self::StorageLimitExceeded { .. } => "STORAGE_LIMIT_EXCEEDED",
        }
    }

    /// (usage, limit, size asked for).
    pub fn figures(&self) -> (i64, i64, i64) {
        match *self {
            Self::NoActiveSubscription { usage, limit, size }
            | Self::StorageLimitExceeded { usage, limit, size } => (usage, limit, size),
        }
    }
}

impl QuotaRule {
    /// The rule `quota.*` configures.
    pub fn from_config(config: &crate::config::QuotaConfig) -> Self {
        let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
        Self {
            default_bytes: config.default_bytes.map(bytes),
            overflow_bytes: bytes(config.overflow_bytes),
        }
    }

    /// The quota that applies to a user with its own quota `own`.
    pub fn limit(&self, own: Option<i64>) -> Option<i64> {
        own.or(self.default_bytes)
    }

    /// Whether a user with `usage` bytes and own quota `own` may add `size` bytes: a
    /// quota of 0 refuses everything; otherwise usage + size may reach the quota plus
    /// the overflow.
    pub fn check(&self, usage: i64, own: Option<i64>, size: i64) -> Result<(), QuotaRefusal> {
        let Some(limit) = self.limit(own) else {
            return Ok(());
        };
        if limit <= 0 {
            return Err(QuotaRefusal::NoActiveSubscription { usage, limit, size });
        }
        if usage.saturating_add(size) > limit.saturating_add(self.overflow_bytes) {
            return Err(QuotaRefusal::StorageLimitExceeded { usage, limit, size });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: QuotaRule = QuotaRule {
        default_bytes: Some(1000),
        overflow_bytes: 100,
    };

    #[test]
    fn usage_may_reach_the_quota_plus_the_overflow_and_no_further() {
        assert_eq!(RULE.check(0, None, 1100), Ok(()));
        assert_eq!(RULE.check(1000, None, 100), Ok(()));
        assert_eq!(
            RULE.check(1000, None, 101),
            Err(QuotaRefusal::StorageLimitExceeded {
                usage: 1000,
                limit: 1000,
                size: 101
            })
        );
    }

    #[test]
    fn an_own_quota_overrides_the_default_and_zero_means_no_subscription() {
        assert_eq!(RULE.check(5000, Some(10_000), 10), Ok(()));
        assert_eq!(
            RULE.check(0, Some(0), 0).unwrap_err().code(),
            "NO_ACTIVE_SUBSCRIPTION"
        );
        let unlimited = QuotaRule::default();
        assert_eq!(unlimited.check(i64::MAX - 1, None, 10), Ok(()));
    }
}
