// A JSON answer as the usage tap keeps it: the body kept to read usage from once whole (only its tail past a bound),
// the chunks held until it is whole so that its cost can be told, and how the whole body is read for usage.
import type { UsageReader } from '@tollgate/providers';
import { topLevelFields } from './answer-scan.js';

/** JSON bodies above this are not parsed whole: usage is looked for in their last bytes. */
const MAX_JSON_BYTES = 4 * 1024 * 1024;
const JSON_TAIL_BYTES = 64 * 1024;
/**
 * A JSON answer is held until it is whole, so that its headers can say what it cost, up to this size; a larger one
 * goes out as it comes, without them. (A gateway holds the answer's chunks anyway, to read it should its client leave.)
 */
const MAX_HELD_JSON_BYTES = 32 * 1024 * 1024;

const NOTHING_NOW = Buffer.alloc(0);

/** Finds the last `"usage": {...}` object in a JSON text (the tail of a body too big to parse whole). */
export function findUsageObject(text: string): unknown {
  const at = text.lastIndexOf('"usage"');
  if (at === -1) return undefined;
  const open = text.indexOf('{', at);
  if (open === -1) return undefined;
  let depth = 0;
  let inString = false;
  for (let i = open; i < text.length; i++) {
    const char = text[i];
    if (inString) {
      if (char === '\\') i++;
      else if (char === '"') inString = false;
    } else if (char === '"') inString = true;
    else if (char === '{') depth++;
    else if (char === '}' && --depth === 0) {
      try {
        return JSON.parse(text.slice(open, i + 1));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** A JSON body's bytes from its chunks (one written chunk as it is), decoded only where it must be read as text. */
function jsonBytes(parts: (string | Buffer)[]): Buffer {
  if (parts.length === 1) return typeof parts[0] === 'string' ? Buffer.from(parts[0]) : parts[0]!;
  return Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part) : part)));
}

/** A JSON body as kept to be read: its bytes, and whether only its tail is there. */
interface KeptJson {
  bytes: Buffer;
  truncated: boolean;
}

/** What the tap keeps and holds of one JSON answer. */
export class JsonBody {
  /** The answer's chunks, held until it is whole (undefined: passing through). */
  #held: Buffer[] | undefined;
  #heldBytes = 0;
  /** The body's chunks: text as it was written, bytes otherwise. */
  #kept: (string | Buffer)[] | undefined;
  #keptSize = 0;
  /** The body outgrew MAX_JSON_BYTES: only its tail is kept. */
  #truncated = false;

  /** `hold`: the answer is held until it is whole (its cost is to be told). */
  constructor(hold: boolean) {
    if (hold) this.#held = [];
  }

  get holding(): boolean {
    return this.#held !== undefined;
  }

  /** Holds a chunk until the answer is whole (nothing to send now), or past the bound sends what was held. */
  hold(bytes: Buffer): Buffer | undefined {
    const held = this.#held!;
    this.#heldBytes += bytes.length;
    if (this.#heldBytes > MAX_HELD_JSON_BYTES) return this.release(bytes);
    held.push(bytes);
    return NOTHING_NOW;
  }

  /** Stops holding: what was held, then `bytes`; undefined when nothing was held (`bytes` go as they are). */
  release(bytes: Buffer): Buffer | undefined {
    const held = this.#held;
    this.#held = undefined;
    if (held === undefined || held.length === 0) return undefined;
    held.push(bytes);
    return Buffer.concat(held);
  }

  /** The held chunks, no longer held; undefined when none are. */
  takeHeld(): Buffer[] | undefined {
    const held = this.#held;
    this.#held = undefined;
    return held;
  }

  /** Keeps a chunk as it was written (it is read once the body is whole), or only its tail past the bound. */
  keep(part: string | Buffer): void {
    let kept = part;
    // Past the bound only the tail is kept: usage sits at the end of OpenAI and Anthropic bodies.
    if (part.length > MAX_JSON_BYTES) {
      const tail = part.length - JSON_TAIL_BYTES;
      kept = typeof part === 'string' ? part.slice(tail) : Buffer.from(part.subarray(tail));
      this.#truncated = true;
    }
    const json = this.#kept;
    if (json === undefined) {
      // One chunk is the usual answer (res.json, res.send): an array of exactly one, not the room for 17 a first push makes.
      this.#kept = [kept];
      this.#keptSize = kept.length;
      return;
    }
    this.#keptSize += kept.length;
    json.push(kept);
    while (json.length > 1 && this.#keptSize > MAX_JSON_BYTES && this.#keptSize - json[0]!.length >= JSON_TAIL_BYTES) {
      this.#keptSize -= json.shift()!.length;
      this.#truncated = true;
    }
  }

  /** The kept body, once, to be read; undefined when nothing was kept (or it was taken). */
  takeKept(): KeptJson | undefined {
    const json = this.#kept;
    if (json === undefined) return undefined;
    this.#kept = undefined;
    return { bytes: jsonBytes(json), truncated: this.#truncated };
  }
}

/** How readJsonAnswer reads a whole body: the adapter's usage fields, and what a scan of them alone must yield. */
interface JsonReading {
  /** The top-level fields that carry usage and model (the adapter's `answerUsageFields`). */
  fields: readonly string[] | undefined;
  /** Whether what `reader` read of those fields is the answer's complete usage. */
  complete(reader: UsageReader): boolean;
  /** A reader that has read nothing, for the body read whole. */
  fresh(): UsageReader;
}

/** `reader` (or a fresh one) after reading a whole JSON body: its tail's usage object when only the tail was kept. */
export function readJsonAnswer({ bytes, truncated }: KeptJson, reader: UsageReader, how: JsonReading): UsageReader {
  if (truncated) {
    const text = bytes.toString('utf8');
    const usage = findUsageObject(text);
    if (usage !== undefined) reader.onJson({ usage });
    else reader.onUnparsed(text);
    return reader;
  }
  // The fields that carry usage and model, found by a scan and parsed alone, stand for the answer when its usage is
  // complete; otherwise (no usage, partial usage, no output reported) the answer is read whole by a fresh reader.
  if (how.fields !== undefined) {
    const found = topLevelFields(bytes, how.fields);
    if (found !== undefined) {
      reader.onJson(found);
      if (how.complete(reader)) return reader;
      reader = how.fresh();
    }
  }
  const text = bytes.toString('utf8');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    reader.onUnparsed(text);
    return reader;
  }
  reader.onJson(body);
  return reader;
}
