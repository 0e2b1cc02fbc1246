// The token counters benchmark 3 compares: tollgate's estimator and the exact BPE libraries it could have used.

/** Counts tokens of a prompt text (async allowed: an estimator may yield to the loop). */
export type CountTokens = (text: string) => number | Promise<number>;

export const TOKENIZERS = ['tollgate', 'gpt-tokenizer', 'js-tiktoken', 'tiktoken (wasm)'] as const;

export async function loadTokenizer(name: string): Promise<CountTokens> {
  switch (name) {
    case 'gpt-tokenizer': {
      const { countTokens } = await import('gpt-tokenizer/encoding/o200k_base');
      return (text) => countTokens(text);
    }
    case 'js-tiktoken': {
      const { Tiktoken } = await import('js-tiktoken/lite');
      const { default: o200k } = await import('js-tiktoken/ranks/o200k_base');
      const encoder = new Tiktoken(o200k);
      return (text) => encoder.encode(text, [], []).length;
    }
    case 'tiktoken (wasm)': {
      const { get_encoding } = await import('tiktoken');
      const encoder = get_encoding('o200k_base');
      return (text) => encoder.encode_ordinary(text).length;
    }
    case 'tollgate':
      return loadTollgateEstimator();
    default:
      throw new Error(`unknown tokenizer ${name}`);
  }
}

async function loadTollgateEstimator(): Promise<CountTokens> {
  throw new Error('tollgate estimator not available yet');
}
