//! The end of every request, on both paths: its metrics and its access-log line (at once, or
//! once the client has taken a buffered answer).

use super::vars::{head_len, write_at_send, RequestVars};
use crate::metrics::METRICS;
use crate::state::State;
use crate::template::{Var, VarSource};
use std::sync::Arc;
use std::time::Instant;

/// Count a finished request in the metrics and write its access-log line.
pub fn log_request(vars: &RequestVars) {
    count_request(vars);
    if let Some(log) = &vars.ctx.state.access_log {
        log.log(vars);
    }
}

/// Count a finished request in the metrics.
pub fn count_request(vars: &RequestVars) {
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
}

/// The access-log line of a request whose answer still waits for its client (`buffering`):
/// its values taken now, the clocks and the bytes sent when the client has it all or is gone,
/// as NGINX logs a request once its last byte is sent.
pub struct PendingLine {
    state: Arc<State>,
    /// The format's other variables, as rendered now (repeats once).
    values: Vec<(Var, String)>,
    start: Instant,
    head: usize,
    body: usize,
}

impl PendingLine {
    /// `None` without an access log.
    pub fn of(vars: &RequestVars) -> Option<PendingLine> {
        let state = vars.ctx.state.clone();
        let log = state.access_log.as_ref()?;
        let mut values: Vec<(Var, String)> = Vec::new();
        for var in log.format().vars() {
            if !var.at_send() && !values.iter().any(|(v, _)| v == var) {
                let mut value = String::new();
                vars.write_var(var, &mut value);
                values.push((var.clone(), value));
            }
        }
        Some(PendingLine {
            values,
            start: vars.ctx.start,
            head: vars.resp.map_or(0, head_len),
            body: vars.body_bytes_sent,
            state,
        })
    }

    /// Write the line; `unsent` bytes of the answer never reached the client.
    pub fn write(self, unsent: u64) {
        if let Some(log) = &self.state.access_log {
            log.log(&Sent {
                line: &self,
                unsent: usize::try_from(unsent).unwrap_or(usize::MAX),
            });
        }
    }
}

/// A pending line's values, with those known at the end.
struct Sent<'a> {
    line: &'a PendingLine,
    unsent: usize,
}

impl VarSource for Sent<'_> {
    fn write_var(&self, var: &Var, out: &mut String) {
        let line = self.line;
        if var.at_send() {
            // what never left the backlog is the end of the body, then of the head
            let body = line.body.saturating_sub(self.unsent);
            let head = (line.head + line.body).saturating_sub(self.unsent) - body;
            write_at_send(var, line.start, || head, body, out);
        } else if let Some((_, value)) = line.values.iter().find(|(v, _)| v == var) {
            out.push_str(value);
        }
    }
}
