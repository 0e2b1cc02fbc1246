// Benchmark 2: the example proxy against a bare Express + undici passthrough, the Node floor under it and the Portkey
// gateway, all in front of the same zero-latency upstream.
import { startEach, startServer, type BenchChild } from './lib/child.js';
import { authHeaders, CHAT_BODY, CHAT_PATH, STREAM_CHAT_BODY } from './lib/fixtures.js';
import { throughputCells, THROUGHPUT_COLUMNS, throughputRounds, type CaseSummary } from './lib/load.js';
import { STREAM_CONTENT_CHUNKS } from './lib/mock-upstream.js';
import { startPortkeyGateway } from './lib/portkey.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtMs, fmtNumber, fmtRatio, median, notMeasured, quantile, table } from './lib/stats.js';
import { closeTimedRequests, timedRequest } from './lib/timed-request.js';

/** Events the upstream sends per streamed answer: content chunks, the finish chunk, the usage chunk, [DONE]. */
const UPSTREAM_EVENTS = STREAM_CONTENT_CHUNKS + 3;

/** A server of a case: a bench child, or a gateway started its own way. */
type RunningServer = Pick<BenchChild, 'url' | 'close'>;

interface ProxyCase {
  name: string;
  start: (upstream: string) => Promise<RunningServer>;
  /** What the load generator sends this case beside the bench key (e.g. a gateway's routing headers). */
  headers?: (upstream: string) => Record<string, string>;
  /** The streamed request, when the case forwards the client's body as it is and so must be asked for usage by it. */
  streamBody?: string;
  /** tollgate's own cases: the targets and findings are theirs. */
  tollgate?: boolean;
  /** The minimum ratio to the passthrough the issue asks for. */
  targetRatio?: number;
}

/** A started case with the requests it is sent. */
interface RunningCase {
  benchCase: ProxyCase;
  server: RunningServer;
  headers: Record<string, string>;
  bodies: Record<'json' | 'stream', string>;
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
    {
      name: 'bare passthrough (Express + undici)',
      start: (upstream) => startServer({ app: 'passthrough', options: { upstream } }),
    },
    {
      name: 'Node floor (node:http + undici)',
      start: (upstream) => startServer({ app: 'node-floor', options: { upstream } }),
    },
    {
      name: 'tollgate proxy (memory)',
      start: (upstream) => startServer({ app: 'proxy', options: { upstream, store: 'memory' } }),
      tollgate: true,
      targetRatio: 0.9,
    },
    {
      name: 'tollgate proxy (Redis)',
      start: (upstream) =>
        startServer({ app: 'proxy', options: { upstream, store: 'redis', prefix: `${context.redisPrefix}proxy:` } }),
      tollgate: true,
      targetRatio: 0.8,
    },
    {
      name: 'tollgate proxy (Redis, blocks: false)',
      start: (upstream) =>
        startServer({
          app: 'proxy',
          options: { upstream, store: 'redis', blocks: false, prefix: `${context.redisPrefix}proxy-unblocked:` },
        }),
      tollgate: true,
    },
    {
      name: 'Portkey gateway 1.15.2 (Node)',
      start: () => startPortkeyGateway(),
      // Its OpenAI provider pointed at the mock: the gateway sends the request on to `<custom host>/chat/completions`.
      headers: (upstream) => ({ 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${upstream}/v1` }),
      // The gateway adds nothing to the body, so the client asks for usage: the upstream then streams the same events.
      streamBody: JSON.stringify({
        ...(JSON.parse(STREAM_CHAT_BODY) as Record<string, unknown>),
        stream_options: { include_usage: true },
      }),
    },
  ];
}

async function measureStreams(running: RunningCase[], rounds: number, perRound: number): Promise<StreamTiming[]> {
  const timings = new Map<RunningCase, StreamTiming>(
    running.map((c) => [c, { name: c.benchCase.name, firstByte: [], total: [], chunks: [], failures: 0 }]),
  );
  const send = (c: RunningCase) => timedRequest(`${c.server.url}${CHAT_PATH}`, c.bodies.stream, c.headers);
  try {
    for (const c of running) for (let i = 0; i < 20; i++) await send(c);
    for (let round = 0; round < rounds; round++) {
      for (const c of running) {
        const timing = timings.get(c)!;
        for (let i = 0; i < perRound; i++) {
          const response = await send(c);
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
  return running.map((c) => timings.get(c)!);
}

export async function runProxyBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 2 : 3;
  const durationS = context.quick ? 2 : 3;
  const connections = 32;
  const cases = proxyCases(context);
  const missing: string[] = [];
  const upstream = await startServer({ app: 'mock-upstream' });
  let running: RunningCase[] = [];
  try {
    const servers = await startEach(
      cases,
      (c) => c.start(upstream.url),
      missing,
      (m) => context.log(`proxy: ${m}`),
    );
    running = cases
      .filter((c) => servers.has(c.name))
      .map((benchCase) => ({
        benchCase,
        server: servers.get(benchCase.name)!,
        headers: { ...authHeaders(), ...benchCase.headers?.(upstream.url) },
        bodies: { json: CHAT_BODY, stream: benchCase.streamBody ?? STREAM_CHAT_BODY },
      }));
    const summaries: Record<'json' | 'stream', CaseSummary[]> = { json: [], stream: [] };
    for (const mode of ['json', 'stream'] as const) {
      const loaded = running.map((c) => ({
        name: c.benchCase.name,
        url: c.server.url,
        body: c.bodies[mode],
        headers: c.headers,
      }));
      const setup = { rounds, durationS, connections, warmUpS: 1 };
      summaries[mode] = await throughputRounds(loaded, setup, (m) => context.log(`proxy ${mode} ${m}`));
    }
    const streams = await measureStreams(running, rounds, context.quick ? 25 : 60);
    return describe(cases, summaries, streams, missing, { rounds, durationS, connections });
  } finally {
    await Promise.all(running.map((c) => c.server.close()));
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
  const rows = (['json', 'stream'] as const).flatMap((mode) =>
    cases.map((c) => [
      c.name,
      mode === 'json' ? 'JSON' : 'SSE stream',
      ...throughputCells(summaries[mode].find((x) => x.name === c.name)),
    ]),
  );
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
  const measured = cases.slice(1).filter((c) => summaries.json.some((x) => x.name === c.name));
  const underLoad = measured.map((c) => {
    const json = extraMs('json', c.name);
    const stream = extraMs('stream', c.name);
    return {
      name: c.name,
      tollgate: c.tollgate === true,
      json,
      stream,
      perEventUs: ((stream - json) * 1000) / UPSTREAM_EVENTS,
    };
  });
  const underLoadRows = underLoad.map((u) => [
    u.name,
    fmtMs(u.json),
    fmtMs(u.stream),
    Number.isFinite(u.perEventUs) ? `${fmtNumber(u.perEventUs)} µs` : 'n/a',
  ]);
  const body = [
    `Every case forwards to the zero-latency mock upstream (JSON at once, or ${UPSTREAM_EVENTS} SSE events one per ` +
      'event-loop turn). The Portkey gateway (@portkey-ai/gateway 1.15.2, its own Node server) runs with its stream path ' +
      'patched in memory (bench/lib/portkey-stream-fix.ts; its issues #1389, #1550) and its 25 ms first-event timer as ' +
      `shipped. Throughput: ${setup.rounds} alternating rounds of ${setup.durationS} s per case and mode, ` +
      `${setup.connections} connections.`,
    '',
    table(['case', 'mode', ...THROUGHPUT_COLUMNS], rows),
    '',
    `Streams one request at a time: per-chunk overhead = (body time − the passthrough's) / ${UPSTREAM_EVENTS} events.`,
    '',
    table(
      [
        'case',
        'TTFB p50',
        'TTFB p99',
        'TTFB vs passthrough',
        'total p50',
        'per-chunk overhead',
        'chunks received',
        'failed',
      ],
      streamRows,
    ),
    '',
    'Under load, per request: 1/rps − 1/rps(passthrough); per event: (streamed − JSON) / the events.',
    '',
    table(
      ['case', 'extra per JSON request', 'extra per streamed request', 'per-event overhead under load'],
      underLoadRows,
    ),
    ...notMeasured(missing),
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
  for (const s of streams.slice(1).filter((x) => cases.some((c) => c.name === x.name && c.tollgate))) {
    const delta = median(s.firstByte) - baseTtfb;
    targets.push({
      target: `Stream time to first byte within 1 ms of the passthrough: ${s.name}`,
      holds: s.firstByte.length > 0 && s.failures === 0 ? delta <= 1 : undefined,
      figures: `TTFB p50 ${fmtMs(median(s.firstByte))} vs ${fmtMs(baseTtfb)} (${delta >= 0 ? '+' : ''}${fmtMs(delta)})`,
    });
  }
  const findings = underLoad
    .filter((u) => u.tollgate && Number.isFinite(u.perEventUs))
    .map(
      (u) =>
        `Proxy, ${u.name}: under load each JSON request costs ${fmtMs(u.json)} more than through the passthrough, each streamed one ${fmtMs(u.stream)} more ` +
        `(${fmtNumber(u.perEventUs)} µs per SSE event beyond the JSON case) (§2).`,
    );
  return {
    title: '2. Example proxy vs bare passthrough, the Node floor and the Portkey gateway',
    body,
    targets,
    findings,
  };
}
