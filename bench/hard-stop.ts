// Benchmark 6: what the hard stop costs per streamed event, the meter's UsageTap driven in-process over the three SSE formats.
import { IncomingMessage, ServerResponse } from 'node:http';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ProviderApi, TollgateContext } from '@tollgate/core';
import type { ResolvedPrice } from '@tollgate/core/costs';
import type { OutputCounter, ProviderAdapter } from '@tollgate/providers';
import { anthropicAnswer, anthropicEvents } from '../packages/providers/src/anthropic-messages/answer.js';
import { chatAnswer, chatEvents } from '../packages/providers/src/openai-chat/answer.js';
import { responsesAnswer, responsesEvents } from '../packages/providers/src/openai-responses/answer.js';
import { sseEvent } from '../packages/providers/src/usage.js';
import { DiscardSocket } from './lib/inject.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtNumber, median, table } from './lib/stats.js';

/** The target: what arming the hard stop may add to each streamed event. */
const TARGET_NS_PER_EVENT = 2_000;
/** A common `max_tokens`: far above the answer below, whose UTF-8 bytes stay under it, so the tokenizer never runs. */
const FAR_GRANT = 4_096;
const INPUT_TOKENS = 24;

/**
 * The answer every stream carries, streamed one word (about one token) per delta as providers do, with the
 * accents, CJK and emoji of the providers' test fixtures so the byte bound meets multi-byte text.
 */
const REPLY =
  'Sure. Here is how a gateway meters a streamed answer without holding it back. Every event the provider sends is ' +
  'passed on to the client as soon as it arrives, and on its way the gateway reads the text of the delta it carries. ' +
  'Héllo wörld, 数据 😀! The text is kept for counting, and a running bound of its tokens is compared with the tokens ' +
  'the request was granted when its budget was reserved. For Zürich 🌤 the forecast reads clear skies, light wind and ' +
  'a high of twenty-one degrees, which is typical for the season. 日本語 🚀 A bound is cheap: one token is at least ' +
  'one byte, so the byte count of the output can never be below its token count. Only when that bound passes the ' +
  'grant does the gateway run the tokenizer, and only on the text that arrived since it last counted. When the count ' +
  'itself passes the grant, the stream is ended the way the provider would end an answer cut at its output cap, the ' +
  'upstream call is aborted, and whatever the provider still sends is dropped. A client reading the stream with an ' +
  'SDK sees an ordinary answer that stopped at its length limit, and the usage record says the output went over the ' +
  'cap, so an owner can find which upstream ignored the cap it was sent. The numbers in the ledger stay within the ' +
  'budget that was granted, because nothing past the grant reaches the client. That is the whole idea, in short.';

const PIECES = REPLY.match(/\s*\S+/g) ?? [];

type StreamApi = Extract<ProviderApi, 'openai.chat' | 'openai.responses' | 'anthropic.messages'>;

interface StreamFormat {
  api: StreamApi;
  label: string;
  model: string;
  path: string;
  /** The request the route declared (its cap is what the hard stop is armed with). */
  body: Record<string, unknown>;
  /** The upstream's events, one Buffer each: the proxy receives and writes one event per chunk. */
  events: Buffer[];
}

/**
 * The answer as `api` streams it, one word a delta, written by the providers' own answer forms (what their mock
 * provider streams): Chat Completions with the usage chunk the client asked for, Responses and Messages events.
 */
function streamOf(api: StreamApi, model: string, request: Record<string, unknown>, outputTokens: number): Buffer[] {
  const plain = { model, text: REPLY, inputTokens: INPUT_TOKENS, outputTokens, truncated: false };
  const deltas = () => PIECES;
  const events =
    api === 'openai.chat'
      ? chatEvents({ ...chatAnswer(plain), system_fingerprint: 'fp_bench' }, { deltas, announceUsage: true })
      : api === 'openai.responses'
        ? responsesEvents(responsesAnswer(plain, request), { deltas })
        : anthropicEvents(anthropicAnswer(plain), { deltas });
  return events.map((event) => Buffer.from(sseEvent(event.data, event.event)));
}

/**
 * UsageTap is internal to @tollgate/metering: its index does not export it and the package's `exports` map
 * hides every other path, so it is imported by file. Which file follows how this run resolves tollgate: the
 * built dist/ that `pnpm bench` builds and every other benchmark runs (the JavaScript an install runs, without
 * the helpers tsx adds to TypeScript), or under --conditions=source the TypeScript source, so that the tap and
 * the @tollgate/providers readers it drives come from the same tree. Nothing in the packages changes for it.
 */
type ResponseTapClass = (typeof import('../packages/metering/src/response-tap.js'))['UsageTap'];

async function loadResponseTap(): Promise<ResponseTapClass> {
  const fromSource = /(?:--conditions|-C)[= ]source\b/.test(process.execArgv.join(' '));
  const file = new URL(
    fromSource ? '../packages/metering/src/response-tap.ts' : '../packages/metering/dist/response-tap.js',
    import.meta.url,
  );
  if (!existsSync(file))
    throw new Error(`${fileURLToPath(file)} is missing: build the packages first (pnpm bench does)`);
  return ((await import(file.href)) as { UsageTap: ResponseTapClass }).UsageTap;
}

/**
 * The ways a stream is run: bytes only, the tap with no grant, armed far above the output, armed with the grant
 * the answer reaches exactly (a provider that stops at the cap it was sent), and cut near its end.
 */
type Mode = 'write' | 'reader' | 'armed' | 'atGrant' | 'passes';
const MODES: Mode[] = ['write', 'reader', 'armed', 'atGrant', 'passes'];

interface Harness {
  ResponseTap: ResponseTapClass;
  getContext: (req: IncomingMessage, res: ServerResponse) => TollgateContext;
}

interface Prepared {
  format: StreamFormat;
  adapter: ProviderAdapter;
  price: ResolvedPrice;
  /** The meter's counting for the model (its counters count their calls). */
  counting: { countOutput: OutputCounter; stopCount: OutputCounter; own: boolean };
  tokenizerCalls: number;
  /** Output tokens of the whole answer, as the meter would count them. */
  outputTokens: number;
  /** The grant of the `passes` case, and the event (index) whose write stops the stream. */
  passGrant: number;
  stopIndex: number;
}

interface StreamRun {
  /** ms writing events [0, stopIndex] (the part every mode shares with the cut stream), and the rest with end(). */
  prefixMs: number;
  restMs: number;
  stopped: boolean;
  tokenizerCalls: number;
}

type Tap = InstanceType<ResponseTapClass>;

/** What the proxy does when the call is aborted (stop reading the upstream); nothing to stop here. */
function stopReading(): void {}

/** A fresh response as the proxy has it when the first upstream event arrives: tapped (not in `write` mode), headers flushed. */
function openStream(
  harness: Harness,
  prepared: Prepared,
  mode: Mode,
  grant: number | undefined,
): { res: ServerResponse; tap: Tap | undefined; socket: DiscardSocket } {
  const { format, adapter, price } = prepared;
  const socket = new DiscardSocket();
  const req = new IncomingMessage(socket as never);
  req.method = 'POST';
  req.url = format.path;
  const res = new ServerResponse(req);
  res.assignSocket(socket as never);
  res.statusCode = 200;
  res.setHeader('content-type', 'text/event-stream; charset=utf-8');
  res.setHeader('cache-control', 'no-cache');
  let tap: Tap | undefined;
  if (mode !== 'write') {
    const ctx = harness.getContext(req, res);
    // Declared like a proxied call, with a listener on its signal as the proxy's upstream has: the stop aborts it.
    const call = ctx.declareCall(adapter, { body: structuredClone(format.body) });
    call.signal.addEventListener('abort', stopReading, { once: true });
    if (grant !== undefined) {
      ctx.setEstimate(
        {
          provider: price.provider,
          api: format.api,
          model: format.model,
          inputTokens: INPUT_TOKENS,
          maxOutputTokens: grant,
          costNanoUsd: 0,
          totalTokens: INPUT_TOKENS + grant,
        },
        price,
      );
    }
    tap = new harness.ResponseTap(res as never, ctx, adapter, false, () => prepared.counting);
  }
  res.flushHeaders();
  return { res, tap, socket };
}

/** One stream the way the proxy writes it: one write per upstream event, then end(). */
function runStream(
  harness: Harness,
  prepared: Prepared,
  mode: Mode,
  grant: number | undefined,
  stopIndex: number,
): StreamRun {
  const { res, tap, socket } = openStream(harness, prepared, mode, grant);
  const calls = prepared.tokenizerCalls;
  const events = prepared.format.events;
  // Back to back: Node corks the socket until the next tick, so what the socket does with the bytes is outside
  // the timed part and the same in every mode.
  const started = performance.now();
  for (let i = 0; i <= stopIndex; i++) res.write(events[i]!);
  const prefixDone = performance.now();
  for (let i = stopIndex + 1; i < events.length; i++) res.write(events[i]!);
  res.end();
  const done = performance.now();
  socket.destroy();
  return {
    prefixMs: prefixDone - started,
    restMs: done - prefixDone,
    stopped: tap?.stopped ?? false,
    tokenizerCalls: prepared.tokenizerCalls - calls,
  };
}

/** The index of the event whose write stopped the stream at `grant`, or -1 when it ran to its end. */
function stopEventIndex(harness: Harness, prepared: Prepared, grant: number): number {
  const { res, tap, socket } = openStream(harness, prepared, 'passes', grant);
  const events = prepared.format.events;
  let index = -1;
  for (let i = 0; i < events.length && index === -1; i++) {
    res.write(events[i]!);
    if (tap!.stopped) index = i;
  }
  res.end();
  socket.destroy();
  return index;
}

async function prepareFormats(): Promise<{ harness: Harness; prepared: Prepared[] }> {
  const [ResponseTap, core, providerDoor, countBudget] = await Promise.all([
    loadResponseTap(),
    import('@tollgate/core'),
    import('@tollgate/providers'),
    import('@tollgate/providers/count-budget'),
  ]);
  const providers = { ...providerDoor, ...countBudget };
  await providers.preloadTokenizers();
  const harness: Harness = { ResponseTap, getContext: core.getContext };
  const pricing = core.createPricing();
  const formats: Omit<StreamFormat, 'events'>[] = [
    {
      api: 'openai.chat',
      label: 'Chat Completions',
      model: 'gpt-4o-mini',
      path: '/v1/chat/completions',
      body: {
        model: 'gpt-4o-mini',
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: FAR_GRANT,
        messages: [{ role: 'user', content: 'Explain the hard stop.' }],
      },
    },
    {
      api: 'openai.responses',
      label: 'Responses',
      model: 'gpt-4o-mini',
      path: '/v1/responses',
      body: { model: 'gpt-4o-mini', stream: true, max_output_tokens: FAR_GRANT, input: 'Explain the hard stop.' },
    },
    {
      api: 'anthropic.messages',
      label: 'Messages',
      model: 'claude-sonnet-4-5',
      path: '/v1/messages',
      body: {
        model: 'claude-sonnet-4-5',
        stream: true,
        max_tokens: FAR_GRANT,
        messages: [{ role: 'user', content: 'Explain the hard stop.' }],
      },
    },
  ];
  if (Buffer.byteLength(REPLY) >= FAR_GRANT)
    throw new Error('the answer is too long for the far grant: its byte bound would reach the tokenizer');
  const prepared: Prepared[] = [];
  for (const base of formats) {
    const price = pricing.get(base.model);
    const tokenizer = price.tokenizer;
    // What meter() counts output with: the model's tokenizer, or a count that cannot under-state the provider's.
    const count: OutputCounter =
      tokenizer === 'approximate'
        ? providers.upperOutputTokens(providers.SYNC_ESTIMATE_MS)
        : (text) => providers.countTextTokens(text, tokenizer, new providers.CountBudget(providers.SYNC_ESTIMATE_MS));
    // And what its hard stop counts with: a count that cannot over-state the provider's.
    const stopCount: OutputCounter =
      tokenizer === 'approximate'
        ? providers.lowerOutputTokens(providers.maxTokenBytesOf(price.provider))
        : (text) =>
            providers.countTextTokens(text, tokenizer, new providers.CountBudget(providers.SYNC_ESTIMATE_MS), 'lower');
    const outputTokens = count(REPLY);
    const events = streamOf(base.api, base.model, base.body, outputTokens);
    const item: Prepared = {
      format: { ...base, events },
      adapter: providers.adapterFor(base.api),
      price,
      counting: {
        countOutput: (text) => {
          item.tokenizerCalls++;
          return count(text);
        },
        stopCount: (text) => {
          item.tokenizerCalls++;
          return stopCount(text);
        },
        own: tokenizer !== 'approximate',
      },
      tokenizerCalls: 0,
      outputTokens,
      passGrant: 0,
      stopIndex: -1,
    };
    // The largest grant the answer passes: the stream is cut at (or just before) its last delta, the tokenizer having run near the end.
    for (let grant = outputTokens; grant > 0 && item.stopIndex === -1; grant--) {
      item.stopIndex = stopEventIndex(harness, item, grant);
      item.passGrant = grant;
    }
    if (item.stopIndex === -1)
      throw new Error(`${base.label}: no grant below ${outputTokens} tokens stopped the stream`);
    prepared.push(item);
  }
  return { harness, prepared };
}

const GRANTS: Record<Mode, (prepared: Prepared) => number | undefined> = {
  write: () => undefined,
  reader: () => undefined,
  armed: () => FAR_GRANT,
  atGrant: (prepared) => prepared.outputTokens,
  passes: (prepared) => prepared.passGrant,
};

interface ModeSamples {
  /** ns per event over the whole stream (write, reader, armed), per round. */
  whole: number[];
  /** ns per event over events [0, stopIndex], per round. */
  prefix: number[];
  stopped: boolean;
  tokenizerCalls: number;
}

export async function runHardStopBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 6 : 20;
  const streamsPerRound = context.quick ? 40 : 100;
  const { harness, prepared } = await prepareFormats();
  const samples = new Map<string, ModeSamples>();
  const key = (p: Prepared, mode: Mode) => `${p.format.api} ${mode}`;
  for (const p of prepared)
    for (const mode of MODES) samples.set(key(p, mode), { whole: [], prefix: [], stopped: false, tokenizerCalls: 0 });
  const yieldTurn = () => new Promise((resolve) => setImmediate(resolve));
  // Untimed warm-up rounds (the JIT), then alternating rounds: every API and mode once per round.
  for (let round = -2; round < rounds; round++) {
    for (const p of prepared) {
      for (const mode of MODES) {
        let prefixMs = 0;
        let wholeMs = 0;
        let last: StreamRun | undefined;
        for (let s = 0; s < streamsPerRound; s++) {
          last = runStream(harness, p, mode, GRANTS[mode](p), p.stopIndex);
          prefixMs += last.prefixMs;
          wholeMs += last.prefixMs + last.restMs;
          // A turn of the loop per stream: the corked writes go out, as they would between two upstream chunks.
          await yieldTurn();
        }
        if (round < 0) continue;
        const entry = samples.get(key(p, mode))!;
        entry.whole.push((wholeMs * 1e6) / (streamsPerRound * p.format.events.length));
        entry.prefix.push((prefixMs * 1e6) / (streamsPerRound * (p.stopIndex + 1)));
        entry.stopped = last!.stopped;
        entry.tokenizerCalls = last!.tokenizerCalls;
      }
    }
    if (round >= 0) context.log(`hard stop round ${round + 1}/${rounds} done`);
  }
  return describe(prepared, samples, key, { rounds, streamsPerRound });
}

function describe(
  prepared: Prepared[],
  samples: Map<string, ModeSamples>,
  key: (p: Prepared, mode: Mode) => string,
  setup: { rounds: number; streamsPerRound: number },
): SectionResult {
  const ns = (value: number) => `${fmtNumber(value)} ns`;
  const signed = (value: number) => `${value >= 0 ? '+' : ''}${fmtNumber(value)} ns`;
  /** Median over rounds of the per-round difference, so drift that hits a whole round cancels. */
  const diff = (a: number[], b: number[]) => median(a.map((value, index) => b[index]! - value));
  const results = prepared.map((p) => {
    const s = (mode: Mode) => samples.get(key(p, mode))!;
    return {
      p,
      write: median(s('write').whole),
      reader: median(s('reader').whole),
      armed: median(s('armed').whole),
      atGrant: median(s('atGrant').whole),
      atGrantCost: diff(s('reader').whole, s('atGrant').whole),
      atGrantCalls: s('atGrant').tokenizerCalls,
      passes: median(s('passes').prefix),
      armedCost: diff(s('reader').whole, s('armed').whole),
      passesExtra: diff(s('armed').prefix, s('passes').prefix),
      passesCost: diff(s('reader').prefix, s('passes').prefix),
      valid:
        !s('armed').stopped &&
        s('armed').tokenizerCalls === 0 &&
        !s('reader').stopped &&
        !s('atGrant').stopped &&
        s('passes').stopped,
      passCalls: s('passes').tokenizerCalls,
    };
  });
  const rows = results.map((r) => [
    r.p.format.label,
    `${r.p.format.events.length} (${PIECES.length} deltas)`,
    ns(r.write),
    ns(r.reader),
    ns(r.armed),
    signed(r.armedCost),
    `${ns(r.atGrant)} (${signed(r.atGrantCost)}; ${r.atGrantCalls} tokenizer runs)`,
    ns(r.passes),
    signed(r.passesExtra),
    signed(r.passesCost),
  ]);
  const body = [
    `ResponseTap over Node's own ServerResponse on a discarding socket, one write per event, ${PIECES.length} deltas ` +
      `(${fmtNumber(Buffer.byteLength(REPLY))} bytes) per stream; ${setup.rounds} alternating rounds of ` +
      `${setup.streamsPerRound} streams per API and case, medians over rounds. (a) the usage reader only; (b) armed, grant ` +
      `${FAR_GRANT} tokens; (b′) a grant the answer reaches exactly; (c) a grant the stream passes near its end.`,
    '',
    table(
      [
        'API',
        'events per stream',
        'write only',
        '(a) reader only',
        '(b) armed',
        '(a)→(b) per event',
        '(b′) ends at its grant (vs (a))',
        '(c) passes the grant',
        '(c) extra over (b) per event',
        '(c) − (a) per event',
      ],
      rows,
    ),
    '',
    'The (c) streams:',
    '',
    table(
      [
        'API',
        "output (meter's count)",
        'grant',
        'stopped at event',
        'tokenizer runs per stream',
        '(c) extra over (b) per stream',
      ],
      results.map((r) => [
        r.p.format.label,
        `${r.p.outputTokens} tokens`,
        `${r.p.passGrant} tokens`,
        `${r.p.stopIndex + 1} of ${r.p.format.events.length}`,
        String(r.passCalls),
        `${fmtNumber((r.passesExtra * (r.p.stopIndex + 1)) / 1000)} µs`,
      ]),
    ),
  ].join('\n');
  const valid = results.every((r) => r.valid);
  const invalid =
    '; a case did not behave as set up (the armed stream stopped or counted, or the passing one ran to its end)';
  const worstArmed = Math.max(...results.map((r) => r.armedCost));
  const worstPassing = Math.max(...results.map((r) => r.passesCost));
  const targets: TargetVerdict[] = [
    {
      target: `The hard stop costs at most ${TARGET_NS_PER_EVENT / 1000} µs per streamed event: armed, output under its grant ((a)→(b))`,
      holds: valid ? worstArmed <= TARGET_NS_PER_EVENT : undefined,
      figures: results.map((r) => `${r.p.format.label} ${signed(r.armedCost)}`).join(', ') + (valid ? '' : invalid),
    },
    {
      target: `The hard stop costs at most ${TARGET_NS_PER_EVENT / 1000} µs per streamed event: a stream that passes its grant, amortised over its events ((c) − (a))`,
      holds: valid ? worstPassing <= TARGET_NS_PER_EVENT : undefined,
      figures:
        results
          .map(
            (r) =>
              `${r.p.format.label} ${signed(r.passesCost)} (${r.passCalls} tokenizer runs over ${r.p.stopIndex + 1} events)`,
          )
          .join(', ') + (valid ? '' : invalid),
    },
  ];
  const findings = [
    `Hard stop: arming it adds ${results.map((r) => `${signed(r.armedCost)} (${r.p.format.label})`).join(', ')} per event to the reader's ` +
      `${results.map((r) => ns(r.reader)).join(' / ')}; a stream that passes its grant pays ${results.map((r) => signed(r.passesCost)).join(' / ')} per event ` +
      `in all, tokenizer runs and the ending included (§6).`,
    `Hard stop: an answer that ends at its grant (never stopped) pays ${results.map((r) => signed(r.atGrantCost)).join(' / ')} per event over the reader ` +
      `(${results.map((r) => r.atGrantCalls).join(' / ')} tokenizer runs per stream): the byte bound passes the grant from about a fifth of the output on (§6).`,
  ];
  return { title: '6. Hard stop: cost per streamed event (in-process)', body, targets, findings };
}
