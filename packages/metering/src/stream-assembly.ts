// A JSON call answered from its upstream's stream: what the stream lets out is kept, then assembled into the JSON answer.
import { ApiError } from '@tollgate/core';
import { assembleStream } from '@tollgate/providers/answers';
import type { ProviderAdapter } from '@tollgate/providers';

type Chunk = string | Buffer | Uint8Array;

/**
 * The bytes a held stream lets out (its events up to its end, or up to a cut and the API's own ending), kept instead of
 * sent: the client asked for JSON and gets them assembled by the family's answer forms (`assembleStream`).
 */
export class StreamAssembly {
  private readonly parts: Buffer[] = [];

  constructor(private readonly adapter: ProviderAdapter) {}

  keep(chunk: unknown, encoding: unknown): void {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
    const data = chunk as Chunk;
    if (typeof data === 'string')
      this.parts.push(Buffer.from(data, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8'));
    else this.parts.push(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }

  /** The JSON answer of what went out, or undefined when it does not assemble (the stream failed or broke off). */
  answer(): Buffer | undefined {
    const json = assembleStream(this.adapter.family, Buffer.concat(this.parts));
    return json === undefined ? undefined : Buffer.from(JSON.stringify(json));
  }

  /** The error answer of a stream that does not assemble: the upstream's answer could not be read. */
  static failure(upstream: string): Buffer {
    const error = new ApiError('upstream_error', `The ${upstream} upstream's answer could not be read.`);
    return Buffer.from(JSON.stringify(error.toJSON()));
  }
}
