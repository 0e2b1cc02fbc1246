// The terms of a key a person types: when a new key expires, and what a rotation does with the old one. One rule for
// every place keys are made by hand (the `keys` command, the dashboard), each naming the field its own way.
import { ApiError, parseDuration } from '@tollgate/core';
import { keyBudgetScope } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';

/** A term that does not read; the message names the field as the caller called it (`--grace`, `grace`). */
export class KeyTermError extends Error {
  override readonly name = 'KeyTermError';
}

/** A term read at an HTTP door (the dashboard, /admin/keys): its refusal as a 400 naming the field. */
export function keyTermOrRefusal<T>(field: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof KeyTermError) throw new ApiError('invalid_request', `${error.message}.`, { param: field });
    throw error;
  }
}

/** A duration from now: `30d`, `12h`, `90m`, `1w` (parseDuration's units). */
const FROM_NOW = /^\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)$/;
/** Nothing more: `0`, `0s`, `0h`. */
const ZERO = /^0+(?:\.0+)?\s*(?:ms|s|m|h|d|w)?$/;

/**
 * When a new key stops working: a duration from now (`30d`), an ISO 8601 date or time in the
 * future, or never (`never`, or nothing given). Returns the ISO time, or undefined for never.
 */
export function keyExpiry(value: string | undefined, now: number, field = 'expires'): string | undefined {
  const text = value?.trim();
  if (text === undefined || text === '' || text === 'never') return undefined;
  let at = Number.NaN;
  if (FROM_NOW.test(text) && !ZERO.test(text)) at = now + parseDuration(text, field);
  // Only ISO dates: Date.parse also reads "7" or "May 5" as some day.
  else if (/^\d{4}-\d{2}-\d{2}/.test(text)) at = Date.parse(text);
  if (!Number.isFinite(at))
    throw new KeyTermError(
      `${field} must be a duration like 30d, an ISO 8601 date, or never; got ${JSON.stringify(value)}`,
    );
  if (at <= now) throw new KeyTermError(`${field} must be in the future; got ${JSON.stringify(value)}`);
  return new Date(at).toISOString();
}

/** What a rotation does with the old key. */
export type RotationGrace = { oldKey: 'revoke' } | { oldKey: 'expire'; at: string } | { oldKey: 'keep' };

/**
 * What a rotation does with the old key: stop it now (`0`), let it work a while longer (`1h`: it
 * expires then, or earlier if it already did), or keep it until it is revoked (`keep`, or nothing given).
 */
export function rotationGrace(value: string | undefined, now: number, field = 'grace'): RotationGrace {
  const text = value?.trim();
  if (text === undefined || text === '' || text === 'keep') return { oldKey: 'keep' };
  if (ZERO.test(text)) return { oldKey: 'revoke' };
  if (!FROM_NOW.test(text))
    throw new KeyTermError(
      `${field} must be 0 (stop the old key now), a duration like 1h, or keep; got ${JSON.stringify(value)}`,
    );
  return { oldKey: 'expire', at: new Date(now + parseDuration(text, field)).toISOString() };
}

/**
 * The key that replaces `old` in a rotation: every attribute of the old one, its end date included (the same
 * instant: a 30-day key's successor ends when it would have), unless `expiresAt` gives a new one; never disabled. Its
 * budget continues the old one's (`budgetOf`): the same spend in the same period, never a fresh one.
 */
export function successorRecord(
  old: ApiKeyRecord,
  next: { id: string; sha256: string; now: number; expiresAt?: string | undefined },
): ApiKeyRecord {
  const { disabled: _disabled, ...attributes } = old;
  const record: ApiKeyRecord = {
    ...attributes,
    id: next.id,
    sha256: next.sha256,
    createdAt: new Date(next.now).toISOString(),
    budgetOf: keyBudgetScope(old),
  };
  if (next.expiresAt !== undefined) record.expiresAt = next.expiresAt;
  return record;
}

/** The old key's end after a grace: the grace's end, or its own end when that comes first. */
export function expiryAfterGrace(record: ApiKeyRecord, graceEnd: string): string {
  return record.expiresAt !== undefined && Date.parse(record.expiresAt) < Date.parse(graceEnd)
    ? record.expiresAt
    : graceEnd;
}

/** The old key as a rotation leaves it: revoked, ending by the grace's end, or as it was. */
export function predecessorAfterRotation(old: ApiKeyRecord, grace: RotationGrace): ApiKeyRecord {
  if (grace.oldKey === 'revoke') return { ...old, disabled: true };
  if (grace.oldKey === 'expire') return { ...old, expiresAt: expiryAfterGrace(old, grace.at) };
  return old;
}

/**
 * A key's budget as a person types it: JSON of one budget or a list (`{"usd":5,"period":"day"}`), or `none` to take it
 * away (null). Its limits are checked where the key is stored, by the rule the gateway's config applies.
 */
export function keyBudgetTerm(value: string, field = 'budget'): unknown {
  const text = value.trim();
  if (text === 'none') return null;
  try {
    const budget = JSON.parse(text) as unknown;
    if (typeof budget === 'object' && budget !== null) return budget;
  } catch {
    // Said below, with the field's name.
  }
  throw new KeyTermError(
    `${field} must be JSON of a budget or a list of them, like {"usd":5,"period":"day"}, or none; got ${JSON.stringify(value)}`,
  );
}
