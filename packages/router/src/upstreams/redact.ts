// Finds the gateway's own upstream credentials in text an upstream wrote, in every form an encoder may give them.

/** What stands where a secret was. */
const REDACTED = '[redacted]';

/** The longest form of one character: `\\u002F`, a JSON escape escaped again (JSON in a JSON string). */
const LONGEST_FORM = 7;

export interface SecretRedactor {
  /** `text` with every secret in it, in any of its forms, replaced by {@link REDACTED}. */
  redact(text: string): string;
  /** How many characters at the end of a text cut short may hold the start of a secret. */
  readonly reach: number;
}

/** `[fF]` for `f`: JSON and URL escapes may write their hex digits in either case. */
function eitherCaseHex(digits: string): string {
  return digits.replace(/[a-f]/g, (digit) => `[${digit}${digit.toUpperCase()}]`);
}

/**
 * A pattern for one UTF-16 unit as an upstream may write it: itself, JSON's `\u002F` (escaped once or more),
 * and, for a sign, JSON's `\/` and a URL's `%2F`. `\uXXXX` in a pattern matches the unit itself, so no
 * character of a secret needs escaping for the RegExp.
 */
function unitPattern(unit: number): string {
  const hex = unit.toString(16).padStart(4, '0');
  const jsonEscaped = `\\\\+u${eitherCaseHex(hex)}`;
  if (/[\dA-Za-z]/.test(String.fromCharCode(unit))) return `(?:\\u${hex}|${jsonEscaped})`;
  const percentEncoded = unit < 0x80 ? `|%${eitherCaseHex(hex.slice(2))}` : '';
  return `(?:\\\\*\\u${hex}|${jsonEscaped}${percentEncoded})`;
}

function secretPattern(secret: string): string {
  let pattern = '';
  for (let i = 0; i < secret.length; i++) pattern += unitPattern(secret.charCodeAt(i));
  return pattern;
}

/** Built once per upstream: a request pays nothing for it until an answer must be cleaned. Undefined: no secret. */
export function secretRedactor(secrets: readonly (string | undefined)[]): SecretRedactor | undefined {
  const known = [...new Set(secrets.filter((secret): secret is string => !!secret))];
  // Longest first: a key that starts another must not leave the other's tail behind.
  known.sort((a, b) => b.length - a.length);
  if (known.length === 0) return undefined;
  const pattern = new RegExp(known.map(secretPattern).join('|'), 'g');
  return {
    redact: (text) => text.replace(pattern, REDACTED),
    reach: known[0]!.length * LONGEST_FORM,
  };
}
