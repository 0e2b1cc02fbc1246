// The output bounds against each provider's own kind of tokenizer, on every text: the upper never under, the lower never over.
import { beforeAll, describe, expect, it } from '@jest/globals';
import { lowerOutputTokens, maxTokenBytesOf, preloadTokenizers, upperOutputTokens } from '@tollgate/providers';
import { providerTokenizer, tokenPieces } from './helpers/provider-tokenizers.js';
import type { ProviderTokenizer } from './helpers/provider-tokenizers.js';
import { STREAM_TEXTS } from './helpers/stream-texts.js';

const KINDS = [
  { name: 'claude', provider: 'anthropic' },
  { name: 'gemini', provider: 'google' },
  { name: 'llama3', provider: 'vllm' },
] as const;
const upper = upperOutputTokens(1_000);
const tokenizers = new Map<string, ProviderTokenizer>();

beforeAll(async () => {
  await preloadTokenizers();
  for (const { name } of KINDS) tokenizers.set(name, await providerTokenizer(name));
}, 60_000);

describe.each(KINDS)('$name', ({ name, provider }) => {
  it.each(Object.keys(STREAM_TEXTS))(
    '%s: lower <= its count <= upper, whole and streamed a token at a time',
    (text) => {
      const tokenizer = tokenizers.get(name)!;
      const content = STREAM_TEXTS[text]!;
      const own = tokenizer.encode(content).length;
      const lower = lowerOutputTokens(maxTokenBytesOf(provider));
      // As the meter sees a stream: the sum over its deltas.
      const pieces = tokenPieces(tokenizer, content);
      const streamed = pieces.reduce((sum, piece) => sum + upper(piece), 0);
      expect({ text, upper: upper(content) >= own, streamed: streamed >= own }).toEqual({
        text,
        upper: true,
        streamed: true,
      });
      expect({ text, lower: lower(content) <= own }).toEqual({ text, lower: true });
    },
  );
});
