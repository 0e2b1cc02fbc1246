// Finds a JSON answer's top-level fields by scanning its bytes, so that only those fields are decoded and parsed.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

const isSpace = (code: number | undefined): boolean => code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;

/** Where the string opening at `open` closes (its closing quote), or -1 when it never does. */
function stringEnd(bytes: Buffer, open: number): number {
  let at = bytes.indexOf(QUOTE, open + 1);
  while (at !== -1) {
    let slashes = 0;
    for (let i = at - 1; bytes[i] === BACKSLASH; i--) slashes++;
    if (slashes % 2 === 0) return at;
    at = bytes.indexOf(QUOTE, at + 1);
  }
  return -1;
}

/** True when the bytes from `start` spell `name` (an ASCII member name) and end at `end`. */
function spells(bytes: Buffer, start: number, end: number, name: string): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (bytes[start + i] !== name.charCodeAt(i)) return false;
  return true;
}

/**
 * A value that is a string with nothing to unescape (a model name), as JSON.parse reads it; undefined
 * for any other value, or a string with an escape or a control character (left to JSON.parse).
 */
function plainString(bytes: Buffer, start: number, end: number): string | undefined {
  while (start < end && isSpace(bytes[start])) start++;
  while (end > start && isSpace(bytes[end - 1])) end--;
  if (end - start < 2 || bytes[start] !== QUOTE || bytes[end - 1] !== QUOTE) return undefined;
  for (let i = start + 1; i < end - 1; i++) {
    const code = bytes[i]!;
    if (code === BACKSLASH || code === QUOTE || code < 0x20) return undefined;
  }
  return bytes.toString('utf8', start + 1, end - 1);
}

/** Parses a wanted member's value into `found`; false when it does not parse (or has no value). */
function takeMember(bytes: Buffer, found: Record<string, unknown>, name: string, start: number, end: number): boolean {
  if (start === -1) return false;
  const plain = plainString(bytes, start, end);
  if (plain !== undefined) {
    found[name] = plain;
    return true;
  }
  try {
    found[name] = JSON.parse(bytes.toString('utf8', start, end)) as unknown;
    return true;
  } catch {
    return false;
  }
}

/** Where a wanted top-level member's value lies: `names[index]`, from `start` up to (not including) `end`. */
interface MemberValue {
  index: number;
  start: number;
  end: number;
}

/**
 * The value of each top-level member of a JSON object named in `names` (ASCII), in the order they come; the rest
 * is only scanned (strings skipped whole, brackets counted), never decoded. UTF-8 bytes of other characters are
 * never structural bytes, so the scan is the same on bytes as on text. Undefined when the scan cannot vouch for
 * the answer: not one object, cut short or unbalanced. A value's range may hold space around it.
 */
function topLevelMembers(bytes: Buffer, names: readonly string[]): MemberValue[] | undefined {
  let i = 0;
  while (isSpace(bytes[i])) i++;
  if (bytes[i] !== OPEN_BRACE) return undefined;
  const members: MemberValue[] = [];
  let depth = 0;
  let expectKey = false;
  /** The wanted member whose value is being scanned (its index in `names`), and where that value starts. */
  let wanted = -1;
  let valueStart = -1;
  for (; i < bytes.length; i++) {
    const code = bytes[i]!;
    if (code === QUOTE) {
      const close = stringEnd(bytes, i);
      if (close === -1) return undefined;
      if (depth === 1 && expectKey) {
        expectKey = false;
        for (let n = 0; n < names.length; n++) if (spells(bytes, i + 1, close, names[n]!)) wanted = n;
      }
      i = close;
    } else if (code === OPEN_BRACE || code === OPEN_BRACKET) {
      if (++depth === 1) expectKey = true;
    } else if (code === CLOSE_BRACE || code === CLOSE_BRACKET) {
      if (--depth > 0) continue;
      // The top-level object closes: its last member ends here, and nothing but space may follow.
      if (code !== CLOSE_BRACE) return undefined;
      if (wanted !== -1) members.push({ index: wanted, start: valueStart, end: i });
      for (let rest = i + 1; rest < bytes.length; rest++) if (!isSpace(bytes[rest])) return undefined;
      return members;
    } else if (depth === 1) {
      if (code === COMMA) {
        if (wanted !== -1) members.push({ index: wanted, start: valueStart, end: i });
        wanted = -1;
        valueStart = -1;
        expectKey = true;
      } else if (code === COLON && wanted !== -1) {
        valueStart = i + 1;
      }
    }
  }
  return undefined;
}

/**
 * The values of the top-level members `names` (ASCII) of a JSON object, each decoded and parsed alone (see
 * `topLevelMembers`). Undefined when the scan cannot vouch for the answer, or a wanted value does not parse. A
 * member absent from the answer is absent from the result; a repeated one keeps its last value, as JSON.parse does.
 */
export function topLevelFields(answer: Buffer | string, names: readonly string[]): Record<string, unknown> | undefined {
  const bytes = typeof answer === 'string' ? Buffer.from(answer) : answer;
  const members = topLevelMembers(bytes, names);
  if (members === undefined) return undefined;
  const found: Record<string, unknown> = {};
  for (const { index, start, end } of members)
    if (!takeMember(bytes, found, names[index]!, start, end)) return undefined;
  return found;
}

/**
 * Where the object that is the value of the top-level member `name` opens and closes (the offsets of its braces),
 * the last such member as JSON.parse reads it; undefined when the answer has none, or that value is no object.
 */
export function memberValueRange(bytes: Buffer, name: string): [open: number, close: number] | undefined {
  const members = topLevelMembers(bytes, [name]);
  const last = members?.at(-1);
  if (last === undefined || last.start === -1) return undefined;
  let open = last.start;
  let close = last.end - 1;
  while (open < close && isSpace(bytes[open])) open++;
  while (close > open && isSpace(bytes[close])) close--;
  return bytes[open] === OPEN_BRACE && bytes[close] === CLOSE_BRACE ? [open, close] : undefined;
}
