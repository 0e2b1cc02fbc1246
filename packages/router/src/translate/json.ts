// Guards for reading untyped request and answer bodies, and the result type every request translation returns.

export type Json = Record<string, unknown>;

export const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
export const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A translated request body, or why the target's API cannot express the request. */
export type TranslatedRequest = { ok: true; body: Json } | { ok: false; reason: string };

/** Thrown inside a translation to refuse the request; the entry point turns it into `{ ok: false, reason }`. */
export class Untranslatable extends Error {
  override readonly name = 'Untranslatable';
}

export function refuse(reason: string): never {
  throw new Untranslatable(reason);
}

/** A value that may be left out: undefined, null, false, 0, '' or an empty object or array all ask for the default. */
export function isUnset(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === '') return true;
  if (Array.isArray(value)) return value.length === 0;
  return isObject(value) && Object.keys(value).length === 0;
}

/** Current time in whole seconds, as OpenAI's `created` fields carry it. */
export const unixSeconds = (): number => Math.floor(Date.now() / 1000);
