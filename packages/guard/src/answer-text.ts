// The answer hook of the guardrails: an answer's text read as it passes the response tap, through the call's adapter.
import type { Request, Response } from 'express';
import { getContext, tapResponse } from '@tollgate/core';
import type { ProviderCall, ResponseReader } from '@tollgate/core/provider-call';
import { adapterFor } from '@tollgate/providers';
import type { ProviderAdapter, UsageReader } from '@tollgate/providers';
import { SseDecoder } from '@tollgate/providers/sse';
import type { AnswerTextContext, AnswerTextHook } from './guardrail-options.js';

/** A JSON answer larger than this is not read (the hook hears none of it): as the meter, which reads only its tail. */
const MAX_JSON_BYTES = 4 * 1024 * 1024;

function toBuffer(chunk: unknown, encoding: unknown): Buffer | undefined {
  if (typeof chunk === 'string')
    return Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return undefined;
}

/**
 * A reader of the response's tap (it never changes what goes out): a stream's events, or a JSON answer once whole,
 * go to a fresh usage reader of the call's adapter, whose output text is handed to the hook piece by piece. The
 * hook naming a rule stops the answer there: the call is aborted and the response destroyed before the chunk that
 * carried the text is sent (readers run before the tap's filter).
 */
class AnswerTextReader implements ResponseReader {
  #mode: 'unknown' | 'sse' | 'json' | 'other' = 'unknown';
  #decoder: SseDecoder | undefined;
  #json: Buffer[] = [];
  #jsonBytes = 0;
  #done = false;
  readonly #answer: AnswerTextContext;

  constructor(
    private readonly res: Response,
    private readonly reader: UsageReader,
    private readonly hook: AnswerTextHook,
    call: ProviderCall,
    identity: AnswerTextContext['identity'],
    private readonly stopped: (rule: string) => void,
  ) {
    this.#answer = { call, identity, streamed: call.stream };
    reader.output.onText = (text) => this.#hear(text);
  }

  read(chunk: unknown, encoding: unknown): void {
    if (this.#done) return;
    const bytes = toBuffer(chunk, encoding);
    if (bytes === undefined || bytes.length === 0) return;
    this.#guarded(() => {
      if (this.#mode === 'unknown') this.#detect();
      if (this.#mode === 'sse') this.#events(this.#decoder!.push(bytes));
      else if (this.#mode === 'json') this.#keep(bytes);
    });
  }

  end(): void {
    if (this.#done) return;
    this.#guarded(() => {
      if (this.#mode === 'sse') {
        const last = this.#decoder!.end();
        if (last) this.#events([last]);
      } else if (this.#mode === 'json' && this.#jsonBytes > 0) {
        this.reader.onJson(JSON.parse(Buffer.concat(this.#json).toString('utf8')));
      }
    });
    this.#done = true;
  }

  #detect(): void {
    const type = String(this.res.getHeader('content-type') ?? '').toLowerCase();
    if (type.includes('text/event-stream')) {
      this.#mode = 'sse';
      this.#decoder = new SseDecoder();
    } else this.#mode = type.includes('json') ? 'json' : 'other';
  }

  #events(blocks: ReturnType<SseDecoder['push']>): void {
    for (const block of blocks) {
      if (this.#done) return;
      if (block.hasData) this.reader.onEvent(block.event, block.data);
    }
  }

  #keep(bytes: Buffer): void {
    this.#jsonBytes += bytes.length;
    if (this.#jsonBytes > MAX_JSON_BYTES) {
      this.#done = true;
      this.#json = [];
      return;
    }
    this.#json.push(bytes);
  }

  /** An answer that cannot be read (not JSON after all, a broken event) is not the hook's business: it passes. */
  #guarded(read: () => void): void {
    try {
      read();
    } catch {
      this.#done = true;
    }
  }

  #hear(text: string): void {
    if (this.#done) return;
    let rule: string | undefined;
    try {
      const verdict = this.hook(text, this.#answer);
      if (verdict !== undefined && verdict !== null)
        rule = typeof verdict.rule === 'string' ? 'answer' : 'answer:failed';
    } catch {
      // A hook that throws fails closed, as the prompt check does.
      rule = 'answer:failed';
    }
    if (rule === undefined) return;
    this.#done = true;
    this.stopped(rule);
    this.#answer.call.abort(`guardrails: the answer hook stopped the answer (${rule})`);
    this.res.destroy();
  }
}

/** Reads the answer of `call` as it passes the response's tap, for `hook`; `stopped` hears the rule of a stop. */
export function watchAnswerText(
  req: Request,
  res: Response,
  call: ProviderCall,
  hook: AnswerTextHook,
  stopped: (rule: string) => void,
): void {
  const adapter = adapterFor(call.adapter as ProviderAdapter);
  const reader = adapter.createReader({ request: call.body });
  const identity = getContext(req, res).identity;
  tapResponse(req, res).read(new AnswerTextReader(res, reader, hook, call, identity, stopped));
}
