// Reading an upstream event stream split anywhere, and writing events in the client's framing.
import { SseDecoder } from '@tollgate/providers/sse';
import type { SseBlock } from '@tollgate/providers/sse';

/** One SSE event as text: an `event:` line when named, the JSON data, the blank line. */
export function sseEvent(data: unknown, event?: string): string {
  return `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

const isHighSurrogate = (code: number): boolean => code >= 0xd800 && code <= 0xdbff;

/**
 * Complete SSE blocks from chunks of text or bytes. The decoder buffers partial lines and events;
 * text is held back by one character when a chunk ends inside a surrogate pair, which would
 * otherwise encode as a replacement character.
 */
export class SseInput {
  private readonly decoder = new SseDecoder();
  private pending = '';

  push(chunk: string | Uint8Array): SseBlock[] {
    if (typeof chunk !== 'string') return this.decoder.push(Buffer.from(chunk));
    let text = this.pending + chunk;
    this.pending = '';
    if (text.length > 0 && isHighSurrogate(text.charCodeAt(text.length - 1))) {
      this.pending = text.slice(-1);
      text = text.slice(0, -1);
    }
    return text === '' ? [] : this.decoder.push(Buffer.from(text, 'utf8'));
  }

  end(): SseBlock[] {
    const blocks = this.pending === '' ? [] : this.decoder.push(Buffer.from(this.pending, 'utf8'));
    this.pending = '';
    const last = this.decoder.end();
    if (last) blocks.push(last);
    return blocks;
  }
}
