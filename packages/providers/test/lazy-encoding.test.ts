// Encodings load when first needed: a count in one not loaded yet is the byte bound (never too low) and starts its load.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { runSourceChild } from '../../../test/helpers/source-child.js';

const CHILD = fileURLToPath(new URL('./fixtures/lazy-encoding.mts', import.meta.url));

describe('encodings loaded on first use', () => {
  it('bounds a cl100k_base count before its encoding loads, starts the load, and counts exactly once it is in', async () => {
    const run = await runSourceChild(CHILD);
    expect({ code: run.code, errors: run.stderr }).toMatchObject({ code: 0 });
    const result = JSON.parse(run.stdout) as Record<string, unknown> & { bytes: number; exact: number };
    // Only what was asked for is loaded: o200k_base, not cl100k_base.
    expect(result.before).toEqual({ o200k: true, cl100k: false, all: false });
    // Before it loads: the upper bound is the UTF-8 length, the lower one a 128th of it, both on the right side of the exact count.
    expect(result.earlyCount).toBe(result.bytes);
    expect(result.earlyBounded).toBe(true);
    expect(result.earlyLower).toBe(Math.ceil(result.bytes / 128));
    expect(result.earlyCount).toBeGreaterThan(result.exact);
    expect(result.earlyLower as number).toBeLessThanOrEqual(result.exact);
    expect(result.startedByCount).toBe(true);
    expect(result.loadedByCount).toBe(true);
    expect(result.sameLoad).toBe(true);
    // Once in: exact, as gpt-tokenizer counts it.
    expect(result.lateCount).toBe(result.exact);
    expect(result.lateBounded).toBe(false);
    expect(result.after).toEqual({ cl100k: true, all: true });
  });
});
