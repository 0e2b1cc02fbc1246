// The stream translator's contract, shared by both directions, and the part every translator has in common.
import type { TokenUsage } from '@tollgate/core';
import { SseInput } from './sse.js';

/** Turns an upstream event stream, fed in chunks split anywhere, into the client's API's events. */
export interface StreamTranslator {
  /** Feeds upstream SSE text (or bytes); returns the SSE text to send the client now ('' when nothing is complete yet). */
  push(chunk: string | Uint8Array): string;
  /** The upstream ended: whatever its last unterminated event completes. */
  end(): string;
  /**
   * The usage the target reported so far, read by the target's own adapter: exact, cache writes
   * included (an OpenAI-shaped client's usage has no field for them). Undefined before any.
   */
  usage(): TokenUsage | undefined;
  /**
   * The client's stream has its ending (or the error that ends it): `usage()` holds all the target reported, and
   * is what the client's own usage event, sent with that ending, reports.
   */
  readonly finished: boolean;
}

/** Feeds each complete upstream SSE event (split anywhere across chunks) to `onEvent`; what it returns goes to the client. */
export abstract class SseTranslator implements StreamTranslator {
  private readonly input = new SseInput();

  push(chunk: string | Uint8Array): string {
    let out = '';
    for (const block of this.input.push(chunk)) if (block.hasData) out += this.onEvent(block.event, block.data);
    return out;
  }

  end(): string {
    let out = '';
    for (const block of this.input.end()) if (block.hasData) out += this.onEvent(block.event, block.data);
    return out;
  }

  abstract usage(): TokenUsage | undefined;

  abstract readonly finished: boolean;

  /** One upstream event: its name (`''` when it has none) and its data; the client's SSE text for it. */
  protected abstract onEvent(event: string, data: string): string;
}
