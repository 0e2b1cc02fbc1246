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
const COLON = 0x3a;
const SPACE = 0x20;
/** An event still open after this many bytes is passed on unparsed (a stream that never breaks must not grow memory). */
const MAX_EVENT_BYTES = 8 * 1024 * 1024;
const EMPTY = Buffer.alloc(0);
const DATA = Buffer.from('data');
const EVENT = Buffer.from('event');

/**
 * Splits a byte stream into SSE blocks (WHATWG event-stream rules: LF, CRLF or CR line ends,
 * `field: value` with one optional space, `:` comments). Lines are cut on bytes, never inside a
 * UTF-8 character, since LF, CR and `:` never occur inside one; so chunks may split anywhere, and
 * only a field's value is decoded.
 */
export class SseDecoder {
  private buffer: Buffer = EMPTY;
  /** Start of the current (open) block in `buffer`. */
  private blockStart = 0;
  /** Start of the next line not yet parsed. */
  private lineStart = 0;
  /** Where the line `lineEnd` found continues (after its LF, CR or CRLF). */
  private nextLine = 0;
  /** The first CR at or after `crFrom` in `buffer` (-1: none): a chunk without CRs is searched for one once. */
  private crAt = -1;
  /** Where `crAt` was searched from; infinite: not searched in this buffer yet. */
  private crFrom = Number.POSITIVE_INFINITY;
  private event = '';
  private data: string[] = [];
  private oversized = false;

  /** Feeds bytes; returns the blocks they completed. */
  push(chunk: Buffer): SseBlock[] {
    this.buffer =
      this.buffer.length === this.blockStart ? chunk : Buffer.concat([this.buffer.subarray(this.blockStart), chunk]);
    this.lineStart -= this.blockStart;
    this.blockStart = 0;
    this.crFrom = Number.POSITIVE_INFINITY;
    const blocks: SseBlock[] = [];

    while (this.lineStart < this.buffer.length) {
      const contentEnd = this.lineEnd(this.lineStart);
      if (contentEnd === -1) break;
      if (contentEnd === this.lineStart) {
        blocks.push(this.closeBlock(this.nextLine));
      } else if (!this.oversized) {
        this.parseLine(this.lineStart, contentEnd);
      }
      this.lineStart = this.nextLine;
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
      if (last > this.lineStart) this.parseLine(this.lineStart, last);
    }
    this.lineStart = this.buffer.length;
    return this.closeBlock(this.buffer.length);
  }

  /**
   * The end of the line's content (its next line starts at `nextLine`), or -1 when the line is not
   * complete yet. LF is searched for natively; CR (rare: old-style or CRLF line ends) through `crAt`.
   */
  private lineEnd(from: number): number {
    const buffer = this.buffer;
    if (from < this.crFrom || (this.crAt !== -1 && this.crAt < from)) {
      this.crAt = buffer.indexOf(CR, from);
      this.crFrom = from;
    }
    const lf = buffer.indexOf(LF, from);
    const cr = this.crAt;
    if (cr !== -1 && (lf === -1 || cr < lf)) {
      // CR may be the first half of CRLF: decide only once the next byte is here.
      if (cr + 1 >= buffer.length) return -1;
      this.nextLine = buffer[cr + 1] === LF ? cr + 2 : cr + 1;
      return cr;
    }
    if (lf === -1) return -1;
    this.nextLine = lf + 1;
    return lf;
  }

  /** True when the line in `buffer[start, end)` is of the field `name`: the name, then a colon or the line's end. */
  private isField(start: number, end: number, name: Buffer): boolean {
    const buffer = this.buffer;
    const after = start + name.length;
    if (after > end || (after < end && buffer[after] !== COLON)) return false;
    for (let i = 0; i < name.length; i++) if (buffer[start + i] !== name[i]) return false;
    return true;
  }

  /** Parses the line in `buffer[start, end)`: only `data` and `event` lines matter (a comment starts with a colon). */
  private parseLine(start: number, end: number): void {
    const isData = this.isField(start, end, DATA);
    if (!isData && !this.isField(start, end, EVENT)) return;
    const buffer = this.buffer;
    // Past the name and its colon, and the one space that may follow it.
    let valueStart = Math.min(end, start + (isData ? DATA.length : EVENT.length) + 1);
    if (valueStart < end && buffer[valueStart] === SPACE) valueStart++;
    const value = valueStart < end ? buffer.toString('utf8', valueStart, end) : '';
    if (isData) this.data.push(value);
    else this.event = value;
  }

  private closeBlock(end: number): SseBlock {
    const data = this.data;
    const block: SseBlock = {
      event: this.event,
      data: data.length === 1 ? data[0]! : data.join('\n'),
      hasData: data.length > 0,
      raw: this.buffer.subarray(this.blockStart, end),
    };
    this.blockStart = end;
    this.event = '';
    if (data.length > 0) this.data = [];
    this.oversized = false;
    return block;
  }
}
