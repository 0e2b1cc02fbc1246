// API key material: generating `tgk_` keys, hashing them for storage, comparing hashes in constant time.
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** The prefix every generated key carries, so leaked keys are easy to spot by secret scanners. */
const API_KEY_PREFIX = 'tgk_';

/** What a tollgate API key looks like: `tgk_` and at least 32 base62 characters. */
export const API_KEY_PATTERN = /^tgk_[0-9A-Za-z]{32,}$/;

/** Random characters in a generated key: 43 base62 characters carry a little over 256 bits. */
const GENERATED_LENGTH = 43;

/** A new random API key (`tgk_` + 43 base62 characters). Show it once; store only `hashApiKey(key)`. */
export function generateApiKey(): string {
  let out = API_KEY_PREFIX;
  while (out.length < API_KEY_PREFIX.length + GENERATED_LENGTH) {
    for (const byte of randomBytes(64)) {
      // 248 = 4 * 62: rejecting the top bytes keeps every character equally likely.
      if (byte >= 248) continue;
      out += BASE62[byte % 62];
      if (out.length === API_KEY_PREFIX.length + GENERATED_LENGTH) break;
    }
  }
  return out;
}

/** SHA-256 hex of the whole key string: the only form in which a key is ever stored. */
export function hashApiKey(key: string): string {
  // One-shot crypto.hash (Node >= 20.12): no Hash object per request, less than half the time.
  return hash('sha256', key, 'hex');
}

/** True when `key` has the shape of a tollgate API key. */
export function isApiKeyFormat(key: string): boolean {
  return API_KEY_PATTERN.test(key);
}

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

/** True when `value` is a SHA-256 hex digest (either case). */
export function isSha256Hex(value: unknown): value is string {
  return typeof value === 'string' && SHA256_HEX.test(value);
}

/** Where `sha256Equal` decodes its two digests: it runs to the end at once, so one pair serves every call. */
const leftDigest = Buffer.alloc(32);
const rightDigest = Buffer.alloc(32);

/**
 * Compares two SHA-256 hex digests in constant time. A store may return a record for a
 * near miss (a prefix index, a buggy user lookup): this is the check that decides.
 */
export function sha256Equal(a: string, b: string): boolean {
  if (typeof a !== 'string' || typeof b !== 'string' || a.length !== 64 || b.length !== 64) return false;
  // Hex decoding stops at the first pair that is not hex: 32 bytes from 64 characters means all of them were.
  return (
    leftDigest.write(a, 'hex') === 32 && rightDigest.write(b, 'hex') === 32 && timingSafeEqual(leftDigest, rightDigest)
  );
}
