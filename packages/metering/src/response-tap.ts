// Reads a response for usage as it passes through res.write / res.end; ends a stream at its grant; tells the call's cost.
import type { ServerResponse } from 'node:http';
import { tapResponse } from '@tollgate/core';
import { exactUsd } from '@tollgate/core/costs';
import type { TollgateContext } from '@tollgate/core';
import type { EndThrough, ResponseFilter, WriteThrough } from '@tollgate/core/provider-call';
import { SseDecoder } from '@tollgate/providers/sse';
import { withCostUsd } from '@tollgate/providers/answers';
import type { ProviderAdapter, UsageReader } from '@tollgate/providers';
import type { SseBlock } from '@tollgate/providers/sse';
import { jsonTellingCost, tellCostHeaders } from './cost-telling.js';
import { OutputHold, type Outcome, type OutputCounting } from './output-hold.js';
import { JsonBody, readJsonAnswer } from './json-answer.js';
import { StreamAssembly } from './stream-assembly.js';

export { findUsageObject } from './json-answer.js';
export type { OutputCounting } from './output-hold.js';

/** What the tap asks the meter once an answer's usage is known, to tell the client what the call cost. */
export interface CallBill {
  /**
   * The call's cost (nano-USD) as its record bills it, from what passed so far; undefined when no record would be
   * made. `whole`: a JSON answer is whole and about to go out, as if the response had finished.
   */
  costNow(whole: boolean): number | undefined;
}

/** A block's bytes with its data replaced by `data` (one `data:` line where its first one was; other fields kept). */
function withData(raw: Buffer, data: string): Buffer {
  const lines = raw.toString('utf8').split(/\r\n|\r|\n/);
  const kept: string[] = [];
  let placed = false;
  for (const line of lines) {
    if (line === '') continue;
    if (line === 'data' || line.startsWith('data:')) {
      if (!placed) kept.push(`data: ${data}`);
      placed = true;
    } else kept.push(line);
  }
  return Buffer.from(`${kept.join('\n')}\n\n`);
}

/** A block waiting behind an extension: `out`, what goes out for it, once it was read. */
interface WaitingBlock {
  block: SseBlock;
  out: Buffer | undefined;
}

/** The counting of the model a request runs with now (a model group may have switched it): made once per meter. */
type CountingOf = (ctx: TollgateContext) => OutputCounting;

type WriteCallback = (error?: Error | null) => void;
const EMPTY = Buffer.alloc(0);
type Chunk = string | Buffer | Uint8Array;

function toBuffer(chunk: Chunk, encoding: unknown): Buffer {
  if (typeof chunk === 'string')
    return Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

const isUtf8 = (encoding: unknown): boolean =>
  encoding === undefined || encoding === null || encoding === 'utf8' || encoding === 'utf-8';

/**
 * The bytes of the first `count` blocks that did not go out yet. Passing through, everything
 * before `end` in this chunk (an event's first bytes already left with an earlier chunk); with whole
 * events, whole blocks only, each as `replaced` has it (empty: dropped), else as it came (an open
 * event's bytes were held back).
 */
function unsentBytes(
  wholeEvents: boolean,
  bytes: Buffer,
  blocks: SseBlock[],
  count: number,
  start: number,
  end: number,
  replaced: Map<number, Buffer> | undefined,
): Buffer {
  if (!wholeEvents || (replaced === undefined && start === 0)) return bytes.subarray(0, end);
  const kept: Buffer[] = [];
  for (let i = 0; i < count; i++) kept.push(replaced?.get(i) ?? blocks[i]!.raw);
  return Buffer.concat(kept);
}

/**
 * Reads a response as it passes `res.write` / `res.end`: streams event by event, JSON held and billed, and the hard
 * stop past a stream's grant (docs/performance.md, "The usage tap").
 */
export class UsageTap implements ResponseFilter {
  streamed = false;
  /** The stream was ended here: its output passed the grant, or `endNow` (a server stopping). */
  stopped = false;
  /** It was `endNow` that ended it, not the grant. */
  endedNow = false;
  /** Output tokens counted when the stream was stopped. */
  stoppedAt = 0;
  /** The stream's grant and its hold, known once it starts; undefined: no hard stop. */
  private hold: OutputHold | undefined;
  /** Blocks read or to be read once the extension asked for answers; undefined when none is out. */
  private waiting: WaitingBlock[] | undefined;
  /** The route's `end`, to run once the waiting blocks went out. */
  private endAfterWait: (() => void) | undefined;
  /** The counting of the model that answered, fixed when the answer starts. */
  private fixedCounting: OutputCounting | undefined;
  /** Set by the meter: asked for the call's cost once the answer's usage is known. */
  bill: CallBill | undefined = undefined;
  /** A JSON call answered from the upstream's stream: what the stream lets out, kept to be assembled. */
  private assembly: StreamAssembly | undefined;
  private mode: 'unknown' | 'sse' | 'json' | 'other' = 'unknown';
  private reader: UsageReader | undefined;
  private decoder: SseDecoder | undefined;
  /** Events go out whole (a partial event's bytes wait for its end): one can be dropped or rewritten. */
  private wholeEvents = false;
  /** A JSON answer's body: kept to be read, and held until it is whole where its cost is told. */
  private jsonBody: JsonBody | undefined;
  /** Bytes the decoder holds of an event not complete yet. */
  private held = 0;
  private broken = false;
  private passWrite: WriteThrough | undefined;
  private passEnd: EndThrough | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly ctx: TollgateContext,
    private readonly adapter: ProviderAdapter | undefined,
    private readonly addedUsage: boolean,
    /** The counting of the model the request runs with, read when the answer starts (after any switch). */
    private readonly countingOf: CountingOf,
  ) {
    if (!adapter) return;
    this.reader = adapter.createReader({ stripAddedUsage: addedUsage, request: ctx.call?.body });
    const tap = tapResponse(res.req, res);
    this.passWrite = tap.pass.write;
    this.passEnd = tap.pass.end;
    tap.filter(this);
  }

  /** Output tokens held for the stream: its grant, and what extensions added as it ran past it (0 before it starts). */
  get holdTokens(): number {
    return this.hold?.tokens ?? 0;
  }

  /** How the output is counted: the model's that answered (the one the request runs with, until the answer starts). */
  get counting(): OutputCounting {
    return this.fixedCounting ?? this.countingOf(this.ctx);
  }

  /** `res.write` of a tapped response. */
  write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    const cb = (typeof encoding === 'function' ? encoding : callback) as WriteCallback | undefined;
    const enc = typeof encoding === 'function' ? undefined : encoding;
    if (this.stopped) {
      // The stream was ended at its grant: what the upstream still sends goes nowhere.
      if (cb) process.nextTick(cb);
      return true;
    }
    const res = this.res;
    if (chunk === undefined || chunk === null || this.broken) return this.passWrite!.call(res, chunk, enc, cb);
    const forward = this.observe(chunk as Chunk, enc);
    if (this.stopped) {
      this.passEnd!.call(res, forward, undefined, cb);
      return true;
    }
    if (forward === undefined) return this.passWrite!.call(res, chunk, enc, cb);
    if (forward.length === 0) {
      // Everything was held back (a partial or stripped event): the write still completes.
      if (cb) process.nextTick(cb);
      return true;
    }
    return this.passWrite!.call(res, forward, undefined, cb);
  }

  /** `res.end` of a tapped response. */
  end(chunk?: unknown, encoding?: unknown, callback?: unknown): ServerResponse {
    const cb = (typeof chunk === 'function' ? chunk : typeof encoding === 'function' ? encoding : callback) as
      (() => void) | undefined;
    const data = typeof chunk === 'function' ? undefined : (chunk as Chunk | undefined | null);
    const enc = typeof encoding === 'function' ? undefined : encoding;
    const res = this.res;
    if (this.stopped) {
      if (cb) process.nextTick(cb);
      return res;
    }
    // `passEnd` is read at each use: once the answer starts, one assembled for its client ends through the assembly.
    if (this.broken) return this.passEnd!.call(res, data, enc, cb);
    let forward = data === undefined || data === null ? undefined : this.observe(data, enc);
    if (this.waiting) {
      // The response ends once what waits behind the extension went out (or the stream was cut there).
      this.endAfterWait = () => this.end(cb);
      return res;
    }
    if (this.stopped) return this.passEnd!.call(res, forward, undefined, cb);
    const rest = this.mode === 'json' ? this.endJson(this.jsonBody!.takeHeld()) : this.endStream();
    // Nothing more to send: `forward` stands (undefined: end's chunk as it is).
    if (rest !== undefined && rest.length > 0) {
      const before = forward ?? (data === undefined || data === null ? undefined : toBuffer(data, enc));
      forward = before === undefined ? rest : Buffer.concat([before, rest]);
    }
    if (forward === undefined) return this.passEnd!.call(res, data, enc, cb);
    return forward.length === 0
      ? this.passEnd!.call(res, undefined, undefined, cb)
      : this.passEnd!.call(res, forward, undefined, cb);
  }

  /** Reads a chunk; returns the bytes to send instead of it (stripped, or ended at the grant), or undefined to send it as it is. */
  private observe(chunk: Chunk, encoding: unknown): Buffer | undefined {
    try {
      if (this.mode === 'unknown') this.detect();
      if (this.mode === 'sse') return this.observeEvents(toBuffer(chunk, encoding));
      if (this.mode === 'json') {
        const body = this.jsonBody!;
        if (!body.holding) {
          body.keep(typeof chunk === 'string' && isUtf8(encoding) ? chunk : toBuffer(chunk, encoding));
          return undefined;
        }
        // Held: encoded once, the same bytes read for usage and sent.
        const bytes = toBuffer(chunk, encoding);
        body.keep(bytes);
        return body.hold(bytes);
      }
      return undefined;
    } catch (error) {
      // Metering must never break a response: stop reading, keep passing bytes (what was held first).
      this.broken = true;
      process.emitWarning(
        `tollgate: could not read the response for usage: ${error instanceof Error ? error.message : String(error)}`,
      );
      const bytes = toBuffer(chunk, encoding);
      return this.jsonBody?.release(bytes);
    }
  }

  /**
   * The `held` JSON answer, whole, once the route ended it: its headers say what the call cost and what the tightest
   * budget has left after it, and its usage object carries `cost_usd` (the adapter's `usageField`). Undefined when
   * nothing is held. When its head went out already, nothing is told rather than half of it.
   */
  private endJson(held: Buffer[] | undefined): Buffer | undefined {
    if (held === undefined) return undefined;
    const body = held.length === 1 ? held[0]! : Buffer.concat(held);
    try {
      const cost = this.bill!.costNow(true);
      return cost === undefined ? body : jsonTellingCost(body, cost, this.res, this.ctx, this.adapter!.usageField);
    } catch (error) {
      process.emitWarning(
        `tollgate: could not tell the answer's cost: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    return body;
  }

  /**
   * Reads the events a chunk completes. Returns undefined to send the chunk as it is, or the bytes to
   * send instead: without the stripped usage chunk, or up to where the stream ends and then the API's
   * ending, or up to an event that waits for an extension of the hold. Far below the hold an event
   * costs one comparison and allocates nothing.
   */
  private observeEvents(bytes: Buffer): Buffer | undefined {
    // Where the first block starts in this chunk: before it when its first bytes came in earlier chunks.
    const start = -this.held;
    const blocks = this.decoder!.push(bytes);
    if (this.waiting) {
      // An extension is out: every event waits behind it, read when it answers.
      let end = start;
      for (const block of blocks) {
        end += block.raw.length;
        this.waiting.push({ block, out: undefined });
      }
      this.held = bytes.length - end;
      return EMPTY;
    }
    let end = start;
    let replaced: Map<number, Buffer> | undefined;
    for (let i = 0; i < blocks.length; i++) {
      const block = blocks[i]!;
      end += block.raw.length;
      const out = this.readBlock(block);
      if (out !== undefined) (replaced ??= new Map()).set(i, out);
      if (this.hold === undefined) continue;
      const verdict = this.hold.verdict();
      if (verdict === 'pass') continue;
      if (verdict === 'stop' || verdict === 'cut') {
        const sent = verdict === 'stop' ? i + 1 : i;
        const sentEnd = verdict === 'stop' ? end : end - block.raw.length;
        const ending = this.endingNow(verdict === 'cut');
        return Buffer.concat([unsentBytes(this.wholeEvents, bytes, blocks, sent, start, sentEnd, replaced), ending]);
      }
      // The hold is being extended: this event and what follows wait for the answer (what went before goes now).
      const sentEnd = end - block.raw.length;
      this.waiting = [{ block, out: out ?? block.raw }];
      for (let rest = i + 1; rest < blocks.length; rest++) {
        end += blocks[rest]!.raw.length;
        this.waiting.push({ block: blocks[rest]!, out: undefined });
      }
      this.held = bytes.length - end;
      void verdict.then((answer) => this.resume(answer));
      return unsentBytes(this.wholeEvents, bytes, blocks, i, start, sentEnd, replaced);
    }
    this.held = bytes.length - end;
    if (!this.wholeEvents || (replaced === undefined && start === 0 && end === bytes.length)) return undefined;
    return unsentBytes(this.wholeEvents, bytes, blocks, blocks.length, start, end, replaced);
  }

  /** Reads an event; returns what goes out instead of it (EMPTY: dropped, or rewritten with the cost), else undefined. */
  private readBlock(block: SseBlock): Buffer | undefined {
    if (!block.hasData) return undefined;
    const reader = this.reader!;
    reader.output.startEvent();
    if (reader.onEvent(block.event, block.data)) return EMPTY;
    if (reader.finalUsageAt !== undefined && this.wholeEvents && !this.assembly)
      return this.withCost(block, reader.finalUsageAt);
    return undefined;
  }

  /** The extension answered: what waited goes out up to where the stream ends, or until another extension. */
  private resume(first: Outcome): void {
    // Ended meanwhile (`endNow`): what waited is dropped.
    if (this.waiting === undefined) return;
    const waiting = this.waiting;
    const out: Buffer[] = [];
    let verdict: Outcome | Promise<Outcome> = first;
    let index = 0;
    try {
      while (verdict === 'pass') {
        out.push(waiting[index]!.out!);
        if (++index === waiting.length) break;
        const next = waiting[index]!;
        next.out = this.readBlock(next.block) ?? next.block.raw;
        verdict = this.hold === undefined ? 'pass' : this.hold.verdict();
      }
    } catch {
      this.broken = true;
      verdict = 'pass';
      for (let rest = index; rest < waiting.length; rest++) out.push(waiting[rest]!.block.raw);
      index = waiting.length;
    }
    if (verdict === 'stop' || verdict === 'cut') {
      if (verdict === 'stop') out.push(waiting[index]!.out!);
      this.waiting = undefined;
      out.push(this.endingNow(verdict === 'cut'));
      this.passEnd!.call(this.res, Buffer.concat(out), undefined, undefined);
      this.endAfterWait?.();
      return;
    }
    if (out.length > 0) this.passWrite!.call(this.res, Buffer.concat(out), undefined, undefined);
    if (verdict instanceof Promise) {
      this.waiting = waiting.slice(index);
      void verdict.then((answer) => this.resume(answer));
      return;
    }
    this.waiting = undefined;
    const end = this.endAfterWait;
    this.endAfterWait = undefined;
    end?.();
  }

  /**
   * Ends a stream under way now, as the hard stop does (the API's ending, billing what went out): a server that cannot
   * wait for it longer. Not a stream, or part of an event out already (its ending would not parse): false.
   */
  endNow(): boolean {
    if (this.mode !== 'sse' || this.stopped || this.broken || this.reader === undefined) return false;
    if (this.res.writableEnded || this.res.getHeader('content-length') !== undefined) return false;
    if (this.held > 0 && !this.wholeEvents) return false;
    // What waits behind an extension of the hold is dropped (its first event was read): only what went out is billed.
    const withheld = this.waiting !== undefined;
    this.waiting = undefined;
    this.endAfterWait = undefined;
    this.endedNow = true;
    this.passEnd!.call(this.res, this.endingNow(withheld), undefined, undefined);
    return true;
  }

  /**
   * Stops the stream here: the API's ending, billing what went out, never more than was held. `withheld`: the event
   * read last does not go out, so its text is not billed.
   */
  private endingNow(withheld: boolean): Buffer {
    const output = this.reader!.output;
    if (withheld) output.withdrawEvent();
    const counted = output.tokens(this.fixedCounting!.countOutput);
    this.stoppedAt = this.hold === undefined ? counted : Math.min(counted, this.hold.tokens);
    const ending = this.reader!.ending({
      inputTokens: this.ctx.estimate?.inputTokens ?? 0,
      outputTokens: this.stoppedAt,
    });
    this.stop();
    return Buffer.from(ending);
  }

  /** The usage event's block with the call's cost in its usage object at `path`; undefined to send it as it is. */
  private withCost(block: SseBlock, path: readonly string[]): Buffer | undefined {
    const cost = this.bill?.costNow(false);
    if (cost === undefined) return undefined;
    const data = withCostUsd(block.data, path, exactUsd(cost));
    return data === undefined ? undefined : withData(block.raw, data);
  }

  private stop(): void {
    this.stopped = true;
    this.ctx.call?.abort('The answer passed the output its reservation was granted.');
  }

  /** True when the client asked for JSON and gets the stream's JSON answer (`ProviderCall.jsonFromStream`). */
  get assembled(): boolean {
    return this.assembly !== undefined;
  }

  /**
   * The client asked for JSON: the stream is held as any stream, and what it lets out is kept instead of sent, then
   * assembled into the JSON answer, billed as a JSON answer is (its headers, `cost_usd`). Its reader reads the stream as
   * it was asked for (its usage included).
   */
  private assemble(): void {
    const adapter = this.adapter!;
    const call = this.ctx.call!;
    const assembly = new StreamAssembly(adapter);
    this.assembly = assembly;
    this.reader = adapter.createReader({ request: adapter.streamRequest?.(call.body) ?? call.body });
    const end = this.passEnd!;
    this.passWrite = (chunk, encoding, callback) => {
      assembly.keep(chunk, encoding);
      if (typeof callback === 'function') process.nextTick(callback as WriteCallback);
      return true;
    };
    this.passEnd = (chunk, encoding, callback) => {
      assembly.keep(typeof chunk === 'function' ? undefined : chunk, encoding);
      const done = [chunk, encoding, callback].find((each) => typeof each === 'function');
      return end.call(this.res, this.assembledAnswer(), undefined, done);
    };
  }

  /** The JSON answer assembled from what the stream let out, billed; a stream that does not assemble is a 502. */
  private assembledAnswer(): Buffer {
    const { res, ctx } = this;
    const answer = this.assembly!.answer();
    if (!res.headersSent) {
      res.removeHeader('cache-control');
      res.setHeader('content-type', 'application/json');
    }
    if (answer === undefined) {
      // Billed what was read as the provider's cut answer is: the record does not blame the client.
      ctx.upstreamAborted = true;
      if (!res.headersSent) res.statusCode = 502;
      return StreamAssembly.failure(ctx.servedBy ?? this.adapter!.label ?? this.adapter!.provider);
    }
    return this.endJson([answer])!;
  }

  private detect(): void {
    this.fixedCounting = this.countingOf(this.ctx);
    const type = String(this.res.getHeader('content-type') ?? '').toLowerCase();
    if (type.includes('text/event-stream')) {
      this.mode = 'sse';
      this.streamed = true;
      this.decoder = new SseDecoder();
      // Dropping or rewriting bytes would break a declared length; then the client just sees the chunk.
      const lengthFree = this.res.getHeader('content-length') === undefined;
      this.wholeEvents = lengthFree && (this.addedUsage || this.bill !== undefined);
      if (this.wholeEvents && this.bill !== undefined && this.ctx.call?.jsonFromStream === true) this.assemble();
      // The grant as it stands when the answer starts (after every clamp); a declared length cannot take an ending.
      const estimate = this.ctx.estimate;
      if (estimate && lengthFree) {
        const grant = estimate.maxOutputTokens * (estimate.outputChoices ?? 1);
        this.hold = new OutputHold(grant, this.reader!.output, this.fixedCounting, this.wholeEvents, this.ctx);
      }
    } else if (type.includes('json') || type === '') {
      this.mode = 'json';
      this.jsonBody = new JsonBody(this.bill !== undefined);
    } else {
      this.mode = 'other';
      this.tellCostAhead();
    }
  }

  /**
   * An answer of another type (audio) is passed on unread: its bill is what its reader knew before its first byte (what
   * the request asked for), so a successful one's headers tell it as a JSON answer's do.
   */
  private tellCostAhead(): void {
    const { res } = this;
    if (this.bill === undefined || res.headersSent || res.statusCode >= 300) return;
    const cost = this.bill.costNow(false);
    if (cost !== undefined) tellCostHeaders(res, this.ctx, cost);
  }

  /** The response ended: the bytes still held (strip mode), if any. */
  private endStream(): Buffer | undefined {
    try {
      if (this.mode === 'unknown') this.detect();
      if (this.mode !== 'sse') return undefined;
      const last = this.decoder!.end();
      if (!last) return this.wholeEvents ? EMPTY : undefined;
      const drop = last.hasData && this.reader!.onEvent(last.event, last.data);
      if (!this.wholeEvents) return undefined;
      if (drop) return EMPTY;
      const path = last.hasData ? this.reader!.finalUsageAt : undefined;
      return (path !== undefined ? this.withCost(last, path) : undefined) ?? last.raw;
    } catch {
      this.broken = true;
      return undefined;
    }
  }

  /** The reader, after feeding it what a JSON body held. */
  finish(): UsageReader | undefined {
    if (!this.reader || this.mode !== 'json') return this.reader;
    const kept = this.jsonBody!.takeKept();
    if (kept === undefined) return this.reader;
    this.reader = readJsonAnswer(kept, this.reader, {
      fields: this.adapter?.answerUsageFields,
      complete: (reader) => {
        const read = reader.result(this.counting.countOutput);
        // An answer granted no output (embeddings) reports none: its usage is complete without it.
        const noOutput = this.ctx.estimate?.maxOutputTokens === 0;
        return read?.source === 'provider' && (read.usage.outputTokens > 0 || noOutput);
      },
      fresh: () => this.adapter!.createReader({ stripAddedUsage: this.addedUsage, request: this.ctx.call?.body }),
    });
    return this.reader;
  }
}
