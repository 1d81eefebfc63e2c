//! The end of every request, on both paths: its metrics and its access-log line.

use super::vars::RequestVars;
use crate::metrics::METRICS;

/// Count a finished request in the metrics and write its access-log line.
pub fn log_request(vars: &RequestVars) {
    let ctx = vars.ctx;
    let status = vars.resp.map_or(0, |r| r.status.as_u16());
    let metrics = ctx.state.metrics(ctx.location);
    metrics.request(status, ctx.start.elapsed());
    if let (Some(u), Some(t)) = (ctx.upstream, ctx.upstream_time) {
        METRICS
            .upstream_seconds
            .with_label_values(&[&ctx.cfg().upstreams[u].name])
            .observe(t.as_secs_f64());
    }
    if ctx.cache_on {
        let label = if ctx.cache_status.is_empty() {
            "MISS"
        } else {
            ctx.cache_status
        };
        metrics.cache(label, ctx.memory_hit);
    }
    if let Some(log) = &ctx.state.access_log {
        log.log(vars);
    }
}
