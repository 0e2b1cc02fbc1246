// Which upstreams answer: the active probe of each upstream (`healthProbe`), for /healthz and the routing report.
import type { TargetReport } from '../index.js';
import type { HealthProbeConfig } from './routing-config.js';
import type { Upstream } from './upstream.js';

export type ProbeReport = NonNullable<TargetReport['probe']>;

export interface UpstreamProbes {
  /** The last probe of `upstream`; undefined before its first one ended. */
  last(upstream: string): ProbeReport | undefined;
  /** The upstreams whose last probe failed. */
  failing(): string[];
  /** Stops the probes. */
  close(): void;
}

/**
 * Probes every upstream now and every `intervalMs`: a token-free call (its model list, `Upstream.probe`), ok when it
 * answers 2xx within `timeoutMs`. One round at a time; the timer never keeps the process alive.
 */
export function probeUpstreams(upstreams: ReadonlyMap<string, Upstream>, config: HealthProbeConfig): UpstreamProbes {
  const timeoutMs = config.timeoutMs ?? 5000;
  const last = new Map<string, ProbeReport>();
  let running = false;
  const probeAll = async () => {
    if (running) return;
    running = true;
    await Promise.all(
      [...upstreams.values()].map(async (upstream) => {
        const result = await upstream.probe(timeoutMs);
        last.set(upstream.name, {
          ok: result.ok,
          at: new Date().toISOString(),
          ...(result.detail ? { detail: result.detail } : {}),
        });
      }),
    );
    running = false;
  };
  const timer = setInterval(() => void probeAll(), config.intervalMs ?? 30_000);
  timer.unref();
  void probeAll();
  return {
    last: (upstream) => last.get(upstream),
    failing: () => [...last].flatMap(([name, report]) => (report.ok ? [] : [name])),
    close: () => clearInterval(timer),
  };
}
