// The token counters benchmark 3 compares: tollgate's estimator and the exact BPE libraries it could have used.

/** What a count found; `exact: false` when the counter bounded or approximated part of the text. */
export interface TokenCount {
  tokens: number;
  exact: boolean;
}

/** Counts tokens of a prompt text (async allowed: an estimator may yield to the loop). */
export type CountTokens = (text: string) => TokenCount | Promise<TokenCount>;

export const TOKENIZERS = ['tollgate', 'gpt-tokenizer', 'js-tiktoken', 'tiktoken (wasm)'] as const;

export async function loadTokenizer(name: string): Promise<CountTokens> {
  switch (name) {
    case 'gpt-tokenizer': {
      const { countTokens } = await import('gpt-tokenizer/encoding/o200k_base');
      return (text) => ({ tokens: countTokens(text), exact: true });
    }
    case 'js-tiktoken': {
      const { Tiktoken } = await import('js-tiktoken/lite');
      const { default: o200k } = await import('js-tiktoken/ranks/o200k_base');
      const encoder = new Tiktoken(o200k);
      return (text) => ({ tokens: encoder.encode(text, [], []).length, exact: true });
    }
    case 'tiktoken (wasm)': {
      const { get_encoding } = await import('tiktoken');
      const encoder = get_encoding('o200k_base');
      return (text) => ({ tokens: encoder.encode_ordinary(text).length, exact: true });
    }
    case 'tollgate':
      return loadTollgateEstimator();
    default:
      throw new Error(`unknown tokenizer ${name}`);
  }
}

/** What meter() runs before the call: estimateInputTokensAsync on a chat request holding the text, with its defaults (4 ms slices, 250 ms budget). */
async function loadTollgateEstimator(): Promise<CountTokens> {
  const { estimateInputTokensAsync, preloadTokenizers } = await import('@tollgate/providers');
  // meter() starts this at factory time; a request before it finishes is bounded by bytes instead.
  await preloadTokenizers();
  return async (text) => {
    const estimate = await estimateInputTokensAsync(
      'openai.chat',
      { model: 'gpt-4o', messages: [{ role: 'user', content: text }] },
      'gpt-4o',
    );
    return { tokens: estimate.tokens, exact: estimate.exact };
  };
}
