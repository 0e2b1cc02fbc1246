// The kind of a configured upstream that names none, and the tokenizer its models count with (the config folder).
import { describe, expect, it } from '@jest/globals';
import { defaultUpstreamKind, validateConfig } from '../src/config/index.js';

describe('the kind of an upstream that names none', () => {
  it('comes from its name where a kind claims it, else openai', () => {
    expect(
      Object.fromEntries(
        ['anthropic', 'gemini', 'google', 'mistral', 'openai', 'openai-compatible', 'azure-openai', 'acme'].map(
          (name) => [name, defaultUpstreamKind(name)],
        ),
      ),
    ).toEqual({
      anthropic: 'anthropic',
      gemini: 'gemini',
      google: 'gemini',
      mistral: 'mistral',
      openai: 'openai',
      'openai-compatible': 'openai',
      'azure-openai': 'openai',
      acme: 'openai',
    });
  });

  it('a config model served by an OpenAI-speaking upstream, naming no tokenizer, counts with o200k_base', () => {
    const config = validateConfig({
      upstreams: {
        local: { baseUrl: 'http://localhost:8000/v1', api: 'openai-compatible' },
        mistral: { baseUrl: 'https://api.mistral.ai/v1' },
      },
      models: {
        llama: { provider: 'local', inputPerMTok: 1, outputPerMTok: 1 },
        small: { provider: 'mistral', inputPerMTok: 1, outputPerMTok: 1 },
      },
    });
    expect(config.models!.llama).toMatchObject({ tokenizer: 'o200k_base', ownTokenizer: false });
    expect(config.models!.small!.tokenizer).toBeUndefined();
  });
});
