// The router's state as Prometheus metrics read at scrape time: each target's breaker, time to first byte, calls and
// failures.
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { TargetReport } from '@tollgate/router';

/** 0 closed, 1 half-open (a probe may go), 2 open (calls refused). */
const BREAKER_VALUE: Readonly<Record<TargetReport['breaker'], number>> = { closed: 0, 'half-open': 1, open: 2 };

type Kind = typeof Gauge | typeof Counter;

/**
 * Registers the routing metrics in `registry`; they read the router when scraped, never on the request path. Calls and
 * failures are counts since start, so they are counters (`_total`, set to the router's figure at each scrape); the
 * breaker and the moving average of the time to first byte are gauges, the latter in seconds as every duration.
 */
export function registerRoutingMetrics(registry: Registry, routes: { health(): readonly TargetReport[] }): void {
  const labelNames = ['target', 'upstream', 'model'] as const;
  const metric = (kind: Kind, name: string, help: string, read: (report: TargetReport) => number | undefined) =>
    new kind({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const report of routes.health()) {
          const value = read(report);
          if (value === undefined) continue;
          const labels = { target: report.target, upstream: report.upstream, model: report.model };
          if (this instanceof Gauge) this.set(labels, value);
          else this.inc(labels, value);
        }
      },
    });
  metric(
    Gauge,
    'tollgate_route_breaker_state',
    'Circuit breaker of each routing target: 0 closed, 1 half-open, 2 open.',
    (report) => BREAKER_VALUE[report.breaker],
  );
  metric(
    Gauge,
    'tollgate_route_ttfb_seconds',
    'Moving average of the time to first byte of each routing target, in seconds.',
    (report) => (report.ttfbMs === undefined ? undefined : report.ttfbMs / 1000),
  );
  metric(
    Counter,
    'tollgate_route_calls_total',
    'Calls made to each routing target since start (retries included).',
    (report) => report.calls,
  );
  metric(
    Counter,
    'tollgate_route_failures_total',
    'Calls to each routing target that failed since start.',
    (report) => report.failures,
  );
}
