// Incremental server-sent-events decoder over raw bytes: any chunk split, each event with its exact bytes.

/** One block of an event stream: the bytes up to and including its blank line. */
export interface SseBlock {
  /** The `event:` field, or '' (the default "message"). */
  event: string;
  /** The `data:` lines joined with '\n'; '' when the block carried none (comments, keep-alives). */
  data: string;
  hasData: boolean;
  /** The block's bytes exactly as received, so a forwarder can pass or drop it whole. */
  raw: Buffer;
}

const LF = 0x0a;
const CR = 0x0d;
/** An event still open after this many bytes is passed on unparsed (a stream that never breaks must not grow memory). */
const MAX_EVENT_BYTES = 8 * 1024 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Splits a byte stream into SSE blocks (WHATWG event-stream rules: LF, CRLF or CR line ends,
 * `field: value` with one optional space, `:` comments). Lines are cut on bytes, never inside a
 * UTF-8 character, since LF and CR never occur inside one; so chunks may split anywhere.
 */
export class SseDecoder {
  private buffer: Buffer = EMPTY;
  /** Start of the current (open) block in `buffer`. */
  private blockStart = 0;
  /** Start of the next line not yet parsed. */
  private lineStart = 0;
  private event = '';
  private data: string[] = [];
  private oversized = false;

  /** Feeds bytes; returns the blocks they completed. */
  push(chunk: Buffer): SseBlock[] {
    this.buffer = this.buffer.length === this.blockStart ? chunk : Buffer.concat([this.buffer.subarray(this.blockStart), chunk]);
    this.lineStart -= this.blockStart;
    this.blockStart = 0;
    const blocks: SseBlock[] = [];

    while (this.lineStart < this.buffer.length) {
      const end = this.lineEnd(this.lineStart);
      if (end === undefined) break;
      const [contentEnd, next] = end;
      if (contentEnd === this.lineStart) {
        blocks.push(this.closeBlock(next));
      } else if (!this.oversized) {
        this.parseLine(this.buffer.toString('utf8', this.lineStart, contentEnd));
      }
      this.lineStart = next;
    }

    if (this.buffer.length - this.blockStart > MAX_EVENT_BYTES) {
      // Pass the runaway block on as it is and stop parsing it until its blank line.
      blocks.push({ event: '', data: '', hasData: false, raw: this.buffer.subarray(this.blockStart) });
      this.blockStart = this.buffer.length;
      this.lineStart = Math.max(this.lineStart, this.blockStart);
      this.event = '';
      this.data = [];
      this.oversized = true;
    }
    return blocks;
  }

  /** The stream ended: the open block, if any bytes are left, as a last block. */
  end(): SseBlock | undefined {
    if (this.buffer.length === this.blockStart) return undefined;
    if (this.lineStart < this.buffer.length && !this.oversized) {
      let last = this.buffer.length;
      if (this.buffer[last - 1] === CR) last--;
      this.parseLine(this.buffer.toString('utf8', this.lineStart, last));
    }
    this.lineStart = this.buffer.length;
    return this.closeBlock(this.buffer.length);
  }

  /** [end of the line's content, start of the next line], or undefined when the line is not complete yet. */
  private lineEnd(from: number): [number, number] | undefined {
    const buffer = this.buffer;
    for (let i = from; i < buffer.length; i++) {
      const byte = buffer[i];
      if (byte === LF) return [i, i + 1];
      if (byte === CR) {
        // CR may be the first half of CRLF: decide only once the next byte is here.
        if (i + 1 >= buffer.length) return undefined;
        return buffer[i + 1] === LF ? [i, i + 2] : [i, i + 1];
      }
    }
    return undefined;
  }

  private parseLine(line: string): void {
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
  }

  private closeBlock(end: number): SseBlock {
    const block: SseBlock = {
      event: this.event,
      data: this.data.join('\n'),
      hasData: this.data.length > 0,
      raw: this.buffer.subarray(this.blockStart, end),
    };
    this.blockStart = end;
    this.event = '';
    this.data = [];
    this.oversized = false;
    return block;
  }
}
