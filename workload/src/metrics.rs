//! Prometheus metrics with the names of livepatch-server.md §11, exactly: existing dashboards and
//! alerts query them. The `prometheus` crate is used rather than `prometheus-client` because the
//! latter appends `_total` to every counter (OpenMetrics), which would rename
//! `livepatch_server_httpgovernor_request_overload` and break those queries.
//!
//! One registry per server instance (not the global one), so tests can run several servers in
//! one process.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric the server exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `handler` (route pattern), `method`, `code`.
    pub http_request_duration: HistogramVec,
    /// `token_type`.
    pub http_auth_duration: HistogramVec,
    /// `token`: auth, machine, admin, basic, sync.
    pub http_authorizer_count: IntCounterVec,
    /// Requests the governor turned away.
    pub governor_overload: IntCounter,
    /// Check-ins that sent `cutoff-date`.
    pub cutoff_date_count: IntCounter,
    /// Check-ins that sent `patch-delay-hours`.
    pub patch_delay_count: IntCounter,
    /// `method`: the query's name.
    pub database_query_duration: HistogramVec,
    /// Failed queries.
    pub database_error_count: IntCounter,
    /// Check-ins for a kernel no patch in the database was built for.
    pub updates_with_unknown_kernel: IntCounter,
    /// The patch cache's hits, misses, evictions and length.
    pub cache: crate::cache::CacheMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.clone()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let http_request_duration = histogram(
            "livepatch_server_http_request_duration_seconds",
            "HTTP request duration by route pattern, method and status code.",
            &["handler", "method", "code"],
        );
        let http_auth_duration = histogram(
            "livepatch_server_http_auth_duration_seconds",
            "Time spent authenticating a request.",
            &["token_type"],
        );
        let http_authorizer_count = IntCounterVec::new(
            Opts::new(
                "livepatch_server_http_authorizer_count",
                "Requests authorised, by credential type.",
            ),
            &["token"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_authorizer_count.clone()))
            .expect("unique metric");
        let database_query_duration = histogram(
            "livepatch_server_database_query_duration_seconds",
            "Database query duration by query name.",
            &["method"],
        );
        let length = IntGauge::new(
            "livepatch_server_patch_cache_length",
            "Patch files held in the patch cache.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(length.clone()))
            .expect("unique metric");
        let cache = crate::cache::CacheMetrics {
            hits: counter(
                "livepatch_server_patch_cache_hits",
                "Patch downloads served from the patch cache.",
            ),
            misses: counter(
                "livepatch_server_patch_cache_misses",
                "Patch downloads the patch cache could not serve.",
            ),
            evictions: counter(
                "livepatch_server_patch_cache_evictions",
                "Patch files dropped from the patch cache (over its size or idle past its TTL).",
            ),
            length,
        };
        Self {
            cache,
            http_request_duration,
            http_auth_duration,
            http_authorizer_count,
            governor_overload: counter(
                "livepatch_server_httpgovernor_request_overload",
                "Requests rejected by the HTTP governor because its queue was full.",
            ),
            cutoff_date_count: counter(
                "livepatch_server_http_cutoff_date_count",
                "Update requests with a cutoff date.",
            ),
            patch_delay_count: counter(
                "livepatch_server_http_patch_delay_count",
                "Update requests with a patch delay.",
            ),
            database_query_duration,
            database_error_count: counter(
                "livepatch_server_database_error_count",
                "Failed database queries.",
            ),
            updates_with_unknown_kernel: counter(
                "livepatch_client_updates_with_unknown_kernel_total",
                "Update requests for a kernel no patch was built for.",
            ),
            registry,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_exactly_those_dashboards_use() {
        let m = Metrics::new();
        m.governor_overload.inc();
        m.http_request_duration
            .with_label_values(&["/v1/client/{machine_id}/updates", "POST", "200"])
            .observe(0.01);
        m.http_auth_duration
            .with_label_values(&["machine"])
            .observe(0.001);
        m.http_authorizer_count
            .with_label_values(&["machine"])
            .inc();
        m.database_query_duration
            .with_label_values(&["GetMachine"])
            .observe(0.001);
        let text = m.render();
        for name in [
            "livepatch_server_httpgovernor_request_overload 1",
            "livepatch_server_http_request_duration_seconds_bucket{code=\"200\",handler=\"/v1/client/{machine_id}/updates\",method=\"POST\"",
            "livepatch_server_http_auth_duration_seconds_count{token_type=\"machine\"} 1",
            "livepatch_server_http_authorizer_count{token=\"machine\"} 1",
            "livepatch_server_database_query_duration_seconds_count{method=\"GetMachine\"} 1",
            "livepatch_server_database_error_count 0",
            "livepatch_server_http_cutoff_date_count 0",
            "livepatch_server_http_patch_delay_count 0",
            "livepatch_client_updates_with_unknown_kernel_total 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        assert!(!text.contains("request_overload_total"));
    }
}
