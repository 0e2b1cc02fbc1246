// The rules the config's fields are built from (zod): objects with exactly their fields, names with hints, ranges.
import { z } from 'zod';
import { parseDuration } from '@tollgate/core';
import { didYouMean, MAX_USD_PER_MILLION_TOKENS } from '@tollgate/core/options';

// The rules fields are built from. A message is what follows the field's name in the error:
// `tiers.pro.requestsPerMinute` + ` must be a positive integer`.

export const OBJECT = 'must be an object';
const POSITIVE_INTEGER = 'must be a positive integer';
const NON_EMPTY = 'must be a non-empty string';
const DURATION = 'must be a positive number of ms or a string like "10s", "5m"';
const SHA256_HEX = 'must be a SHA-256 hex digest (64 lowercase hex characters)';

/**
 * An object with exactly these fields: another name is refused, with a hint when it looks like a typo.
 * Several unknown names make one issue of several lines, one per name (describeIssue lists each).
 */
export function fields<Shape extends z.ZodRawShape>(shape: Shape) {
  const known = Object.keys(shape).filter((name) => name !== '$schema');
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') return OBJECT;
      return issue.keys
        .map((name) => `has no field "${name}"${didYouMean(name, known)} (known: ${known.join(', ')})`)
        .join('\n');
    },
  });
}

/** One of `names`; a near miss gets a hint. */
export function choice<const Names extends readonly [string, ...string[]]>(names: Names, message: string) {
  return z.enum(names, {
    error: (issue) => `${message}${typeof issue.input === 'string' ? didYouMean(issue.input, names) : ''}`,
  });
}

export function nonEmptyString(message = NON_EMPTY) {
  // /\S/ fails exactly the strings that trim() empties.
  return z.string(message).regex(/\S/, message);
}

export function fraction(message: string) {
  return z.number(message).gt(0, message).max(1, message);
}

export const positiveInteger = z.int(POSITIVE_INTEGER).positive(POSITIVE_INTEGER);
const PRICE = `must be a number of USD per million tokens, from 0 to ${MAX_USD_PER_MILLION_TOKENS.toLocaleString('en-US')}`;
export const pricePerMTok = z.number(PRICE).min(0, PRICE).max(MAX_USD_PER_MILLION_TOKENS, PRICE);
export const stringList = z.array(nonEmptyString(), 'must be an array of strings');
export const trueOrFalse = z.boolean('must be true or false');
export const sha256Hex = z.string(SHA256_HEX).regex(/^[0-9a-f]{64}$/, SHA256_HEX);
export const environmentName = nonEmptyString().regex(
  /^[A-Za-z_][A-Za-z0-9_]*$/,
  'must be an environment variable name',
);

/** Whether the core's parseDuration reads `value` as a duration. */
export function isDuration(value: number | string): boolean {
  try {
    return parseDuration(value) > 0;
  } catch {
    return false;
  }
}

/** Ms, or a string the core's parseDuration reads ("30s", "5m", "1h", "1d"). */
export const duration = z
  .union([z.number(), z.string()], DURATION)
  .refine(isDuration, DURATION)
  .describe('Ms, or a string like "30s", "5m", "1h", "1d".');

const DURATION_OR_OFF = `${DURATION}, or 0 ("0s") for off`;

/** A duration, or 0 (`0`, `"0s"`): off. */
export function durationOrOffMs(value: number | string): number {
  const off = typeof value === 'number' ? value === 0 : /^0+(?:ms|s|m|h|d)?$/.test(value.trim());
  return off ? 0 : parseDuration(value);
}

/** What `duration` takes, or 0 (`"0s"`) to turn the thing off. */
export const durationOrOff = z
  .union([z.number(), z.string()], DURATION_OR_OFF)
  .refine((value) => {
    try {
      return durationOrOffMs(value) >= 0;
    } catch {
      return false;
    }
  }, DURATION_OR_OFF)
  .describe('Ms, or a string like "30s", "5m", "1h", "1d"; 0 or "0s": off.');

/** A URL with one of `protocols` (`"https:"`), kept as written. */
export function url(protocols: readonly string[]) {
  const names = protocols.join(' or ');
  const pattern = new RegExp(`^(?:${protocols.map((protocol) => protocol.replace(/:$/, '')).join('|')})$`);
  return z.url({
    protocol: pattern,
    error: (issue) => {
      const text = issue.input;
      if (typeof text !== 'string' || text.trim().length === 0) return NON_EMPTY;
      if (!URL.canParse(text)) return `must be a URL (${names}); got ${JSON.stringify(text)}`;
      return `must use ${names}; got ${JSON.stringify(new URL(text).protocol)}`;
    },
  });
}

/**
 * A JSON object of named entries, kept as a null-prototype record so names like "constructor" are
 * plain keys. "__proto__" cannot be kept as a name (the schema drops it), so it is refused aloud.
 */
export function recordOf<Entry extends z.ZodType>(entry: Entry) {
  return z
    .preprocess(
      (value, context) => {
        if (typeof value === 'object' && value !== null && Object.hasOwn(value, '__proto__')) {
          context.addIssue({ code: 'custom', message: 'has an entry named "__proto__": choose another name' });
        }
        return value;
      },
      z.record(z.string().min(1, 'has an empty name'), entry, OBJECT),
    )
    .transform((record): Record<string, z.output<Entry>> => Object.assign(Object.create(null) as object, record));
}
