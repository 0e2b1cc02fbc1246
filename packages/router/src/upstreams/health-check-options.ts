// The `healthChecks` options (and the older `healthProbe`), checked and resolved once at start.
import { parseDuration, TollgateError } from '@tollgate/core';

/** @deprecated `healthChecks` with `failAfter: 1, passAfter: 1`: what this older name meant (the last probe decides). */
export interface HealthProbeConfig {
  /** Milliseconds between probes. @default 30000 */
  intervalMs?: number;
  /** Milliseconds a probe may take. @default 5000 */
  timeoutMs?: number;
}

/** Active health checks of every routing target: a target that fails them is taken out of routing until they pass. */
export interface HealthChecksConfig {
  /** Between two rounds of probes: ms or a duration ("30s"). @default "30s" */
  interval?: number | string;
  /** How long a probe may take. @default "5s" */
  timeout?: number | string;
  /** Failed rounds in a row that take a target out of routing. @default 2 */
  failAfter?: number;
  /** Passed rounds in a row that put it back. @default 2 */
  passAfter?: number;
  /**
   * Also read the providers' public status pages (Statuspage JSON): true for the kinds' own (OpenAI, Anthropic), or
   * upstream name → URL (`false` for none). A `major` or `critical` indicator fails the round. @default false
   */
  statusPages?: boolean | Record<string, string | false>;
  /**
   * What is sent: `models` lists the upstream's models (free), `one-token` asks each target's model for one output
   * token (billed by the provider for every target and round). @default "models"
   */
  probe?: 'models' | 'one-token';
}

/** The health checks' options, resolved once. */
export interface ResolvedHealthChecks {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly failAfter: number;
  readonly passAfter: number;
  /** Each target's model is asked for one token (paid), rather than its upstream's model list. */
  readonly oneToken: boolean;
  readonly statusPages: NonNullable<HealthChecksConfig['statusPages']>;
}

const KNOWN = ['interval', 'timeout', 'failAfter', 'passAfter', 'statusPages', 'probe'];

function fail(message: string): never {
  throw new TollgateError('ERR_TG_ROUTER_BAD_OPTION', message);
}

function count(value: unknown, path: string): number {
  if (value === undefined) return 2;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) fail(`${path} must be a positive integer`);
  return value;
}

function statusPagesOf(value: unknown): ResolvedHealthChecks['statusPages'] {
  if (value === undefined) return false;
  if (typeof value === 'boolean') return value;
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail('healthChecks.statusPages must be true, false or an object of upstream name → URL');
  for (const [name, url] of Object.entries(value))
    if (url !== false && (typeof url !== 'string' || !/^https?:$/.test(URL.parse(url)?.protocol ?? '')))
      fail(`healthChecks.statusPages.${name} must be an http(s) URL or false`);
  return value as Record<string, string | false>;
}

/**
 * `healthChecks` resolved (the older `healthProbe` as what it meant: the last probe decides), or undefined when the
 * config asks for none. Throws a TollgateError naming the field.
 */
export function resolveHealthChecks(config: {
  healthChecks?: HealthChecksConfig | undefined;
  healthProbe?: HealthProbeConfig | undefined;
}): ResolvedHealthChecks | undefined {
  const { healthChecks, healthProbe } = config;
  if (healthChecks !== undefined && healthProbe !== undefined)
    fail('healthProbe is the older name of healthChecks: give one of them');
  if (healthProbe !== undefined) {
    const { intervalMs = 30_000, timeoutMs = 5000 } = healthProbe;
    for (const [name, value] of Object.entries({ intervalMs, timeoutMs }))
      if (!Number.isInteger(value) || value < 1) fail(`healthProbe.${name} must be a positive integer`);
    return { intervalMs, timeoutMs, failAfter: 1, passAfter: 1, oneToken: false, statusPages: false };
  }
  if (healthChecks === undefined) return undefined;
  if (typeof healthChecks !== 'object' || healthChecks === null) fail('healthChecks must be an object');
  for (const name of Object.keys(healthChecks))
    if (!KNOWN.includes(name)) fail(`healthChecks.${name} is not an option (known: ${KNOWN.join(', ')})`);
  const { probe = 'models' } = healthChecks;
  if (probe !== 'models' && probe !== 'one-token') fail('healthChecks.probe must be "models" or "one-token"');
  const duration = (value: number | string | undefined, fallback: string, path: string) => {
    try {
      return parseDuration(value ?? fallback, path);
    } catch (error) {
      return fail(error instanceof Error ? error.message : String(error));
    }
  };
  return {
    intervalMs: duration(healthChecks.interval, '30s', 'healthChecks.interval'),
    timeoutMs: duration(healthChecks.timeout, '5s', 'healthChecks.timeout'),
    failAfter: count(healthChecks.failAfter, 'healthChecks.failAfter'),
    passAfter: count(healthChecks.passAfter, 'healthChecks.passAfter'),
    oneToken: probe === 'one-token',
    statusPages: statusPagesOf(healthChecks.statusPages),
  };
}
