// Finds a JSON answer's top-level fields by scanning its text, so that only those fields are parsed.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

const isSpace = (code: number): boolean => code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;

/** Where the string opening at `open` closes (its closing quote), or -1 when it never does. */
function stringEnd(text: string, open: number): number {
  let at = text.indexOf('"', open + 1);
  while (at !== -1) {
    let slashes = 0;
    for (let i = at - 1; text.charCodeAt(i) === BACKSLASH; i--) slashes++;
    if (slashes % 2 === 0) return at;
    at = text.indexOf('"', at + 1);
  }
  return -1;
}

/** Parses a wanted member's value into `found`; false when it does not parse (or has no value). */
function takeMember(text: string, found: Record<string, unknown>, name: string, start: number, end: number): boolean {
  if (start === -1) return false;
  try {
    found[name] = JSON.parse(text.slice(start, end)) as unknown;
    return true;
  } catch {
    return false;
  }
}

/**
 * The values of the top-level members `names` of a JSON object text, each parsed alone; the rest of
 * the text is only scanned (strings skipped whole, brackets counted), never parsed. Undefined when
 * the scan cannot vouch for the text: not one object, cut short, unbalanced, or a wanted value that
 * does not parse. A member absent from the text is absent from the result; a repeated one keeps its
 * last value, as JSON.parse does.
 */
export function topLevelFields(text: string, names: readonly string[]): Record<string, unknown> | undefined {
  let i = 0;
  while (isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== OPEN_BRACE) return undefined;
  const found: Record<string, unknown> = {};
  let depth = 0;
  let expectKey = false;
  /** The wanted member whose value is being scanned (its index in `names`), and where that value starts. */
  let wanted = -1;
  let valueStart = -1;
  for (; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === QUOTE) {
      const close = stringEnd(text, i);
      if (close === -1) return undefined;
      if (depth === 1 && expectKey) {
        expectKey = false;
        for (let n = 0; n < names.length; n++) {
          const name = names[n]!;
          if (close - i - 1 === name.length && text.startsWith(name, i + 1)) wanted = n;
        }
      }
      i = close;
    } else if (code === OPEN_BRACE || code === OPEN_BRACKET) {
      if (++depth === 1) expectKey = true;
    } else if (code === CLOSE_BRACE || code === CLOSE_BRACKET) {
      if (--depth > 0) continue;
      // The top-level object closes: its last member ends here, and nothing but space may follow.
      if (code !== CLOSE_BRACE) return undefined;
      if (wanted !== -1 && !takeMember(text, found, names[wanted]!, valueStart, i)) return undefined;
      for (let rest = i + 1; rest < text.length; rest++) if (!isSpace(text.charCodeAt(rest))) return undefined;
      return found;
    } else if (depth === 1) {
      if (code === COMMA) {
        if (wanted !== -1 && !takeMember(text, found, names[wanted]!, valueStart, i)) return undefined;
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
