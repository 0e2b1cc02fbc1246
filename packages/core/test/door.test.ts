// Core's doors: `@tollgate/core` names what an app uses (at most 40 names); `@tollgate/core/kit` has the rest.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import * as door from '@tollgate/core';
import * as kit from '@tollgate/core/kit';

const source = readFileSync(new URL('../src/index.ts', import.meta.url), 'utf8');
/** The names in the index's export lists, values and types. */
function listed(kind: 'export {' | 'export type {'): string[] {
  const at = source.indexOf(`${kind}\n`);
  expect(at).toBeGreaterThanOrEqual(0);
  const list = source.slice(at + kind.length, source.indexOf('}', at));
  return list
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name.length > 0);
}

describe("core's doors", () => {
  const values = listed('export {');
  const types = listed('export type {');

  it('names at most 40 things at the main door, values and types together', () => {
    expect(values.length + types.length).toBeLessThanOrEqual(40);
    expect(new Set([...values, ...types]).size).toBe(values.length + types.length);
  });

  it('exports exactly the listed values, each the same binding as the kit’s', () => {
    expect(Object.keys(door).sort()).toEqual([...values].sort());
    for (const name of values)
      expect((door as Record<string, unknown>)[name]).toBe((kit as Record<string, unknown>)[name]);
  });

  it('keeps the building blocks at the kit, not at the main door', () => {
    for (const name of [
      'assertKnownOptions',
      'counterAtOnce',
      'withTimeout',
      'attachPreCallCheck',
      'MemoryWindowCounter',
    ])
      expect({ name, atDoor: name in door, inKit: name in kit }).toEqual({ name, atDoor: false, inKit: true });
  });
});
