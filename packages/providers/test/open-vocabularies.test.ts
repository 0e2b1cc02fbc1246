// The open vocabularies (Llama 3, Mistral's tekken, Qwen2.5, Gemma) count exactly what their reference tokenizers count.
import { beforeAll, describe, expect, it } from '@jest/globals';
import { providerTokenizer } from '../../../test/helpers/provider-tokenizers.js';
import type { ProviderTokenizer } from '../../../test/helpers/provider-tokenizers.js';
import { STREAM_TEXTS } from '../../../test/helpers/stream-texts.js';
import { BytePairEncoding } from '../src/bpe.js';
import { CountBudget, countTextTokens, lastPieceStart, preloadTokenizers } from '../src/tokenizer.js';
import type { EncodingName } from '../src/tokenizer.js';

/** Each table and the reference tokenizer it is checked against (test oracles: devDependencies only). */
const VOCABULARIES = [
  { encoding: 'llama3', oracle: 'llama3' },
  { encoding: 'tekken', oracle: 'tekken' },
  { encoding: 'qwen2', oracle: 'qwen2' },
  { encoding: 'gemma', oracle: 'gemini' },
] as const satisfies readonly { encoding: EncodingName; oracle: ProviderTokenizer['name'] }[];

/** Texts past the stream-kinds ones: what each vocabulary treats apart (literals, NFC, runs, scripts, symbols). */
const EDGE_TEXTS: Record<string, string> = {
  'decomposed accents (NFC)': 'Cafe\u0301 na\u0308ive re\u0301sume\u0301 \u1100\u1161\u11a8 ',
  'Qwen literals': 'call <tool_call>{"name": "f"}</tool_call> then<|fim_prefix|>x<|fim_suffix|>y<|fim_middle|>',
  'Gemma literals': 'a<table><tr><td>1</td></tr></table>\n\n\n\n\n\nb<unused3>[@BOS@]',
  'literal spaces': 'one\u2581two \u2581 three\u2581\u2581 four',
  'mixed runs': `${' '.repeat(300)}x${'\t'.repeat(70)}\n${'\n'.repeat(90)}${'-'.repeat(200)}!`,
  'Persian and Tibetan': 'می\u200cشود به\u200cعنوان کتاب\u200cها ང་ཚོ་ བོད་ཡིག ',
  'symbols and controls': '\u0000\u0001\u001f\u007f\u00ad\ufeff\ufffd 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ½ ² ① 🏳️‍🌈',
  numbers: '3.14159 1,000,000 ٠١٢٣ ४५६ 0x1F 1e-9 12345678901234567890',
  contractions: "I'm sure you'll see they'd've gone. DON'T WON'T it's O'Brien's",
};

const encoders = {} as Record<EncodingName, BytePairEncoding>;
const oracles = {} as Record<ProviderTokenizer['name'], ProviderTokenizer>;

/** Every text as a whole and its prefix at each tenth of its characters (where a stream may be cut). */
function textsOf(texts: Record<string, string>): [string, string][] {
  return Object.entries(texts).flatMap(([name, text]) => {
    const characters = Array.from(text);
    const prefix = (tenths: number) => characters.slice(0, Math.round((characters.length * tenths) / 10)).join('');
    return [
      [name, text],
      ...Array.from({ length: 9 }, (_, i): [string, string] => [`${name} to ${i + 1}/10`, prefix(i + 1)]),
    ];
  });
}

describe.each(VOCABULARIES)('$encoding', ({ encoding, oracle }) => {
  // The reference tokenizers take seconds each to load (Gemma's tens on a busy machine).
  beforeAll(async () => {
    encoders[encoding] = await BytePairEncoding.load(encoding, 1_000);
    oracles[oracle] = await providerTokenizer(oracle);
    await preloadTokenizers([encoding]);
  }, 300_000);

  it('counts every stream-kinds text, and each prefix of it, as its reference tokenizer does', () => {
    const wrong = textsOf(STREAM_TEXTS).flatMap(([name, text]) => {
      const expected = oracles[oracle].encode(text).length;
      const counted = encoders[encoding].countTokens(text);
      // The time-boxed count: exact, or (a run too long to merge in time, as for OpenAI's) its bytes, never less.
      const budget = new CountBudget(10_000);
      const timeBoxed = countTextTokens(text, encoding, budget);
      const right = counted === expected && (budget.bounded ? timeBoxed >= expected : timeBoxed === expected);
      return right ? [] : [{ name, expected, counted, timeBoxed }];
    });
    expect(wrong).toEqual([]);
  });

  it('counts the texts each vocabulary treats apart as its reference tokenizer does', () => {
    const wrong = textsOf(EDGE_TEXTS).flatMap(([name, text]) => {
      const long = text.repeat(Math.ceil(600 / text.length));
      return [text, long].flatMap((sample) => {
        const expected = oracles[oracle].encode(sample).length;
        const counted = countTextTokens(sample, encoding, new CountBudget(10_000));
        return counted === expected ? [] : [{ name, length: sample.length, expected, counted }];
      });
    });
    expect(wrong).toEqual([]);
  });

  it('adds up where a stream is cut at a piece start: the count before it plus the count from it', () => {
    const wrong = Object.entries({ ...STREAM_TEXTS, ...EDGE_TEXTS }).flatMap(([name, text]) => {
      const cut = lastPieceStart(text, encoding);
      const sum = encoders[encoding].countTokens(text.slice(0, cut)) + encoders[encoding].countTokens(text.slice(cut));
      const expected = oracles[oracle].encode(text).length;
      return sum === expected ? [] : [{ name, cut, sum, expected }];
    });
    expect(wrong).toEqual([]);
  });
});
