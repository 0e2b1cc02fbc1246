// One Realtime response between the session and its in-process POST (realtime-socket.ts): its hold asked for, granted
// or refused, and its end reported to the meter once; and the Realtime `error` event the gateway sends.
import type { RealtimeOutcome, RealtimeResponseAsk } from '@tollgate/metering';

/** The usage of a response that ran nothing (refused upstream, or never sent): billed 0. */
export const ZERO_USAGE = {
  inputTokens: 0,
  cachedInputTokens: 0,
  cacheWriteTokens: 0,
  outputTokens: 0,
  reasoningTokens: 0,
};

/** A Realtime `error` event (`{ type: 'error', event_id, error: { type, code, message, param, event_id } }`). */
export function realtimeError(
  error: { type?: string; code: string | null; message: string; param?: string | null },
  eventId?: string,
) {
  return JSON.stringify({
    type: 'error',
    event_id: `event_tollgate_${Date.now().toString(36)}`,
    error: {
      type: error.type ?? 'invalid_request_error',
      code: error.code,
      message: error.message,
      param: error.param ?? null,
      event_id: eventId ?? null,
    },
  });
}

/** One response's admission and its end, shared by the session and its in-process POST. */
export class RealtimeTurn {
  #finish: ((outcome: RealtimeOutcome) => void) | undefined;
  #ended: RealtimeOutcome | undefined;
  #onEnd: (() => void) | undefined;
  /** Resolves once the chain answered: admitted (undefined), or the refusal's error body and status. */
  readonly admission: Promise<{ status: number; error: Record<string, unknown> } | undefined>;
  #resolve!: (value: { status: number; error: Record<string, unknown> } | undefined) => void;

  constructor(
    readonly ask: Omit<RealtimeResponseAsk, 'price'>,
    readonly eventId: string | undefined,
  ) {
    this.admission = new Promise((resolve) => (this.#resolve = resolve));
  }

  /** The chain admitted the response: `finish` reports its outcome; resolves once it ended. */
  admit(finish: (outcome: RealtimeOutcome) => void): Promise<void> {
    this.#finish = finish;
    const ended = new Promise<void>((resolve) => (this.#onEnd = resolve));
    this.#resolve(undefined);
    if (this.#ended) this.end(this.#ended, true);
    return ended;
  }

  refuse(status: number, error: Record<string, unknown>): void {
    this.#resolve({ status, error });
  }

  /** The response ended (its `response.done`, or the session closed): its outcome goes to the meter once. */
  end(outcome: RealtimeOutcome, again = false): void {
    if (this.#ended && !again) return;
    this.#ended = outcome;
    if (!this.#finish) return;
    this.#finish(outcome);
    this.#finish = undefined;
    this.#onEnd?.();
  }

  get ended(): boolean {
    return this.#ended !== undefined;
  }
}
