// Reading a stream's chunks that differ only in a few string values without parsing each one whole.
import { randomUUID } from 'node:crypto';

/** A probe string's stem: this process's own, so no upstream can send it to mislead the check below. */
const PROBE = `\u2063${randomUUID()}-`;

/** Where the JSON string token opening at `open` (a quote) closes, or -1 when it does not close in `data`. */
function tokenEnd(data: string, open: number): number {
  for (let at = data.indexOf('"', open + 1); at !== -1; at = data.indexOf('"', at + 1)) {
    // Escaped when an odd run of backslashes comes before it (\" is a quote in the text; \\" ends it).
    let slashes = 0;
    while (data.charCodeAt(at - 1 - slashes) === 0x5c) slashes++;
    if (slashes % 2 === 0) return at;
  }
  return -1;
}

/**
 * The value of the JSON string token `data[open..close]` (both quotes), as JSON.parse reads it, or undefined when
 * it is no valid token (a raw control character, a bad escape).
 */
function tokenValue(data: string, open: number, close: number): string | undefined {
  let plain = true;
  for (let at = open + 1; at < close; at++) {
    const code = data.charCodeAt(at);
    if (code < 0x20) return undefined;
    if (code === 0x5c) plain = false;
  }
  if (plain) return data.slice(open + 1, close);
  try {
    return JSON.parse(data.slice(open, close + 1)) as string;
  } catch {
    return undefined;
  }
}

/**
 * A chunk's text with the tokens of some of its string values left open: the fixed text between them is the same in
 * every chunk of the shape, so such a chunk parses as the chunk the shape was taken from with those strings replaced.
 * A stream's content chunks are alike but for their text (and OpenAI's `obfuscation` padding): one parse of the first,
 * then each next one is read by comparing its fixed text and decoding its open strings.
 */
class ChunkShape<C> {
  private constructor(
    /** The parsed chunk the shape was taken from. */
    readonly chunk: C,
    /** The fixed text before each open token, and after the last one. */
    private readonly fixed: readonly string[],
    /** Which open value (its index where the shape was made) each token is, in the text's order. */
    private readonly order: readonly number[],
  ) {}

  /**
   * The shape of `data` (which parses to `chunk`) with `open` left open: each a string value of the chunk and where
   * it lies in the parsed chunk (`at`, to check that a probe put in its place is read there: a key named twice, an
   * escaped key, a value written other than as JSON.stringify writes it leave no shape). Undefined when a value's
   * token is not in the text exactly once, or a probe is read elsewhere.
   */
  static of<C>(data: string, chunk: C, open: readonly OpenValue[]): ChunkShape<C> | undefined {
    // Each open value's token where it is written (once, exactly as JSON.stringify writes it), in the text's order.
    const tokens: { start: number; end: number; index: number }[] = [];
    for (let index = 0; index < open.length; index++) {
      const token = JSON.stringify(open[index]!.value);
      const start = data.indexOf(token);
      if (start === -1 || data.indexOf(token, start + 1) !== -1) return undefined;
      tokens.push({ start, end: start + token.length, index });
    }
    tokens.sort((a, b) => a.start - b.start);
    const fixed: string[] = [];
    let from = 0;
    for (const { start, end } of tokens) {
      if (start < from) return undefined;
      fixed.push(data.slice(from, start));
      from = end;
    }
    fixed.push(data.slice(from));
    let probe = fixed[0]!;
    for (let i = 0; i < tokens.length; i++) probe += `"${PROBE}${tokens[i]!.index}"${fixed[i + 1]!}`;
    let parsed: unknown;
    try {
      parsed = JSON.parse(probe);
    } catch {
      return undefined;
    }
    for (let index = 0; index < open.length; index++)
      if (open[index]!.at(parsed) !== `${PROBE}${index}`) return undefined;
    return new ChunkShape(
      chunk,
      fixed,
      tokens.map((token) => token.index),
    );
  }

  /**
   * The open strings of `data` when it is a chunk of this shape (as JSON.parse would read them), in the order `of`
   * named them; undefined when it is not, or an open token is no valid JSON string.
   */
  read(data: string): string[] | undefined {
    const { fixed } = this;
    const last = fixed.length - 1;
    let at = 0;
    const values = new Array<string>(last);
    for (let i = 0; ; i++) {
      // Compared as a slice: String.prototype.startsWith walks the text a character at a time, several times slower.
      const part = fixed[i]!;
      if (data.slice(at, at + part.length) !== part) return undefined;
      at += part.length;
      if (i === last) return at === data.length ? values : undefined;
      if (data.charCodeAt(at) !== 0x22) return undefined;
      const close = tokenEnd(data, at);
      if (close === -1) return undefined;
      const value = tokenValue(data, at, close);
      if (value === undefined) return undefined;
      values[this.order[i]!] = value;
      at = close + 1;
    }
  }
}

/** Shapes a stream may take that serve no chunk (none could be taken, or none read the chunk after it) before it stops. */
const MAX_SHAPE_MISSES = 4;

/** A value a chunk leaves open in its shape, and where a parse of the chunk reads it (see ChunkShape.of). */
export interface OpenValue {
  value: string;
  at: (parsed: unknown) => unknown;
}

/**
 * The shape of a stream's alike chunks, the one rule every reader keeps: the last shape taken reads each chunk it can;
 * after a chunk it cannot read and that was parsed whole, a new shape is taken from it (when the reader names its open
 * values). A stream stops taking shapes after MAX_SHAPE_MISSES that serve nothing: one that could not be taken (an
 * upstream that writes JSON its own way), or one replaced before it read a chunk (choices streamed in turn, `n` > 1,
 * would take a shape for every chunk); shapes that read chunks (one per content block in turn) never count.
 */
export class StreamShapes<C> {
  #shape: ChunkShape<C> | undefined = undefined;
  /** The current shape read a chunk. */
  #used = false;
  #misses = 0;

  /** The parsed chunk of the shape `read` last answered for. */
  get chunk(): C {
    return this.#shape!.chunk;
  }

  /** The open strings of `data` when the current shape reads it (the chunk it was taken from: `chunk`). */
  read(data: string): string[] | undefined {
    const open = this.#shape?.read(data);
    if (open !== undefined) this.#used = true;
    return open;
  }

  /** After `data` was parsed to `chunk`: its shape with `open` left open, for the chunks after it. */
  take(data: string, chunk: C, open: readonly OpenValue[]): void {
    if (this.#misses >= MAX_SHAPE_MISSES) return;
    const shape = ChunkShape.of(data, chunk, open);
    if (shape === undefined || (this.#shape !== undefined && !this.#used)) this.#misses++;
    if (shape === undefined) return;
    this.#shape = shape;
    this.#used = false;
  }
}
