// Benchmark 2: the example proxy against a bare Express + undici passthrough, both in front of the same zero-latency upstream.
import { startServer, type BenchChild, type ServerSpec } from './lib/child.js';
import { authHeaders, CHAT_BODY, CHAT_PATH, STREAM_CHAT_BODY } from './lib/fixtures.js';
import { alternateRounds, runLoad, type CaseSummary } from './lib/load.js';
import { STREAM_CONTENT_CHUNKS } from './lib/mock-upstream.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtMs, fmtNumber, fmtRatio, median, quantile, table } from './lib/stats.js';
import { closeTimedRequests, timedRequest } from './lib/timed-request.js';

/** Events the upstream sends per streamed answer: content chunks, the finish chunk, the usage chunk, [DONE]. */
const UPSTREAM_EVENTS = STREAM_CONTENT_CHUNKS + 3;

interface ProxyCase {
  name: string;
  spec: (upstream: string) => ServerSpec;
  /** The minimum ratio to the passthrough the issue asks for. */
  targetRatio?: number;
}

interface StreamTiming {
  name: string;
  firstByte: number[];
  total: number[];
  chunks: number[];
  failures: number;
}

function proxyCases(context: BenchContext): ProxyCase[] {
  return [
    { name: 'bare passthrough (Express + undici)', spec: (upstream) => ({ app: 'passthrough', options: { upstream } }) },
    { name: 'tollgate proxy (memory)', spec: (upstream) => ({ app: 'proxy', options: { upstream, store: 'memory' } }), targetRatio: 0.9 },
    {
      name: 'tollgate proxy (Redis)',
      spec: (upstream) => ({ app: 'proxy', options: { upstream, store: 'redis', prefix: `${context.redisPrefix}proxy:` } }),
      targetRatio: 0.8,
    },
  ];
}

async function measureStreams(servers: Map<string, BenchChild>, names: string[], rounds: number, perRound: number): Promise<StreamTiming[]> {
  const timings = new Map<string, StreamTiming>(names.map((name) => [name, { name, firstByte: [], total: [], chunks: [], failures: 0 }]));
  try {
    for (const name of names) for (let i = 0; i < 20; i++) await timedRequest(`${servers.get(name)!.url}${CHAT_PATH}`, STREAM_CHAT_BODY, authHeaders());
    for (let round = 0; round < rounds; round++) {
      for (const name of names) {
        const timing = timings.get(name)!;
        for (let i = 0; i < perRound; i++) {
          const response = await timedRequest(`${servers.get(name)!.url}${CHAT_PATH}`, STREAM_CHAT_BODY, authHeaders());
          if (response.status !== 200 || !response.body.includes('[DONE]')) {
            timing.failures++;
            continue;
          }
          timing.firstByte.push(response.firstByteMs);
          timing.total.push(response.totalMs);
          timing.chunks.push(response.chunkMs.length);
        }
      }
    }
  } finally {
    await closeTimedRequests();
  }
  return names.map((name) => timings.get(name)!);
}

export async function runProxyBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 2 : 3;
  const durationS = context.quick ? 2 : 3;
  const connections = 32;
  const cases = proxyCases(context);
  const servers = new Map<string, BenchChild>();
  const missing: string[] = [];
  const upstream = await startServer({ app: 'mock-upstream' });
  try {
    for (const benchCase of cases) {
      try {
        servers.set(benchCase.name, await startServer(benchCase.spec(upstream.url)));
      } catch (error) {
        missing.push(`${benchCase.name}: ${error instanceof Error ? error.message : String(error)}`);
        context.log(`proxy: ${benchCase.name} unavailable (${String(error)})`);
      }
    }
    const running = cases.filter((c) => servers.has(c.name));
    const load = (name: string, body: string, seconds: number) => () =>
      runLoad({ url: servers.get(name)!.url, path: CHAT_PATH, body, headers: authHeaders(), connections, durationS: seconds });
    const summaries: Record<'json' | 'stream', CaseSummary[]> = { json: [], stream: [] };
    for (const [mode, body] of [['json', CHAT_BODY], ['stream', STREAM_CHAT_BODY]] as const) {
      for (const benchCase of running) await load(benchCase.name, body, 1)();
      summaries[mode] = await alternateRounds(
        running.map((c) => ({ name: c.name, run: load(c.name, body, durationS) })),
        rounds,
        (round, name, result) => context.log(`proxy ${mode} round ${round + 1}/${rounds} ${name}: ${fmtNumber(result.rps)} req/s`),
      );
    }
    const streams = await measureStreams(servers, running.map((c) => c.name), rounds, context.quick ? 25 : 60);
    return describe(cases, summaries, streams, missing, { rounds, durationS, connections });
  } finally {
    await Promise.all([...servers.values()].map((server) => server.close()));
    await upstream.close();
  }
}

function describe(
  cases: ProxyCase[],
  summaries: Record<'json' | 'stream', CaseSummary[]>,
  streams: StreamTiming[],
  missing: string[],
  setup: { rounds: number; durationS: number; connections: number },
): SectionResult {
  const rows: string[][] = [];
  for (const mode of ['json', 'stream'] as const) {
    for (const c of cases) {
      const s = summaries[mode].find((x) => x.name === c.name);
      rows.push(s ? [c.name, mode === 'json' ? 'JSON' : 'SSE stream', fmtNumber(s.rps), fmtRatio(s.ratio), fmtMs(s.p50), fmtMs(s.p99), `${s.non2xx}/${s.errors}`] : [c.name, mode, 'not available', '', '', '', '']);
    }
  }
  const base = streams[0];
  const baseTtfb = base ? median(base.firstByte) : Number.NaN;
  const baseTotal = base ? median(base.total) : Number.NaN;
  const streamRows = streams.map((s) => {
    const ttfb = median(s.firstByte);
    const total = median(s.total);
    const perChunk = (total - ttfb - (baseTotal - baseTtfb)) / UPSTREAM_EVENTS;
    return [
      s.name,
      fmtMs(ttfb),
      fmtMs(quantile(s.firstByte, 0.99)),
      s === base ? '—' : `${ttfb - baseTtfb >= 0 ? '+' : ''}${fmtMs(ttfb - baseTtfb)}`,
      fmtMs(total),
      s === base ? '—' : `${perChunk >= 0 ? '+' : ''}${(perChunk * 1000).toFixed(0)} µs`,
      fmtNumber(median(s.chunks)),
      String(s.failures),
    ];
  });
  const extraMs = (mode: 'json' | 'stream', name: string) => {
    const own = summaries[mode].find((x) => x.name === name);
    const base = summaries[mode][0];
    return own && base ? 1000 / own.rps - 1000 / base.rps : Number.NaN;
  };
  const underLoad = cases.slice(1).map((c) => {
    const json = extraMs('json', c.name);
    const stream = extraMs('stream', c.name);
    return { name: c.name, json, stream, perEventUs: ((stream - json) * 1000) / UPSTREAM_EVENTS };
  });
  const underLoadRows = underLoad.map((u) => [u.name, fmtMs(u.json), fmtMs(u.stream), Number.isFinite(u.perEventUs) ? `${fmtNumber(u.perEventUs)} µs` : 'n/a']);
  const body = [
    `Both sides forward POST /v1/chat/completions to the same upstream child process, a zero-latency OpenAI-compatible mock (bench/lib/mock-upstream.ts) ` +
      `that answers JSON at once, or streams ${UPSTREAM_EVENTS} SSE events (${STREAM_CONTENT_CHUNKS} content chunks, finish, usage, [DONE]) one per event-loop turn, ` +
      'so every event is a separate write the proxy has to pass on. The passthrough parses the JSON body, adds stream_options.include_usage on streams, forwards with undici ' +
      'and pipes the answer back. The tollgate proxy is examples/proxy createProxyApp() with one key, a pro tier and key, tenant and global budgets, limits far above the load, ' +
      'its metrics on and its access log silent (what the log, the metrics and tracing cost is §8).',
    '',
    `Throughput: ${setup.rounds} alternating rounds of ${setup.durationS} s per case and mode, ${setup.connections} connections.`,
    '',
    table(['case', 'mode', 'req/s', '× passthrough', 'p50', 'p99', 'non-2xx/errors'], rows),
    '',
    'Streaming, one request at a time (cases alternating in blocks): time to first body byte, total time, and per-chunk overhead = ' +
      `(the case's body time − the passthrough's body time) / ${UPSTREAM_EVENTS} upstream events, body time = total − first byte.`,
    '',
    table(['case', 'TTFB p50', 'TTFB p99', 'TTFB vs passthrough', 'total p50', 'per-chunk overhead', 'chunks received', 'failed'], streamRows),
    '',
    'One request at a time, the events reach the client in one or two reads, so the per-chunk cost shows better in the throughput: per request, a case costs ' +
      '1/rps − 1/rps(passthrough) more than the passthrough; what a streamed request costs beyond a JSON one, divided by the ' +
      `${UPSTREAM_EVENTS} events, is the per-event overhead under load.`,
    '',
    table(['case', 'extra per JSON request', 'extra per streamed request', 'per-event overhead under load'], underLoadRows),
    ...(missing.length > 0 ? ['', 'Not measured:', ...missing.map((m) => `- ${m}`)] : []),
  ].join('\n');

  const targets: TargetVerdict[] = [];
  for (const c of cases.filter((x) => x.targetRatio !== undefined)) {
    const json = summaries.json.find((x) => x.name === c.name);
    const stream = summaries.stream.find((x) => x.name === c.name);
    const target = `${c.name.replace('tollgate ', 'Example ')} at least ${c.targetRatio} of the bare passthrough`;
    if (!json || !stream) {
      targets.push({ target, holds: undefined, figures: 'not available' });
      continue;
    }
    const valid = json.non2xx + stream.non2xx === 0;
    targets.push({
      target,
      holds: valid ? Math.min(json.ratio, stream.ratio) >= c.targetRatio! : undefined,
      figures: `JSON ${fmtRatio(json.ratio)} (${fmtNumber(json.rps)} req/s), stream ${fmtRatio(stream.ratio)} (${fmtNumber(stream.rps)} req/s)${valid ? '' : '; non-2xx answers, run not valid'}`,
    });
  }
  for (const s of streams.slice(1)) {
    const delta = median(s.firstByte) - baseTtfb;
    targets.push({
      target: `Stream time to first byte within 1 ms of the passthrough: ${s.name}`,
      holds: s.firstByte.length > 0 && s.failures === 0 ? delta <= 1 : undefined,
      figures: `TTFB p50 ${fmtMs(median(s.firstByte))} vs ${fmtMs(baseTtfb)} (${delta >= 0 ? '+' : ''}${fmtMs(delta)})`,
    });
  }
  const findings = underLoad
    .filter((u) => Number.isFinite(u.perEventUs))
    .map(
      (u) =>
        `Proxy, ${u.name}: under load each JSON request costs ${fmtMs(u.json)} more than through the passthrough, each streamed one ${fmtMs(u.stream)} more ` +
        `(${fmtNumber(u.perEventUs)} µs per SSE event beyond the JSON case) (§2).`,
    );
  return { title: '2. Example proxy vs bare passthrough', body, targets, findings };
}
