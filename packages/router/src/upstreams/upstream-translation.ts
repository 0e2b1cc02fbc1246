// A routed try's answer in another API than its client's: rewritten on its way, the target's own usage on the record.
import type { Response } from 'express';
import { ApiError } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import { createStreamTranslator, translateError, translateResponse } from '../index.js';
import type { StreamTranslator } from '../index.js';

/** The client's API, the target's, and the model the client asked for (what its answer names). */
export interface Translation {
  clientApi: ProviderApi;
  targetApi: ProviderApi;
  clientModel: string;
}

type RecordedUsage = Parameters<NonNullable<Response['req']['tollgate']>['recordUsage']>[0];

/** One answer's translation: a stream rewritten as it passes, a JSON answer or an error rewritten whole. */
export class AnswerTranslation {
  /** Rewrites a translated stream as it passes. */
  private streamTranslator: StreamTranslator | undefined;
  /** The translated stream's ending went out with the target's usage on the record. */
  private targetUsageRecorded = false;

  constructor(
    private readonly translation: Translation,
    private readonly upstreamName: string,
    private readonly res: Response,
  ) {}

  /** A 2xx stream starts: its events are rewritten from here on. */
  startStream(): void {
    const { targetApi, clientApi, clientModel } = this.translation;
    this.streamTranslator = createStreamTranslator(targetApi, clientApi, clientModel);
  }

  /** The client's events for `chunk` of the target's stream (empty until an event is complete). */
  streamChunk(chunk: Buffer): Buffer {
    const translator = this.streamTranslator!;
    const out = Buffer.from(translator.push(chunk));
    // The client's ending (with its usage event) is in `out`: the target's usage goes on the record first, so
    // that the cost written into that event is the one the record bills.
    if (out.length > 0 && translator.finished && !this.targetUsageRecorded) {
      this.targetUsageRecorded = true;
      this.recordTargetUsage(translator.usage());
    }
    return out;
  }

  /** The target's stream ended: `res` ends with what its last events complete, the target's usage recorded first. */
  endStream(): void {
    const translator = this.streamTranslator!;
    const rest = translator.end();
    this.recordTargetUsage(translator.usage());
    if (rest.length > 0) this.res.end(rest);
    else this.res.end();
  }

  /** The target's whole JSON answer in the client's API (its usage on the record), or undefined when it is not JSON. */
  json(chunks: readonly Buffer[]): Buffer | undefined {
    const { targetApi, clientApi, clientModel } = this.translation;
    try {
      const json: unknown = JSON.parse((chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8'));
      this.recordTargetUsage(adapterFor(targetApi).readUsage(json));
      return Buffer.from(JSON.stringify(translateResponse(json, targetApi, clientApi, clientModel)));
    } catch {
      return undefined;
    }
  }

  /**
   * Ends `res` with the target's whole JSON answer in the client's API; an answer that is not JSON is a failure:
   * `fail`ed before anything was sent, else the response is cut.
   */
  endJson(chunks: readonly Buffer[], fail: (error: ApiError) => void): void {
    const body = this.json(chunks);
    const { res } = this;
    if (body) {
      res.setHeader('content-length', body.length);
      res.end(body);
    } else if (!res.headersSent) {
      fail(
        new ApiError('upstream_error', `The ${this.upstreamName} upstream answered with JSON that could not be read.`),
      );
    } else {
      res.destroy();
    }
  }

  /** A 4xx of the target in the client's own API's error shape. */
  error(status: number, body: Buffer): { status: number; body: Buffer } {
    const { targetApi, clientApi } = this.translation;
    const translated = translateError(status, body.toString('utf8'), targetApi, clientApi);
    return { status: translated.status, body: Buffer.from(JSON.stringify(translated.body)) };
  }

  /** The target's own usage of a translated answer: exact (cache writes included), whatever the client's shape can carry. */
  private recordTargetUsage(usage: RecordedUsage | undefined): void {
    const ctx = this.res.req.tollgate;
    if (!usage || !ctx) return;
    try {
      ctx.recordUsage(usage);
    } catch {
      // Usage the meter cannot price: it counts from what passed instead.
    }
  }
}
