// Which upstreams and targets answer: the active health checks (`healthChecks`), with hysteresis, that routing skips
// on and /healthz, the metrics and the dashboard report.
import { request } from 'undici';
import { upstreamKinds } from '@tollgate/providers/routes';
import type { TargetReport } from '../index.js';
import type { ResolvedHealthChecks } from './health-check-options.js';
import type { ProbeResult, Upstream } from './upstream.js';

export type ProbeReport = NonNullable<TargetReport['probe']>;

/** How one round of one check ended (the metrics). */
export interface ProbeEvent {
  upstream: string;
  /** `upstream/model` for a one-token probe; absent when the check covers the whole upstream. */
  target?: string;
  ok: boolean;
  seconds: number;
  /** The check's verdict after this round. */
  state: ProbeReport['state'];
}

export interface UpstreamProbes {
  /** The checks' word on a target of `upstream` serving `model` (its own check, else its upstream's); undefined before the first round ended. */
  last(upstream: string, model?: string): ProbeReport | undefined;
  /** Whether the checks took that target out of routing. */
  down(upstream: string, model?: string): boolean;
  /** The upstreams one of whose checks is down. */
  failing(): string[];
  /** Stops the probes. */
  close(): void;
}

/** The status page an upstream's checks read, when the config reads any: its own entry, else its kind's. */
function statusPageOf(upstream: Upstream, pages: ResolvedHealthChecks['statusPages']): string | undefined {
  if (pages === false) return undefined;
  const own = pages === true ? undefined : pages[upstream.name];
  if (own === false) return undefined;
  return own ?? upstreamKinds().get(upstream.api)?.wire.statusPage;
}

/**
 * A provider's public status page (Statuspage JSON: `status.indicator` none, minor, major or critical): a major or
 * critical outage fails the round. A page that cannot be read says nothing of the provider: it passes, with why.
 */
async function readStatusPage(url: string, timeoutMs: number): Promise<{ ok: boolean; detail?: string }> {
  try {
    const answer = await request(url, {
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (answer.statusCode >= 300) {
      await answer.body.dump();
      return { ok: true, detail: `status page unreadable: HTTP ${answer.statusCode}` };
    }
    const page = (await answer.body.json()) as { status?: { indicator?: unknown; description?: unknown } } | null;
    const indicator = page?.status?.indicator;
    if (indicator === 'major' || indicator === 'critical') {
      const description = typeof page?.status?.description === 'string' ? `: ${page.status.description}` : '';
      return { ok: false, detail: `status page reports a ${indicator} outage${description}` };
    }
    return typeof indicator === 'string' ? { ok: true } : { ok: true, detail: 'status page has no status.indicator' };
  } catch (error) {
    return { ok: true, detail: `status page unreadable: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/** One check: an upstream's model list, or one target's one-token call, with its status page; its hysteresis. */
class Check {
  private up = true;
  private fails = 0;
  private passes = 0;
  last: ProbeReport | undefined;

  constructor(
    readonly upstream: Upstream,
    readonly model: string | undefined,
    readonly statusPage: string | undefined,
  ) {}

  get down(): boolean {
    return !this.up;
  }

  /** A round's result: `failAfter` failures in a row take the check down, `passAfter` passes bring it back. */
  note(probe: ProbeResult, page: { ok: boolean; detail?: string } | undefined, config: ResolvedHealthChecks): void {
    const ok = probe.ok && (page?.ok ?? true);
    if (ok) {
      this.fails = 0;
      this.passes++;
      if (!this.up && this.passes >= config.passAfter) this.up = true;
    } else {
      this.passes = 0;
      this.fails++;
      if (this.up && this.fails >= config.failAfter) this.up = false;
    }
    const detail = [probe.detail, page?.detail].filter(Boolean).join('; ');
    this.last = {
      ok,
      state: this.up ? 'up' : 'down',
      at: new Date().toISOString(),
      latencyMs: Math.round(probe.ms),
      ...(detail ? { detail } : {}),
    };
  }
}

/**
 * Probes now and every interval, one round at a time: each upstream's model list (free), or with `one-token` each
 * target's model (paid; an upstream outside every target still gets its model list), plus its status page when the
 * config reads them. The timer never keeps the process alive.
 */
export function probeUpstreams(
  upstreams: ReadonlyMap<string, Upstream>,
  targets: readonly { upstream: string; model: string }[],
  config: ResolvedHealthChecks,
  observe?: (event: ProbeEvent) => void,
): UpstreamProbes {
  const checks = new Map<string, Check>();
  const keyOf = (upstream: string, model?: string) => (model === undefined ? upstream : `${upstream}/${model}`);
  for (const target of config.oneToken ? targets : []) {
    const upstream = upstreams.get(target.upstream)!;
    const key = keyOf(target.upstream, target.model);
    checks.set(key, new Check(upstream, target.model, statusPageOf(upstream, config.statusPages)));
  }
  for (const upstream of upstreams.values())
    if (!config.oneToken || !targets.some((target) => target.upstream === upstream.name))
      checks.set(upstream.name, new Check(upstream, undefined, statusPageOf(upstream, config.statusPages)));

  let running = false;
  async function probeAll(): Promise<void> {
    if (running) return;
    running = true;
    // A page read once per round, however many checks share it.
    const pages = new Map<string, Promise<{ ok: boolean; detail?: string }>>();
    const pageOf = (url: string) => {
      let read = pages.get(url);
      if (!read) pages.set(url, (read = readStatusPage(url, config.timeoutMs)));
      return read;
    };
    await Promise.all(
      [...checks.values()].map(async (check) => {
        const [probe, page] = await Promise.all([
          check.upstream.probe(config.timeoutMs, check.model),
          check.statusPage === undefined ? undefined : pageOf(check.statusPage),
        ]);
        check.note(probe, page, config);
        observe?.({
          upstream: check.upstream.name,
          ...(check.model === undefined ? {} : { target: keyOf(check.upstream.name, check.model) }),
          ok: check.last!.ok,
          seconds: probe.ms / 1000,
          state: check.last!.state,
        });
      }),
    );
    running = false;
  }
  const timer = setInterval(() => void probeAll(), config.intervalMs);
  timer.unref();
  void probeAll();
  const checkOf = (upstream: string, model?: string) => checks.get(keyOf(upstream, model)) ?? checks.get(upstream);
  return {
    last: (upstream, model) => checkOf(upstream, model)?.last,
    down: (upstream, model) => checkOf(upstream, model)?.down ?? false,
    failing: () => [...new Set([...checks.values()].flatMap((check) => (check.down ? [check.upstream.name] : [])))],
    close: () => clearInterval(timer),
  };
}
