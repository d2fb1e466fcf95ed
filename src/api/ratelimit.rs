//! In-process rate limits: a token bucket per key (a user, a client address), kept
//! in a map of bounded size.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

/// Most keys one limiter tracks. Past it, keys whose bucket has refilled are
/// dropped (they are as good as new); if none has, the map starts over, so memory
/// stays bounded whatever a flood of addresses does.
const MAX_KEYS: usize = 100_000;

/// A token bucket per key: `per_minute` requests at once, refilled at
/// `per_minute` a minute. `per_minute` 0 turns the limit off. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter<K> {
    per_minute: u32,
    buckets: Arc<Mutex<HashMap<K, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// When the key's running out was last reported (see [`RateLimiter::newly_exhausted`]).
    reported: Option<Instant>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter of `per_minute` requests per key (0: no limit).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.per_minute)
    }

    /// The bucket of `key` refilled to now.
    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let rate = self.capacity() / 60.0;
        let tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate)
            .min(self.capacity());
        Bucket {
            tokens,
            at: now,
            reported: bucket.reported,
        }
    }

    /// How long until `bucket` holds `n` tokens again.
    fn wait_for(&self, bucket: Bucket, n: f64) -> Duration {
        let rate = self.capacity() / 60.0;
        Duration::from_secs_f64(((n - bucket.tokens) / rate).max(0.0))
    }

    /// How long until `key` has a whole token again.
    fn wait(&self, bucket: Bucket) -> Duration {
        self.wait_for(bucket, 1.0)
    }

    /// Whether a request of `n` units can ever pass: at most a minute's budget.
    pub fn fits(&self, n: u32) -> bool {
        self.per_minute == 0 || n <= self.per_minute
    }

    /// The budget a minute (0: no limit).
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one request from `key`'s bucket; `Err(wait)` when it is empty.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        self.take_n(key, 1)
    }

    /// Takes `n` units from `key`'s bucket, all or none; `Err(wait)` when it holds
    /// fewer, with the time until it holds `n` (a request over [`Self::fits`] never
    /// passes; check that first).
    pub fn take_n(&self, key: &K, n: u32) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        let n = f64::from(n.max(1));
        let now = Instant::now();
        let full = Bucket {
            tokens: self.capacity(),
            at: now,
            reported: None,
        };
        let bucket = map.get(key).map_or(full, |b| self.refilled(*b, now));
        if bucket.tokens < n {
            map.insert(key.clone(), bucket);
            return Err(self.wait_for(bucket, n));
        }
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.retain(|_, b| self.refilled(*b, now).tokens < self.capacity());
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        map.insert(
            key.clone(),
            Bucket {
                tokens: bucket.tokens - n,
                ..bucket
            },
        );
        Ok(())
    }

    /// `Some(wait)` when `key`'s bucket is empty and that was not reported in the
    /// last minute; marks it reported. A key that keeps hitting its limit is thus
    /// worth one log line a minute, however many requests it sends.
    pub fn newly_exhausted(&self, key: &K) -> Option<Duration> {
        if self.per_minute == 0 {
            return None;
        }
        let mut map = self.buckets.lock().ok()?;
        let now = Instant::now();
        let bucket = map.get_mut(key)?;
        let current = self.refilled(*bucket, now);
        let recent = bucket
            .reported
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(60));
        if current.tokens >= 1.0 || recent {
            return None;
        }
        bucket.reported = Some(now);
        Some(self.wait(current))
    }

    /// `Err(wait)` when `key`'s bucket is empty now; takes nothing.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let Ok(map) = self.buckets.lock() else {
            return Ok(());
        };
        match map.get(key).map(|b| self.refilled(*b, Instant::now())) {
            Some(b) if b.tokens < 1.0 => Err(self.wait(b)),
            _ => Ok(()),
        }
    }
}

/// The limits the API applies. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Upload URLs issued per user.
    pub upload_urls: RateLimiter<i64>,
    /// Failed authentications per client address.
    pub failed_auth: RateLimiter<IpAddr>,
    /// The header a trusted proxy puts the client's address in, lower-cased.
    pub client_ip_header: Option<http::HeaderName>,
    /// How many of the header's entries, from the right, trusted proxies wrote.
    pub trusted_proxy_hops: usize,
}

impl RateLimits {
    /// The limits `rate-limit.*` and `internal.trusted-client-ip-header` configure.
    pub fn from_config(
        limits: &crate::config::RateLimitConfig,
        internal: &crate::config::InternalConfig,
    ) -> Self {
        Self {
            upload_urls: RateLimiter::new(limits.upload_urls_per_minute),
            failed_auth: RateLimiter::new(limits.failed_auth_per_minute),
            client_ip_header: internal
                .trusted_client_ip_header
                .as_deref()
                .filter(|h| !h.is_empty())
                .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            trusted_proxy_hops: usize::try_from(internal.trusted_proxy_hops.max(1)).unwrap_or(1),
        }
    }

    /// The client's address: from the trusted header when one is configured and
    /// holds one (see [`forwarded_client`]), else the connection's peer (unspecified
    /// when the router runs without connection info).
    pub fn client_ip(&self, parts: &Parts) -> IpAddr {
        let from_header = self.client_ip_header.as_ref().and_then(|name| {
            forwarded_client(parts.headers.get_all(name).iter(), self.trusted_proxy_hops)
        });
        from_header
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip())
            })
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }
}

/// The client's address in a client-address header (every line of it, in order, as
/// one comma-separated list): the entry `hops` from the right, the one the outermost
/// of `hops` trusted proxies wrote. Entries to its left came from the client and are
/// never read, so a client cannot choose its address by sending the header itself.
/// With fewer entries than `hops`, the left-most. `None` when that entry is not an
/// address (an address with a port, or a bracketed IPv6 one, is read as its address).
fn forwarded_client<'a>(
    lines: impl DoubleEndedIterator<Item = &'a http::HeaderValue>,
    hops: usize,
) -> Option<IpAddr> {
    let entries: Vec<&str> = lines
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let at = entries.len().saturating_sub(hops.max(1));
    let entry = entries.get(at)?;
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<IpAddr>().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(lines: &[&str], hops: usize) -> Option<IpAddr> {
        let values: Vec<http::HeaderValue> = lines
            .iter()
            .map(|l| http::HeaderValue::from_str(l).unwrap())
            .collect();
        forwarded_client(values.iter(), hops)
    }

    #[test]
    fn the_client_is_the_entry_the_trusted_proxies_wrote_counted_from_the_right() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(client(&["198.51.100.1"], 1), ip("198.51.100.1"));
        assert_eq!(client(&["192.0.2.7, 198.51.100.1"], 1), ip("198.51.100.1"));
        assert_eq!(
            client(&["192.0.2.7, 198.51.100.1, 10.0.0.2"], 2),
            ip("198.51.100.1")
        );
        // A second header line is part of the same list; the client's own comes first.
        assert_eq!(
            client(&["192.0.2.7", "198.51.100.1"], 1),
            ip("198.51.100.1")
        );
        // Fewer entries than hops: the left-most, written by the outermost proxy.
        assert_eq!(client(&["198.51.100.1"], 3), ip("198.51.100.1"));
        assert_eq!(client(&["198.51.100.1:4711"], 1), ip("198.51.100.1"));
        assert_eq!(client(&["[2001:db8::1]:443"], 1), ip("2001:db8::1"));
        assert_eq!(client(&["[2001:db8::1]"], 1), ip("2001:db8::1"));
        assert_eq!(client(&["198.51.100.1, unknown"], 1), None);
        assert_eq!(client(&[], 1), None);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_wait() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            assert_eq!(limiter.take(&1), Ok(()));
        }
        let wait = limiter.take(&1).unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limiter.check(&1).is_err());
        assert_eq!(limiter.take(&2), Ok(()), "other keys are not affected");
    }

    #[test]
    fn a_request_of_n_units_takes_all_or_none() {
        let limiter = RateLimiter::new(10);
        assert!(limiter.fits(10) && !limiter.fits(11));
        assert_eq!(limiter.take_n(&1, 6), Ok(()));
        let wait = limiter.take_n(&1, 6).unwrap_err();
        // 4 left, 2 more at 10 a minute: 12 s.
        assert!(
            wait > Duration::from_secs(11) && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
        assert_eq!(
            limiter.take_n(&1, 4),
            Ok(()),
            "the refused request took nothing"
        );
        assert!(limiter.take(&1).is_err());
        assert!(RateLimiter::<i64>::new(0).fits(u32::MAX));
    }

    #[test]
    fn running_out_is_reported_once_a_minute() {
        let limiter = RateLimiter::new(2);
        assert_eq!(limiter.take(&1), Ok(()));
        assert_eq!(limiter.newly_exhausted(&1), None, "one left");
        assert_eq!(limiter.take(&1), Ok(()));
        assert!(limiter.newly_exhausted(&1).is_some(), "just ran out");
        assert!(limiter.take(&1).is_err());
        assert_eq!(limiter.newly_exhausted(&1), None, "already reported");
        assert_eq!(limiter.newly_exhausted(&2), None, "an unseen key");
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::new(0);
        for _ in 0..1000 {
            assert_eq!(limiter.take(&1), Ok(()));
        }
    }

    #[test]
    fn the_map_stays_bounded() {
        let limiter = RateLimiter::new(1);
        for key in 0..(MAX_KEYS as u64 + 10) {
            let _ = limiter.take(&key);
        }
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_KEYS);
    }
}
