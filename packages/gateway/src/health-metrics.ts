// The active health checks as Prometheus metrics: each target's state, each probe's duration and failures.
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import type { TargetReport } from '@tollgate/router';
import type { createProviderRouter } from '@tollgate/router/upstreams';

/** How one round of one health check ended, as the provider router tells it. */
type ProbeEvent = Parameters<NonNullable<Parameters<typeof createProviderRouter>[1]['observeProbe']>>[0];

interface HealthMetrics {
  /** Told how each check's round ended. */
  observeProbe(event: ProbeEvent): void;
  /** Reads each routing target's state from `routes` when scraped. */
  watchTargets(routes: { health(): readonly TargetReport[] }): void;
}

/** Registers the health-check metrics in `registry`. */
export function registerHealthMetrics(registry: Registry): HealthMetrics {
  const duration = new Histogram({
    name: 'tollgate_upstream_probe_duration_seconds',
    help: 'Time each health probe of an upstream took, in seconds (failures included).',
    labelNames: ['upstream'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const failures = new Counter({
    name: 'tollgate_upstream_probe_failures_total',
    help: 'Health check rounds of an upstream that failed (its probe, or its status page reporting an outage).',
    labelNames: ['upstream'],
    registers: [registry],
  });
  return {
    observeProbe(event) {
      duration.observe({ upstream: event.upstream }, event.seconds);
      if (!event.ok) failures.inc({ upstream: event.upstream });
    },
    watchTargets(routes) {
      new Gauge({
        name: 'tollgate_route_health_state',
        help: 'Health checks of each routing target: 1 in routing, 0 taken out (absent before the first round).',
        labelNames: ['target', 'upstream', 'model'],
        registers: [registry],
        collect() {
          this.reset();
          for (const { target, upstream, model, probe } of routes.health())
            if (probe) this.set({ target, upstream, model }, probe.state === 'up' ? 1 : 0);
        },
      });
    },
  };
}
