// A provider's failed answers: a 4xx passed on as the provider wrote it (capped, its retry hints kept, the gateway's
// keys taken out), and the errors a client gets for a call that brought no answer it may see.
import type { IncomingHttpHeaders } from 'node:http';
import type { Response } from 'express';
import { ApiError } from '@tollgate/core';
import type { SecretRedactor } from './redact.js';
import type { AnswerTranslation } from './upstream-translation.js';

/** Upstream error bodies passed to the client are capped: they are small JSON documents. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const PASSED_THROUGH_HEADERS = ['retry-after', 'retry-after-ms', 'x-should-retry'] as const;

export function isTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
}

/** The error of a call that got no answer at all. */
export function noAnswerError(upstream: string, error: Error): ApiError {
  return isTimeout(error)
    ? new ApiError('upstream_timeout', `The ${upstream} upstream did not answer in time.`, { cause: error })
    : new ApiError('upstream_error', `The ${upstream} upstream could not be reached.`, { cause: error });
}

/** The error of a call whose answer stopped before its end. */
export function cutAnswerError(upstream: string, error: Error): ApiError {
  return isTimeout(error)
    ? new ApiError('upstream_timeout', `The ${upstream} upstream stopped answering.`, { cause: error })
    : new ApiError('upstream_error', `The ${upstream} upstream failed mid-answer.`, { cause: error });
}

/** The error of an answer whose status is not passed on (5xx, and 3xx: a provider API never redirects). */
export function failedStatusError(upstream: string, status: number): ApiError {
  return new ApiError('upstream_error', `The ${upstream} upstream failed (HTTP ${status}).`);
}

/**
 * The error of an upstream that refused the gateway's own credentials: not the client's fault, and its body may name
 * the gateway's key (OpenAI shows it masked but for its ends), so none of it is passed on.
 */
export function refusedKeyError(upstream: string, status: number): ApiError {
  return new ApiError('upstream_error', `The ${upstream} upstream refused the gateway's credentials (HTTP ${status}).`);
}

/** A failed answer (4xx, or a routed try's failure worth a retry), its body collected up to a cap. */
export class CollectedAnswer {
  private readonly chunks: Buffer[] = [];
  private bytes = 0;

  constructor(
    readonly status: number,
    readonly headers: IncomingHttpHeaders,
  ) {}

  /** Keeps `chunk`; false when it takes the body over the cap (it is not kept: the body is cut there). */
  add(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    if (this.bytes > MAX_ERROR_BODY_BYTES) return false;
    this.chunks.push(chunk);
    return true;
  }

  /**
   * The answer, with its retry hints, as the provider wrote it but for the gateway's keys; in the client's own API's
   * error shape when the try was translated. `cut`: the body stopped at the cap.
   */
  writeTo(
    res: Response,
    secrets: SecretRedactor | undefined,
    translation: AnswerTranslation | undefined,
    cut: boolean,
  ) {
    const { headers } = this;
    const redact = (text: string) => (secrets ? secrets.redact(text) : text);
    for (const header of PASSED_THROUGH_HEADERS) {
      const value = headers[header];
      if (typeof value === 'string') res.setHeader(header, redact(value));
    }
    let body = this.body(secrets, cut);
    if (translation) {
      // In the client's own API's error shape, whatever the target speaks.
      const translated = translation.error(this.status, body);
      res.statusCode = translated.status;
      res.setHeader('content-type', 'application/json');
      body = translated.body;
    } else {
      const contentType = headers['content-type'];
      res.statusCode = this.status;
      res.setHeader('content-type', typeof contentType === 'string' ? redact(contentType) : 'application/json');
    }
    res.setHeader('content-length', body.length);
    res.end(body);
  }

  /** The collected body without the gateway's keys: upstreams may echo the credentials they were sent. */
  private body(secrets: SecretRedactor | undefined, cut: boolean): Buffer {
    const collected = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    if (!secrets) return collected;
    const text = collected.toString();
    // A body cut at the cap may end in the first part of a key, which no whole-key match finds: that end goes too.
    const kept = cut ? text.slice(0, Math.max(0, text.length - secrets.reach)) : text;
    const clean = secrets.redact(kept);
    return clean === text ? collected : Buffer.from(clean);
  }
}
