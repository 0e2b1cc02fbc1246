// The hard stop's running count of a stream's output: counted on as deltas arrive, it is the count of the whole text
// so far after every delta (gpt-tokenizer as the oracle), and the text is not counted again from its start.
import { beforeAll, describe, expect, it } from '@jest/globals';
import { countTokens as cl100kCount } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTokens as o200kCount } from 'gpt-tokenizer/encoding/o200k_base';
import { OutputText, preloadTokenizers } from '@tollgate/providers';

const PLAIN = { disallowedSpecial: new Set<string>() };
/** Exact counts add up where a text is cut at a piece's start, as the meter's own counters declare. */
const ORACLES = {
  o200k_base: Object.assign((text: string) => o200kCount(text, PLAIN), { additive: true }),
  cl100k_base: Object.assign((text: string) => cl100kCount(text, PLAIN), { additive: true }),
};

/** Answers as models stream them: prose, code, numbers, other scripts, emoji, odd spacing. */
const ANSWERS = [
  "Sure! Here's a summary: the café's naïve owner didn't expect 1,234,567 visitors in 2024 — they'd planned for 12.5k.",
  'function add(a, b) {\n  return a + b; // sum\n}\n\n```ts\nconst x: Record<string, number> = { "a": 1 };\n```\n',
  '数据库的设计需要考虑性能、可扩展性和一致性。我们建议使用分片，并且在每个分片上建立索引。',
  'これは日本語の文章です。東京は大きな都市で、多くの人が住んでいます！',
  'Привет, мир! Это тест: слова, числа 42 и знаки — всё вместе.',
  'مرحبا بالعالم، هذا اختبار للنص العربي مع أرقام ١٢٣ وعلامات.',
  'नमस्ते दुनिया! यह हिंदी पाठ का परीक्षण है।',
  'Emoji 😀👍🏽 and families 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵, combining é (e\u0301) and ñ.',
  '   leading spaces,\ttabs\t\tand\n\n\nnewlines   \r\n  trailing    ',
  "It's what they'll do; we've seen it: I'M SURE you'D agree... 'quoted' text, and <|endoftext|> as plain text.",
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'.repeat(4) +
    ' then words after a long run',
  'https://example.com/path?query=1&b=2#frag user@example.com base64: SGVsbG8gd29ybGQhIFRoaXMgaXMgYmFzZTY0Lg==',
];

/** Deltas of `text`: as cut by `sizes` in turn (characters), never inside a surrogate pair. */
function deltas(text: string, sizes: readonly number[]): string[] {
  const out: string[] = [];
  for (let at = 0, turn = 0; at < text.length; turn++) {
    let end = Math.min(text.length, at + sizes[turn % sizes.length]!);
    const code = text.charCodeAt(end - 1);
    if (end < text.length && code >= 0xd800 && code <= 0xdbff) end++;
    out.push(text.slice(at, end));
    at = end;
  }
  return out;
}

const CUTS: readonly (readonly number[])[] = [[1], [2, 3, 5], [4, 1, 7, 2], [13, 8], [40]];

beforeAll(() => preloadTokenizers());

describe('OutputText running count', () => {
  for (const [encoding, oracle] of Object.entries(ORACLES)) {
    it(`is the whole text's ${encoding} count after every delta, however the answer is cut`, () => {
      for (const answer of ANSWERS)
        for (const sizes of CUTS) {
          const output = new OutputText();
          let sent = '';
          for (const delta of deltas(answer, sizes)) {
            output.add(delta);
            sent += delta;
            const count = output.countOf(oracle);
            // Past 256 characters with no place a piece starts (the run of "a"), the run is counted as a piece of
            // its own: never below the whole's count (the hold's upper count may run ahead; the stop recounts).
            if (/[^\s]{257}/u.test(sent)) expect(count).toBeGreaterThanOrEqual(oracle(sent));
            else expect({ sent, count }).toEqual({ sent, count: oracle(sent) });
          }
        }
    });

    it(`says the ${encoding} count passed a limit exactly when the whole text's count does`, () => {
      for (const answer of ANSWERS) {
        const total = oracle(answer);
        for (const limit of [0, Math.floor(total / 2), total - 1, total]) {
          const output = new OutputText();
          let sent = '';
          for (const delta of deltas(answer, [3, 1, 4])) {
            output.add(delta);
            sent += delta;
            expect({ sent, limit, passes: output.passes(limit, oracle) }).toEqual({
              sent,
              limit,
              passes: oracle(sent) > limit,
            });
          }
        }
      }
    });
  }

  it('counts a streamed answer about once, not once more from its start at the limit', () => {
    const answer = ANSWERS.slice(0, 2).join(' ').repeat(6);
    const total = ORACLES.o200k_base(answer);
    let counted = 0;
    const counting = Object.assign(
      (text: string) => {
        counted += text.length;
        return ORACLES.o200k_base(text);
      },
      { additive: true },
    );
    const output = new OutputText();
    let stoppedAt: number | undefined;
    for (const delta of deltas(answer, [4, 6, 5])) {
      output.add(delta);
      if (output.passes(total - 1, counting)) {
        stoppedAt = output.bytes;
        break;
      }
    }
    expect(stoppedAt).toBe(Buffer.byteLength(answer));
    // Each character once, and the word after the last place a piece starts again at each count.
    expect(counted).toBeLessThan(answer.length * 1.3);
    expect(counted).toBeGreaterThanOrEqual(answer.length);
  });

  it('forgets the text of an event withheld at a cut: its count, its bytes and the running counts', () => {
    const oracle = ORACLES.o200k_base;
    for (const answer of ANSWERS) {
      const parts = deltas(answer, [7, 3]);
      const sent = parts.slice(0, -1).join('');
      const output = new OutputText();
      for (const [index, delta] of parts.entries()) {
        output.startEvent();
        output.add(delta);
        if (index === parts.length - 2) output.passes(0, oracle);
      }
      output.countOf(oracle);
      output.withdrawEvent();
      expect({ answer, tokens: output.tokens(oracle), bytes: output.bytes }).toEqual({
        answer,
        tokens: oracle(sent),
        bytes: Buffer.byteLength(sent),
      });
      expect({ answer, stop: output.passes(oracle(sent) - 1, oracle), held: output.countOf(oracle) }).toEqual({
        answer,
        stop: oracle(sent) > 0,
        held: oracle(sent),
      });
    }
  });
});
