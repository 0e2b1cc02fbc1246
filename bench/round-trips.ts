// Benchmark 4: Redis commands and round trips per request, counted by a relay between the app and Redis.
import { startServer, type ServerSpec } from './lib/child.js';
import { authHeaders, CHAT_BODY, CHAT_PATH } from './lib/fixtures.js';
import { RedisCommandCounter, type SeenCommand } from './lib/redis-counter.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtNumber, notMeasured, table } from './lib/stats.js';
import { closeTimedRequests, timedRequest } from './lib/timed-request.js';

interface CountCase {
  name: string;
  spec: (redisUrl: string, upstream: string) => ServerSpec;
  /** The case forwards to the mock upstream (the proxy), which is started first. */
  needsUpstream?: boolean;
}

/** Which middleware sends a command, from the key it touches (the bench chooses the limiter prefixes). */
function ownerOf(label: string): string {
  if (label.startsWith('EVALSHA(bundle)') || label.startsWith('EVAL(bundle)'))
    return 'store script bundle (every store operation of the turn)';
  if (label.includes('{keys}')) return 'apiKeyAuth (key store lookup)';
  if (label.includes('{ledger}')) return 'budgetGuard (reservation ledger)';
  if (/tokens:|:wc:/.test(label)) return 'tokenRateLimit (window counter)';
  if (label.includes(':rl:')) return 'tieredRateLimit (rate-limit-redis script)';
  if (label.includes(':erl:')) return 'express-rate-limit (rate-limit-redis script)';
  if (label.includes(':rlf')) return 'rate-limiter-flexible';
  return '';
}

export interface CaseCount {
  name: string;
  requests: number;
  commandsBefore: number;
  commandsAfter: number;
  tripsBefore: number;
  tripsAfter: number;
  breakdown: Map<string, { before: number; after: number }>;
  failures: number;
}

function keyPattern(key: string | undefined, prefix: string): string {
  if (key === undefined) return '';
  return key
    .replaceAll(prefix, '<prefix>')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<uuid>')
    .replace(/[0-9a-f]{16,}/gi, '<hex>')
    .replace(/\d{6,}/g, '<n>');
}

export async function countRoundTrips(
  context: BenchContext,
  benchCase: CountCase,
  requests: number,
): Promise<CaseCount> {
  const { counter, relayUrl } = await RedisCommandCounter.inFrontOf();
  const upstream = benchCase.needsUpstream ? await startServer({ app: 'mock-upstream' }) : undefined;
  const server = await startServer(benchCase.spec(relayUrl, upstream?.url ?? '')).catch(async (error: unknown) => {
    await upstream?.close();
    await counter.close();
    throw error;
  });
  try {
    const url = `${server.url}${CHAT_PATH}`;
    // Warm-up: connection handshakes, script loads and first-use lookups are not per-request costs.
    for (let i = 0; i < 20; i++) await timedRequest(url, CHAT_BODY, authHeaders());
    await counter.quiet(50, 1000);
    const count: CaseCount = {
      name: benchCase.name,
      requests,
      commandsBefore: 0,
      commandsAfter: 0,
      tripsBefore: 0,
      tripsAfter: 0,
      breakdown: new Map(),
      failures: 0,
    };
    const add = (seen: SeenCommand[], phase: 'before' | 'after') => {
      for (const command of seen) {
        const label = `${command.name} ${keyPattern(command.key, context.redisPrefix)}`.trim();
        const entry = count.breakdown.get(label) ?? { before: 0, after: 0 };
        entry[phase]++;
        count.breakdown.set(label, entry);
      }
    };
    for (let i = 0; i < requests; i++) {
      const trip = await counter.trip(async () => {
        if ((await timedRequest(url, CHAT_BODY, authHeaders())).status !== 200) count.failures++;
      });
      add(trip.before, 'before');
      add(trip.after, 'after');
      count.commandsBefore += trip.before.length;
      count.commandsAfter += trip.after.length;
      count.tripsBefore += trip.tripsBefore;
      count.tripsAfter += trip.tripsAfter;
    }
    return count;
  } finally {
    await server.close();
    await upstream?.close();
    await counter.close();
    await closeTimedRequests();
  }
}

export async function runRoundTripBenchmark(context: BenchContext): Promise<SectionResult> {
  const requests = context.quick ? 40 : 200;
  const prefix = (suffix: string) => `${context.redisPrefix}rt:${suffix}:`;
  const cases: CountCase[] = [
    {
      name: 'express-rate-limit + rate-limit-redis',
      spec: (redisUrl) => ({ app: 'express-rate-limit-redis', options: { redisUrl, prefix: prefix('erl') } }),
    },
    {
      name: 'rate-limiter-flexible (Redis)',
      spec: (redisUrl) => ({ app: 'rate-limiter-flexible-redis', options: { redisUrl, prefix: prefix('rlf') } }),
    },
    {
      name: 'tollgate full chain (Redis)',
      spec: (redisUrl) => ({
        app: 'tollgate-chain',
        options: { store: 'redis', redisUrl, prefix: prefix('tollgate') },
      }),
    },
    {
      name: 'tollgate full chain (Redis, batch: false)',
      spec: (redisUrl) => ({
        app: 'tollgate-chain',
        options: { store: 'redis', batch: false, redisUrl, prefix: prefix('unbatched') },
      }),
    },
    {
      name: 'tollgate unfused chain (Redis)',
      spec: (redisUrl) => ({
        app: 'tollgate-chain',
        options: { store: 'redis', fused: false, redisUrl, prefix: prefix('unfused') },
      }),
    },
    {
      name: 'tollgate example proxy (Redis)',
      spec: (redisUrl, upstream) => ({
        app: 'proxy',
        options: { store: 'redis', redisUrl, upstream, prefix: prefix('proxy') },
      }),
      needsUpstream: true,
    },
  ];
  const counts: CaseCount[] = [];
  const missing: string[] = [];
  for (const benchCase of cases) {
    try {
      counts.push(await countRoundTrips(context, benchCase, requests));
      context.log(`round trips: ${benchCase.name} counted`);
    } catch (error) {
      missing.push(`${benchCase.name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return describeCounts(counts, missing, requests);
}

const per = (n: number, requests: number) => fmtNumber(n / requests, 2);

/** The commands a case sent on the wire, by name, per request: what INFO commandstats counts beside what scripts run. */
function sentCommands(count: CaseCount): string {
  const byName = new Map<string, number>();
  for (const [label, n] of count.breakdown) {
    const name = label.split(' ')[0]!;
    byName.set(name, (byName.get(name) ?? 0) + n.before + n.after);
  }
  return [...byName.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name} ${per(n, count.requests)}`)
    .join(', ');
}

/**
 * The counts of each case as a table: commands and round trips per request, before the answer and after, then the
 * total round trips (or, with `sent`, the commands sent by name).
 */
export function countsTable(counts: CaseCount[], last: 'total' | 'sent' = 'total'): string {
  return table(
    [
      'case',
      'commands/req before answer',
      'round trips/req before answer',
      'commands/req after',
      'round trips/req after',
      last === 'total' ? 'total round trips/req' : 'commands sent (per request)',
      'non-200',
    ],
    counts.map((c) => [
      c.name,
      per(c.commandsBefore, c.requests),
      per(c.tripsBefore, c.requests),
      per(c.commandsAfter, c.requests),
      per(c.tripsAfter, c.requests),
      last === 'total' ? per(c.tripsBefore + c.tripsAfter, c.requests) : sentCommands(c),
      String(c.failures),
    ]),
  );
}

function describeCounts(counts: CaseCount[], missing: string[], requests: number): SectionResult {
  const lines = [
    `${requests} sequential requests per case after 20 warm-up requests, the app's Redis connection going through a counting relay. ` +
      '"Before the answer" is everything sent between sending the request and receiving the whole response; "after" is what follows ' +
      '(settling reservations) until Redis has been quiet for 20 ms. A round trip is a flight: the client sending after it last heard from Redis ' +
      '(commands pipelined in one flight count once).',
    '',
    countsTable(counts),
  ];
  for (const c of counts) {
    lines.push('', `Commands of **${c.name}**, per request (key patterns with the run prefix shown as <prefix>):`, '');
    const rows = [...c.breakdown.entries()]
      .sort((a, b) => b[1].before + b[1].after - (a[1].before + a[1].after))
      .map(([label, n]) => [`\`${label}\``, ownerOf(label), per(n.before, c.requests), per(n.after, c.requests)]);
    lines.push(table(['command and first key', 'sent by', 'before answer', 'after answer'], rows));
  }
  lines.push(...notMeasured(missing));
  const tollgate = counts.find((c) => c.name === 'tollgate full chain (Redis)');
  const targets: TargetVerdict[] = [
    tollgate && tollgate.failures === 0
      ? {
          target: 'Full chain on Redis: one Redis call per request before the answer',
          holds: tollgate.commandsBefore / tollgate.requests <= 1,
          figures: `${per(tollgate.commandsBefore, tollgate.requests)} commands in ${per(tollgate.tripsBefore, tollgate.requests)} round trips before the answer`,
        }
      : {
          target: 'Full chain on Redis: one Redis call per request before the answer',
          holds: undefined,
          figures: tollgate ? `${tollgate.failures} non-200 answers` : 'chain not available',
        },
    tollgate && tollgate.failures === 0
      ? {
          target: 'Full chain on Redis: at most two Redis round trips per request',
          holds: (tollgate.tripsBefore + tollgate.tripsAfter) / tollgate.requests <= 2,
          figures: `${per(tollgate.tripsBefore, tollgate.requests)} before the answer + ${per(tollgate.tripsAfter, tollgate.requests)} after = ${per(tollgate.tripsBefore + tollgate.tripsAfter, tollgate.requests)} round trips/request (${per(tollgate.commandsBefore + tollgate.commandsAfter, tollgate.requests)} commands)`,
        }
      : {
          target: 'Full chain on Redis: at most two Redis round trips per request',
          holds: undefined,
          figures: tollgate ? `${tollgate.failures} non-200 answers` : 'chain not available',
        },
  ];
  const findings = counts
    .filter((c) => c.name.startsWith('tollgate'))
    .map((c) => {
      const describeOwners = (phase: 'before' | 'after') =>
        [...c.breakdown.entries()]
          .filter(([, n]) => n[phase] > 0)
          .map(([label, n]) => `${ownerOf(label) || label} ${per(n[phase], c.requests)}`)
          .join(', ');
      return (
        `Redis, ${c.name}: ${per(c.commandsBefore, c.requests)} commands in ${per(c.tripsBefore, c.requests)} round trips before the answer ` +
        `(${describeOwners('before')}), then ${per(c.commandsAfter, c.requests)} commands in ${per(c.tripsAfter, c.requests)} round trips after it ` +
        `(${describeOwners('after')}); express-rate-limit + rate-limit-redis sends one command (§4).`
      );
    });
  return { title: '4. Redis round trips per request', body: lines.join('\n'), targets, findings };
}
