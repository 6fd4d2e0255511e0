//! Counters and histograms, rendered in the Prometheus text format.
//!
//! Lock-free atomics: the sequencer and every request handler update them.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A histogram with fixed bucket upper bounds.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum of observations in millionths of the unit, to stay integral.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these bucket upper bounds.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Appends the histogram in Prometheus text.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.buckets) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Bucket bounds, in seconds, for latencies.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Bucket bounds, in seconds, for gate decisions (sub-millisecond).
const GATE_BOUNDS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0];

/// Everything the server reports on `/metrics`.
pub struct Metrics {
    /// New entries made durable.
    pub appends: AtomicU64,
    /// Submissions answered with an existing index.
    pub duplicates: AtomicU64,
    /// Submissions refused because the queue was full.
    pub overloaded: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Submissions per batch.
    pub batch_size: Histogram,
    /// Time from a submission's arrival to its answer being ready.
    pub integration_latency: Histogram,
    /// Time to write and fsync one batch.
    pub commit_latency: Histogram,
    /// Leaves in the tree.
    pub tree_size: AtomicU64,
    /// Time the gate takes to decide one executionIntent or review.
    pub gate_decision: Histogram,
    /// Statements the gate refused (each recorded as a gateRefusal).
    pub gate_refusals: AtomicU64,
    /// Entries rejected unlogged (signature, identity, links).
    pub rejected: AtomicU64,
    /// Time to check one batch's signatures.
    pub signature_check: Histogram,
    /// Signatures in each batch the HTTP layer's signature thread checks
    /// (small batches cost up to twice as much per signature).
    pub signature_batch: Histogram,
    /// HTTP responses by status class (index: status / 100).
    pub responses: [AtomicU64; 6],
    /// Batches (or idle catch-ups) that found the shared store unavailable.
    pub store_unavailable: AtomicU64,
    /// Entries other nodes committed that this node caught up on.
    pub followed: AtomicU64,
    /// Commits that failed midway on a shared store, after which the
    /// node rebuilt its gate from the stored log.
    pub recoveries: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            appends: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_size: Histogram::new(BATCH_BOUNDS),
            integration_latency: Histogram::new(LATENCY_BOUNDS),
            commit_latency: Histogram::new(LATENCY_BOUNDS),
            tree_size: AtomicU64::new(0),
            gate_decision: Histogram::new(GATE_BOUNDS),
            gate_refusals: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            signature_check: Histogram::new(LATENCY_BOUNDS),
            signature_batch: Histogram::new(BATCH_BOUNDS),
            responses: Default::default(),
            store_unavailable: AtomicU64::new(0),
            followed: AtomicU64::new(0),
            recoveries: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one HTTP response.
    pub fn count_response(&self, status: u16) {
        if let Some(c) = self.responses.get((status / 100) as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counters = [
            (
                "gatelog_appends_total",
                "New entries made durable.",
                &self.appends,
            ),
            (
                "gatelog_duplicates_total",
                "Submissions answered with an existing index.",
                &self.duplicates,
            ),
            (
                "gatelog_overloaded_total",
                "Submissions refused with 503 because the queue was full.",
                &self.overloaded,
            ),
            ("gatelog_batches_total", "Batches committed.", &self.batches),
            (
                "gatelog_gate_refusals_total",
                "Statements the gate refused, each recorded as a gateRefusal entry.",
                &self.gate_refusals,
            ),
            (
                "gatelog_rejected_total",
                "Entries rejected without logging (signature, identity, links).",
                &self.rejected,
            ),
            (
                "gatelog_store_unavailable_total",
                "Batches failed with 503, or catch-ups skipped, because the shared store was unavailable.",
                &self.store_unavailable,
            ),
            (
                "gatelog_followed_total",
                "Entries other nodes committed that this node caught up on.",
                &self.followed,
            ),
            (
                "gatelog_recoveries_total",
                "Commits that failed midway on a shared store (the node rebuilt its gate from the stored log).",
                &self.recoveries,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatelog_tree_size Leaves in the tree.\n# TYPE gatelog_tree_size gauge\ngatelog_tree_size {}",
            self.tree_size.load(Relaxed)
        );
        self.batch_size.render(
            &mut out,
            "gatelog_batch_size",
            "Submissions per sequenced batch.",
        );
        self.integration_latency.render(
            &mut out,
            "gatelog_integration_latency_seconds",
            "From a submission's arrival to its durable, checkpointed answer.",
        );
        self.commit_latency.render(
            &mut out,
            "gatelog_commit_latency_seconds",
            "Time to write and fsync one batch.",
        );
        self.gate_decision.render(
            &mut out,
            "gatelog_gate_decision_seconds",
            "Time the gate takes to decide one executionIntent or review (rules 1-7).",
        );
        self.signature_check.render(
            &mut out,
            "gatelog_signature_check_seconds",
            "Time to check one batch's entry signatures (one batch verification).",
        );
        self.signature_batch.render(
            &mut out,
            "gatelog_signature_batch_entries",
            "Signatures in each batch checked before the gate (the HTTP layer's signature thread).",
        );
        let _ = writeln!(
            out,
            "# HELP gatelog_http_responses_total HTTP responses by status class.\n# TYPE gatelog_http_responses_total counter"
        );
        for (class, c) in self.responses.iter().enumerate().skip(1) {
            let _ = writeln!(
                out,
                "gatelog_http_responses_total{{class=\"{class}xx\"}} {}",
                c.load(Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.batch_size.observe(3.0);
        m.batch_size.observe(300.0);
        let text = m.render();
        assert!(text.contains("gatelog_batch_size_bucket{le=\"4\"} 1"));
        assert!(text.contains("gatelog_batch_size_bucket{le=\"1024\"} 2"));
        assert!(text.contains("gatelog_batch_size_count 2"));
    }
}
