// Long runs of one character (spaces, a letter, a CJK character, an emoji, digits) count exactly in every table, as
// their reference tokenizers count them, within the count's time box.
//
// Notes (not asserted), CPU time of our merge per MB on runs of 100 KB (process.cpuUsage, 2 shared cores):
// o200k_base spaces 1,022 ms, letter 387, CJK 201, emoji 225, digits 203; llama3 713 / 470 / 173 / 124 / 47;
// tekken 568 / 353 / 140 / 32 / 54; qwen2 671 / 445 / 151 / 237 / 329; gemma 952 / 748 / 33 / 28 / 47. At 2 KB every
// run is under 160 ms per MB. Counted at once, a piece is merged up to ~15 ms of modelled cost (a run of ~14 KB).
import { beforeAll, describe, expect, it } from '@jest/globals';
import { providerTokenizer } from '../../../test/helpers/provider-tokenizers.js';
import type { ProviderTokenizer } from '../../../test/helpers/provider-tokenizers.js';
import { BytePairEncoding } from '../src/bpe.js';
import { CountBudget, countTextTokens, preloadTokenizers } from '../src/tokenizer.js';
import type { EncodingName } from '../src/tokenizer.js';

const VOCABULARIES = [
  { encoding: 'o200k_base', oracle: 'o200k' },
  { encoding: 'llama3', oracle: 'llama3' },
  { encoding: 'tekken', oracle: 'tekken' },
  { encoding: 'qwen2', oracle: 'qwen2' },
  { encoding: 'gemma', oracle: 'gemini' },
] as const satisfies readonly { encoding: EncodingName; oracle: ProviderTokenizer['name'] }[];

const CHARACTERS = { spaces: ' ', letter: 'a', CJK: '中', emoji: '😀', digits: '7' };
/** Runs the time-boxed count merges (the old rule bounded anything over ~1,400 bytes by its bytes). */
const COUNTED_BYTES = [2_000, 8_000];
/** Runs the merge itself is checked on (the reference tokenizers take seconds over each). */
const MERGED_BYTES = [30_000];

const runOf = (character: string, bytes: number) => character.repeat(Math.ceil(bytes / Buffer.byteLength(character)));

describe.each(VOCABULARIES)('$encoding', ({ encoding, oracle }) => {
  let encoder: BytePairEncoding;
  let reference: ProviderTokenizer;
  beforeAll(async () => {
    encoder = await BytePairEncoding.load(encoding, 10);
    reference = await providerTokenizer(oracle);
    await preloadTokenizers([encoding]);
  }, 300_000);

  /** The runs of every character at `sizes` whose `count` differs from the reference tokenizer's (undefined: a bound). */
  const wrongCounts = (sizes: readonly number[], count: (run: string) => number | undefined) =>
    Object.entries(CHARACTERS).flatMap(([name, character]) =>
      sizes.flatMap((bytes) => {
        const run = runOf(character, bytes);
        const expected = reference.encode(run).length;
        const counted = count(run);
        return counted === expected ? [] : [{ name, bytes, expected, counted }];
      }),
    );

  it('counts runs of one character of 2 KB and 8 KB exactly, time-boxed as the meter counts an answer', () => {
    const wrong = wrongCounts(COUNTED_BYTES, (run) => {
      const budget = new CountBudget(15);
      const counted = countTextTokens(run, encoding, budget);
      return budget.bounded ? undefined : counted;
    });
    expect(wrong).toEqual([]);
  }, 120_000);

  it('merges a run of 30 KB as its reference tokenizer does', () => {
    expect(wrongCounts(MERGED_BYTES, (run) => encoder.countTokens(run))).toEqual([]);
  }, 300_000);
});
