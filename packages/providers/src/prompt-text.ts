// Rewriting a request's prompt texts copy on write: what each adapter's `mapPromptText` is built from.
import { isObject } from './json.js';
import type { Json } from './json.js';

/** What a prompt text becomes (the same string when it stays). */
export type TextMap = (text: string) => string;

/** `items` with each passed through `map`: the same array when none changed, else a copy; anything but an array as it is. */
export function mapEach(items: unknown, map: (item: unknown) => unknown): unknown {
  if (!Array.isArray(items)) return items;
  let copy: unknown[] | undefined;
  for (let i = 0; i < items.length; i++) {
    const item: unknown = items[i];
    const next = map(item);
    if (next !== item) (copy ??= items.slice())[i] = next;
  }
  return copy ?? items;
}

/** `record` with `field` set to `value`: the same record when that changes nothing, else a shallow copy. */
export function withField(record: Json, field: string, value: unknown): Json {
  return record[field] === value ? record : { ...record, [field]: value };
}

/** A string through `map`; anything else as it is. */
export function mapString(value: unknown, map: TextMap): unknown {
  return typeof value === 'string' ? map(value) : value;
}

/** An object's `field` passed through `change` (copy on write); anything but an object as it is. */
export function mapField(value: unknown, field: string, change: (inner: unknown) => unknown): unknown {
  return isObject(value) ? withField(value, field, change(value[field])) : value;
}
