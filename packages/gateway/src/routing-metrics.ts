// The router's state as Prometheus gauges: each target's breaker, time to first byte, calls and failures, read at scrape time.
import { Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { TargetReport } from '@tollgate/router';

/** 0 closed, 1 half-open (a probe may go), 2 open (calls refused). */
const BREAKER_VALUE: Readonly<Record<TargetReport['breaker'], number>> = { closed: 0, 'half-open': 1, open: 2 };

/** Registers the routing gauges in `registry`; they read the router when scraped, never on the request path. */
export function registerRoutingMetrics(registry: Registry, routes: { health(): readonly TargetReport[] }): void {
  const labelNames = ['target', 'upstream', 'model'] as const;
  const gauge = (name: string, help: string, read: (report: TargetReport) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const report of routes.health()) {
          const value = read(report);
          if (value !== undefined)
            this.set({ target: report.target, upstream: report.upstream, model: report.model }, value);
        }
      },
    });
  gauge(
    'tollgate_route_breaker_state',
    'Circuit breaker of each routing target: 0 closed, 1 half-open, 2 open.',
    (report) => BREAKER_VALUE[report.breaker],
  );
  gauge(
    'tollgate_route_ttfb_ms',
    'Moving average of the time to first byte of each routing target, in milliseconds.',
    (report) => report.ttfbMs,
  );
  gauge(
    'tollgate_route_calls',
    'Calls made to each routing target since start (retries included).',
    (report) => report.calls,
  );
  gauge(
    'tollgate_route_failures',
    'Calls to each routing target that failed since start.',
    (report) => report.failures,
  );
}
