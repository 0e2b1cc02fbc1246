// The hard stop in the moments after meter() is made, before the encodings load: counts are byte bounds then, and no answer within its grant is cut.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { runSourceChild } from '../../../test/helpers/source-child.js';

const CHILD = fileURLToPath(new URL('./fixtures/stream-at-startup.mts', import.meta.url));

describe('hard stop at startup', () => {
  it('does not cut a stream within its grant while the tokenizers are still loading', async () => {
    const run = await runSourceChild(CHILD);
    expect({ code: run.code, errors: run.stderr }).toMatchObject({ code: 0 });
    const result = JSON.parse(run.stdout) as {
      loadedBefore: boolean;
      finishReasons: string[];
      cl100kBefore: boolean;
      cl100kFinishReasons: string[];
    };
    // The case this test is about: the request came before the encodings were in.
    expect(result.loadedBefore).toBe(false);
    // Before: the 160 bytes passed the 64-token grant as a byte bound, and the stream was ended with "length".
    expect(result.finishReasons).toEqual(['stop']);
    // The same later for a model of an encoding loaded on first use (GPT-4's cl100k_base): its stop waits for it.
    expect(result.cl100kBefore).toBe(false);
    expect(result.cl100kFinishReasons).toEqual(['stop']);
  });
});
