// Benchmark 2: the example proxy against a bare Express + undici passthrough, the Node floor under it and the Portkey
// gateway, all in front of the same zero-latency upstream.
import { startEach, startServer, type BenchChild } from './lib/child.js';
import { authHeaders, CHAT_BODY, CHAT_PATH, STREAM_CHAT_BODY } from './lib/fixtures.js';
import { alternateRounds, runLoad, type CaseSummary } from './lib/load.js';
import { STREAM_CONTENT_CHUNKS } from './lib/mock-upstream.js';
import { startPortkeyGateway } from './lib/portkey.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtMs, fmtNumber, fmtRatio, median, quantile, table } from './lib/stats.js';
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
    const load = (c: RunningCase, mode: 'json' | 'stream', seconds: number) => () =>
      runLoad({
        url: c.server.url,
        path: CHAT_PATH,
        body: c.bodies[mode],
        headers: c.headers,
        connections,
        durationS: seconds,
      });
    const summaries: Record<'json' | 'stream', CaseSummary[]> = { json: [], stream: [] };
    for (const mode of ['json', 'stream'] as const) {
      for (const c of running) await load(c, mode, 1)();
      summaries[mode] = await alternateRounds(
        running.map((c) => ({ name: c.benchCase.name, run: load(c, mode, durationS) })),
        rounds,
        (round, name, result) =>
          context.log(`proxy ${mode} round ${round + 1}/${rounds} ${name}: ${fmtNumber(result.rps)} req/s`),
      );
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
  const rows: string[][] = [];
  for (const mode of ['json', 'stream'] as const) {
    for (const c of cases) {
      const s = summaries[mode].find((x) => x.name === c.name);
      rows.push(
        s
          ? [
              c.name,
              mode === 'json' ? 'JSON' : 'SSE stream',
              fmtNumber(s.rps),
              fmtRatio(s.ratio),
              fmtMs(s.p50),
              fmtMs(s.p99),
              `${s.non2xx}/${s.errors}`,
            ]
          : [c.name, mode, 'not available', '', '', '', ''],
      );
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
    `Every case forwards POST /v1/chat/completions to the same upstream child process, a zero-latency OpenAI-compatible mock (bench/lib/mock-upstream.ts) ` +
      `that answers JSON at once, or streams ${UPSTREAM_EVENTS} SSE events (${STREAM_CONTENT_CHUNKS} content chunks, finish, usage, [DONE]) one per event-loop turn, ` +
      'so every event is a separate write the proxy has to pass on. The passthrough parses the JSON body, adds stream_options.include_usage on streams, forwards with undici ' +
      'and pipes the answer back. The Node floor does the same on node:http alone, without Express: the gap between the two is what Express costs. ' +
      'The tollgate proxy is examples/proxy createProxyApp() with one key, a pro tier and key, tenant and global budgets, limits far above the load, ' +
      'its metrics on and its access log silent (what the log, the metrics and tracing cost is §14).',
    '',
    'The Portkey gateway is @portkey-ai/gateway 1.15.2 from npm, its own Node server (`--headless`, no web UI) in a child process, its OpenAI provider ' +
      "pointed at the mock by the x-portkey-provider and x-portkey-custom-host headers the load generator sends it. It forwards the client's body as it is, " +
      'so its streamed requests ask for usage themselves and the upstream streams it the same events. As shipped, its stream path fails on Node: every streamed ' +
      'request is a 500 with "TypeError: immutable" in its log (its open issues #1389 and #1550), because the Response of @hono/node-server, built from the ' +
      "upstream's answer, keeps the upstream's immutable headers, to which the gateway then adds its own. The bench patches that one expression when the " +
      "gateway's file is loaded, through a module hook (bench/lib/portkey-stream-fix.ts; node_modules is not touched): the streamed Response gets a copy of " +
      'the headers. Nothing else is changed: its stream splitter also waits 25 ms (a timer) before it passes on the first event of every stream, which adds ' +
      `25 ms to its time to first byte and caps its streams at ${setup.connections} connections / 25 ms = ${fmtNumber(setup.connections / 0.025)} req/s; ` +
      'that is measured as it ships.',
    '',
    `Throughput: ${setup.rounds} alternating rounds of ${setup.durationS} s per case and mode, ${setup.connections} connections.`,
    '',
    table(['case', 'mode', 'req/s', '× passthrough', 'p50', 'p99', 'non-2xx/errors'], rows),
    '',
    'Streaming, one request at a time (cases alternating in blocks): time to first body byte, total time, and per-chunk overhead = ' +
      `(the case's body time − the passthrough's body time) / ${UPSTREAM_EVENTS} upstream events, body time = total − first byte.`,
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
    'One request at a time, the events reach the client in one or two reads, so the per-chunk cost shows better in the throughput: per request, a case costs ' +
      '1/rps − 1/rps(passthrough) more than the passthrough; what a streamed request costs beyond a JSON one, divided by the ' +
      `${UPSTREAM_EVENTS} events, is the per-event overhead under load.`,
    '',
    table(
      ['case', 'extra per JSON request', 'extra per streamed request', 'per-event overhead under load'],
      underLoadRows,
    ),
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
