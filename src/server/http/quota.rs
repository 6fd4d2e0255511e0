//! Append quotas: token buckets per client address and per writer (a
//! gatelog entry's signer whose signature verified, or an opaque log's
//! authenticated writer). A submission takes a token from its address's
//! bucket before anything else, so failed checks (bad signatures, bad
//! tokens) count against the address that sent them; it takes one from
//! its writer's bucket only once the writer is proven, so nobody spends
//! another's quota. An empty bucket answers 429 with `Retry-After`.
//!
//! Hand-written rather than `governor`: the table must stay bounded
//! against a client that rotates addresses, and a key absent from it is
//! exactly a full bucket, so the table can drop full buckets (and, when
//! still over its bound, the fullest half) without changing any answer
//! but for those evicted keys, which get a fresh burst.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The key of a client address's quota: the address for IPv4, its /64
/// for IPv6 (one host usually holds a whole /64, and could otherwise
/// rotate through it for fresh quotas).
pub fn address_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                std::net::IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

/// The append quotas of a log.
pub struct Quotas {
    /// Per client address (an IPv6 /64): every submission.
    pub per_address: Buckets<std::net::IpAddr>,
    /// Per proven writer: a verified signer, or an authenticated writer.
    pub per_writer: Buckets<String>,
    /// Submissions answered 429 for their address.
    pub refused_address: std::sync::atomic::AtomicU64,
    /// Submissions answered 429 for their writer.
    pub refused_writer: std::sync::atomic::AtomicU64,
}

impl Quotas {
    /// Quotas at these rates, each table at most `max_keys` buckets.
    pub fn new(per_address: Rate, per_writer: Rate, max_keys: usize) -> Quotas {
        Quotas {
            per_address: Buckets::new(per_address, max_keys),
            per_writer: Buckets::new(per_writer, max_keys),
            refused_address: Default::default(),
            refused_writer: Default::default(),
        }
    }

    /// The quota metrics, in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let _ = writeln!(
            out,
            "# HELP gatelog_quota_refused_total Submissions answered 429, by the quota spent.\n# TYPE gatelog_quota_refused_total counter\ngatelog_quota_refused_total{{quota=\"address\"}} {}\ngatelog_quota_refused_total{{quota=\"writer\"}} {}",
            self.refused_address.load(Relaxed),
            self.refused_writer.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gatelog_quota_buckets Token buckets held, by quota.\n# TYPE gatelog_quota_buckets gauge\ngatelog_quota_buckets{{quota=\"address\"}} {}\ngatelog_quota_buckets{{quota=\"writer\"}} {}",
            self.per_address.len(),
            self.per_writer.len()
        );
    }
}

/// A rate and a burst; zero rate means no limit.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens a bucket holds (the burst a quiet client may send).
    pub burst: f64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by `K`, at most `max_keys` of them.
pub struct Buckets<K> {
    rate: Rate,
    max_keys: usize,
    table: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Buckets {
            rate,
            max_keys: max_keys.max(1),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key` at `now`; when there is none, how long until
    /// there is.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let Rate { per_second, burst } = self.rate;
        if per_second <= 0.0 {
            return Ok(());
        }
        let mut table = self.table.lock().expect("quota table");
        if !table.contains_key(key) && table.len() >= self.max_keys {
            Self::shrink(&mut table, self.rate, self.max_keys, now);
        }
        let bucket = table.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }

    /// Whether this quota limits anything (a zero rate does not).
    pub fn is_limited(&self) -> bool {
        self.rate.per_second > 0.0
    }

    /// Whether `key`'s bucket holds at least half its burst at `now`.
    pub fn at_least_half_full(&self, key: &K, now: Instant) -> bool {
        let table = self.table.lock().expect("quota table");
        table.get(key).is_none_or(|b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * self.rate.per_second >= self.rate.burst / 2.0
        })
    }

    /// Gives back a token taken for `key` (its submission turned out to
    /// cost nothing), up to the burst.
    pub fn refund(&self, key: &K) {
        if let Some(b) = self.table.lock().expect("quota table").get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(self.rate.burst);
        }
    }

    /// Drops the buckets that have refilled (as good as absent); if that
    /// is not enough, the fuller half.
    fn shrink(table: &mut HashMap<K, Bucket>, rate: Rate, max_keys: usize, now: Instant) {
        let level = |b: &Bucket| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate.per_second
        };
        table.retain(|_, b| level(b) < rate.burst);
        if table.len() >= max_keys {
            let mut levels: Vec<f64> = table.values().map(level).collect();
            let mid = levels.len() / 2;
            let (_, median, _) = levels.select_nth_unstable_by(mid, f64::total_cmp);
            let median = *median;
            table.retain(|_, b| level(b) < median);
            // Equal levels: drop arbitrarily until under the bound.
            while table.len() >= max_keys {
                let k = table.keys().next().cloned().expect("non-empty");
                table.remove(&k);
            }
        }
    }

    /// Buckets held (for the metrics and the memory bound).
    pub fn len(&self) -> usize {
        self.table.lock().expect("quota table").len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_then_retry_after() {
        let b = Buckets::new(
            Rate {
                per_second: 10.0,
                burst: 3.0,
            },
            16,
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.take(&"a", t0).is_ok());
        }
        let wait = b.take(&"a", t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        // Another key has its own bucket.
        assert!(b.take(&"b", t0).is_ok());
        // A tenth of a second later, one more.
        assert!(b.take(&"a", t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(&"a", t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_emptiest_buckets() {
        let b = Buckets::new(
            Rate {
                per_second: 1.0,
                burst: 2.0,
            },
            100,
        );
        let t0 = Instant::now();
        // One client spends its whole burst ...
        b.take(&u32::MAX, t0).unwrap();
        b.take(&u32::MAX, t0).unwrap();
        // ... then 10,000 addresses take one token each.
        for k in 0..10_000u32 {
            b.take(&k, t0).unwrap();
            assert!(b.len() <= 100);
        }
        // The spender was never evicted: the table keeps the emptiest.
        assert!(b.take(&u32::MAX, t0).is_err());
    }

    #[test]
    fn an_ipv6_host_cannot_rotate_through_its_64_for_fresh_quotas() {
        let a: std::net::IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: std::net::IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            address_key(mapped),
            "10.0.0.1".parse::<std::net::IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_tiny_rate_waits_long_and_never_panics() {
        let b = Buckets::new(
            Rate {
                per_second: 1e-300,
                burst: 1.0,
            },
            4,
        );
        let t0 = Instant::now();
        b.take(&1, t0).unwrap();
        assert_eq!(b.take(&1, t0).unwrap_err(), Duration::MAX);
    }

    #[test]
    fn a_refund_gives_back_a_token_and_half_full_says_when_to_look_first() {
        let b = Buckets::new(
            Rate {
                per_second: 0.001,
                burst: 4.0,
            },
            4,
        );
        let t0 = Instant::now();
        assert!(b.at_least_half_full(&1, t0), "an absent bucket is full");
        b.take(&1, t0).unwrap();
        b.take(&1, t0).unwrap();
        assert!(b.at_least_half_full(&1, t0));
        b.take(&1, t0).unwrap();
        assert!(!b.at_least_half_full(&1, t0));
        b.refund(&1);
        b.refund(&1);
        b.refund(&1);
        b.refund(&1);
        // Never above the burst.
        for _ in 0..4 {
            b.take(&1, t0).unwrap();
        }
        assert!(b.take(&1, t0).is_err());
        assert!(!Buckets::<u8>::new(
            Rate {
                per_second: 0.0,
                burst: 0.0
            },
            1
        )
        .is_limited());
    }

    #[test]
    fn zero_rate_is_no_limit() {
        let b = Buckets::new(
            Rate {
                per_second: 0.0,
                burst: 0.0,
            },
            1,
        );
        for k in 0..1000 {
            assert!(b.take(&k, Instant::now()).is_ok());
        }
        assert!(b.is_empty());
    }
}
