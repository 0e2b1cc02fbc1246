// The openai.embeddings adapter on its own: its declaration and catalogue rows, its request checks, the input count
// (strings with cl100k_base, token arrays by their length) and its tight bound, usage read from an answer, the kind
// of model it serves; and the token counts Anthropic's and Gemini's adapters declare.
import { beforeAll, describe, expect, it } from '@jest/globals';
import { countTokens as cl100kCount } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTokens as o200kCount } from 'gpt-tokenizer/encoding/o200k_base';
import { ApiError, createPricing } from '@tollgate/core';
import { adapterFor, estimateRequest, preloadTokenizers } from '@tollgate/providers';
import { checkModelKind } from '@tollgate/providers/routes';

type Json = Record<string, unknown>;

const embeddings = adapterFor('openai.embeddings');
const pricing = createPricing();
const model = 'text-embedding-3-small';

beforeAll(async () => {
  await preloadTokenizers(['cl100k_base', 'o200k_base']);
});

describe('openai.embeddings: its declaration', () => {
  it('is OpenAI, served at /v1/embeddings, sent to an openai upstream at /embeddings, for embedding models', () => {
    expect(embeddings).toMatchObject({
      api: 'openai.embeddings',
      provider: 'openai',
      family: 'embeddings',
      modelKind: 'embedding',
      billsCountedInput: true,
      route: { path: '/v1/embeddings' },
      genAi: { operation: 'embeddings', provider: 'openai' },
      answerUsageFields: ['model', 'usage'],
    });
    expect(embeddings.upstream).toMatchObject({ kind: 'openai', path: '/embeddings', modelsPath: '/models' });
    expect(embeddings.upstream!.authHeaders('k-1')).toEqual({ authorization: 'Bearer k-1' });
    expect(embeddings.countTokens).toBeUndefined();
  });

  it('its catalogue rows: embedding models priced on input only, counted with cl100k_base', () => {
    const rows: [string, number][] = [
      ['text-embedding-3-small', 20_000],
      ['text-embedding-3-large', 130_000],
      ['text-embedding-ada-002', 100_000],
    ];
    for (const [id, inputMicro] of rows) {
      expect(pricing.get(id)).toMatchObject({
        provider: 'openai',
        kind: 'embedding',
        inputMicro,
        outputMicro: 0,
        tokenizer: 'cl100k_base',
        ownTokenizer: true,
      });
    }
    expect(pricing.get('gpt-4o-mini').kind).toBe('generation');
  });

  it('reads the model, no output, no stream; writes the model, never a cap', () => {
    const body: Json = { model, input: 'hello', stream: true };
    expect(embeddings.read({ body })).toEqual({ model, outputCap: 0, stream: false, choices: 1 });
    embeddings.writeOutputCap(body, 100);
    embeddings.writeModel(body, 'text-embedding-3-large');
    expect(body).toEqual({ model: 'text-embedding-3-large', input: 'hello', stream: true });
  });
});

describe('openai.embeddings: request checks', () => {
  const check = (body: Json) => embeddings.checkRequest!({ model, ...body });

  it('accepts each form OpenAI takes', () => {
    for (const input of ['one', ['one', 'two'], [1, 2, 3], [[1, 2], [3]]])
      expect(check({ input, dimensions: 256, encoding_format: 'base64', user: 'u-1' })).toBeUndefined();
    expect(check({ input: Array.from({ length: 2048 }, () => 'x') })).toBeUndefined();
  });

  it('refuses what OpenAI refuses, naming the field', () => {
    const cases: [Json, string, RegExp][] = [
      [{}, 'input', /input must be a string/],
      [{ input: '' }, 'input', /empty string/],
      [{ input: [] }, 'input', /input must be/],
      [{ input: { text: 'x' } }, 'input', /input must be/],
      [{ input: ['a', ''] }, 'input[1]', /empty string/],
      [{ input: ['a', 1] }, 'input[1]', /is not a string/],
      [{ input: [1, 'a'] }, 'input[1]', /token id/],
      [{ input: [1.5] }, 'input[0]', /token id/],
      [{ input: [[1], []] }, 'input[1]', /empty array of tokens/],
      [{ input: [[1], [2, -3]] }, 'input[1][1]', /token id/],
      [{ input: [[1], 2] }, 'input[1]', /is not an array of token ids/],
      [{ input: [null] }, 'input[0]', /input must be/],
      [{ input: Array.from({ length: 2049 }, () => 'x') }, 'input', /at most 2048 inputs; got 2049/],
      [{ input: 'x', dimensions: 0 }, 'dimensions', /positive integer/],
      [{ input: 'x', encoding_format: 'int8' }, 'encoding_format', /"float" or "base64"/],
      [{ input: 'x', user: 7 }, 'user', /string/],
    ];
    for (const [body, param, message] of cases) {
      const problem = check(body);
      expect(problem?.param).toBe(param);
      expect(problem?.message).toMatch(message);
    }
  });
});

describe('openai.embeddings: the estimate', () => {
  it('counts each string with cl100k_base, no framing: exact, and its own bound', () => {
    const input = ['The quick brown fox', 'jumps over the lazy dog — twice.'];
    const estimate = estimateRequest({ api: 'openai.embeddings', body: { model, input }, pricing });
    const tokens = cl100kCount(input[0]!) + cl100kCount(input[1]!);
    expect(estimate).toMatchObject({
      inputTokens: tokens,
      exact: true,
      method: 'cl100k_base',
      // The count is the bill: budgets reserve it, not the text's bytes.
      inputTokensBound: tokens,
      maxOutputTokens: 0,
      totalTokens: tokens,
      costNanoUsd: tokens * 20,
    });
    // A chat request's exact count is still reserved at its bytes (framing, the provider's own prompt).
    const chat = estimateRequest({
      api: 'openai.chat',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: input[0] }], max_tokens: 1 },
      pricing,
    });
    expect(chat.exact).toBe(true);
    expect(chat.inputTokensBound).toBeGreaterThan(chat.inputTokens);
  });

  it('counts token arrays by their length, one array or several, mixed with nothing else', () => {
    const one = estimateRequest({ api: 'openai.embeddings', body: { model, input: [5, 6, 7, 8] }, pricing });
    expect(one).toMatchObject({ inputTokens: 4, inputTokensBound: 4, exact: true });
    const many = estimateRequest({
      api: 'openai.embeddings',
      body: { model, input: [[1, 2, 3], [4], [5, 6]] },
      pricing,
    });
    expect(many).toMatchObject({ inputTokens: 6, inputTokensBound: 6, costNanoUsd: 6 * 20 });
  });

  it('an approximated model (a config row with no tokenizer of its own) keeps the byte bound', () => {
    const own = createPricing({
      models: { 'local-embed': { provider: 'local', kind: 'embedding', inputPerMTok: 0.01, outputPerMTok: 0 } },
    });
    const estimate = estimateRequest({
      api: 'openai.embeddings',
      body: { model: 'local-embed', input: 'The quick brown fox' },
      pricing: own,
    });
    // o200k_base times the approximation factor, bounded by the text's bytes.
    expect(estimate).toMatchObject({ exact: false, method: 'approximate' });
    expect(estimate.inputTokens).toBe(Math.ceil(o200kCount('The quick brown fox') * 1.25));
    expect(estimate.inputTokensBound).toBe(Buffer.byteLength('The quick brown fox'));
  });

  it('refuses a model of the other kind, either way, naming the route that serves it', () => {
    const refusal = (api: 'openai.embeddings' | 'openai.chat' | 'anthropic.messages', body: Json): ApiError => {
      try {
        estimateRequest({ api, body, pricing });
      } catch (error) {
        return error as ApiError;
      }
      throw new Error('estimated');
    };
    const chatOnEmbeddings = refusal('openai.embeddings', { model: 'gpt-4o', input: 'x' });
    expect(chatOnEmbeddings).toBeInstanceOf(ApiError);
    expect(chatOnEmbeddings).toMatchObject({ code: 'invalid_request', param: 'model' });
    expect(chatOnEmbeddings.message).toBe(
      'The model "gpt-4o" is a text-generation model, which /v1/embeddings does not serve (it serves embedding models only): call /v1/chat/completions.',
    );
    const claudeOnEmbeddings = refusal('openai.embeddings', { model: 'claude-haiku-4-5', input: 'x' });
    expect(claudeOnEmbeddings.message).toMatch(/: call \/v1\/messages\.$/);
    const embeddingOnMessages = refusal('anthropic.messages', {
      model: 'text-embedding-3-small',
      max_tokens: 1,
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(embeddingOnMessages.message).toBe(
      'The model "text-embedding-3-small" is an embedding model, which /v1/messages does not serve (it serves text-generation models only): call /v1/embeddings.',
    );
    expect(() => checkModelKind(embeddings, model, pricing.get(model))).not.toThrow();
  });
});

describe('openai.embeddings: usage', () => {
  const answer = {
    object: 'list',
    data: [{ object: 'embedding', index: 0, embedding: [0.1, -0.2] }],
    model: 'text-embedding-3-small',
    usage: { prompt_tokens: 8, total_tokens: 8 },
  };
  const none = { cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 0, reasoningTokens: 0 };

  it('reads input tokens from prompt_tokens, and no output, from a whole answer', () => {
    const reader = embeddings.createReader();
    reader.onJson(answer);
    expect(reader.model).toBe('text-embedding-3-small');
    expect(reader.result(() => 0)).toEqual({ usage: { inputTokens: 8, ...none }, source: 'provider' });
    expect(reader.output.seen).toBe(false);
    expect(embeddings.readUsage(answer)).toEqual({ inputTokens: 8, ...none, model: 'text-embedding-3-small' });
  });

  it('falls back on total_tokens, and reports nothing without usage (the meter then bills the exact estimate)', () => {
    const reader = embeddings.createReader();
    reader.onJson({ ...answer, usage: { total_tokens: 5 } });
    expect(reader.result(() => 0)?.usage.inputTokens).toBe(5);
    const bare = embeddings.createReader();
    bare.onJson({ object: 'list', data: [] });
    expect(bare.result(() => 0)).toBeUndefined();
    expect(embeddings.readUsage({ object: 'list' })).toBeUndefined();
  });
});

describe('token counts declared by the generation adapters', () => {
  it("Anthropic's count_tokens: its own path, no max_tokens needed, answered { input_tokens }", () => {
    const counting = adapterFor('anthropic.messages').countTokens!;
    expect(counting.path).toBe('/v1/messages/count_tokens');
    expect(counting.upstreamPath('claude-haiku-4-5')).toBe('/v1/messages/count_tokens');
    expect(counting.checkRequest!({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] })).toBe(
      undefined,
    );
    expect(counting.checkRequest!({ model: 'claude-haiku-4-5', messages: [] })?.param).toBe('messages');
    expect(counting.checkRequest!({ messages: [{ role: 'user', content: 'hi' }], system: 3 })?.param).toBe('system');
    // A call still needs its cap.
    expect(
      adapterFor('anthropic.messages').checkRequest!({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 0 })
        ?.param,
    ).toBe('max_tokens');
    expect(counting.answer(42)).toEqual({ input_tokens: 42 });
  });

  it("Gemini's countTokens: on its own route, { contents } or { generateContentRequest }, answered { totalTokens }", () => {
    const gemini = adapterFor('gemini.generate');
    const counting = gemini.countTokens!;
    expect(counting.path).toBeUndefined();
    expect(counting.upstreamPath('gemini-2.5-flash')).toBe('/models/gemini-2.5-flash:countTokens');
    const contents = [{ role: 'user', parts: [{ text: 'hi' }] }];
    expect(counting.request!({ contents })).toEqual({ contents });
    const wrapped = {
      model: 'models/gemini-2.5-flash',
      contents,
      systemInstruction: { parts: [{ text: 'Be brief.' }] },
    };
    expect(counting.request!({ generateContentRequest: wrapped })).toBe(wrapped);
    expect(counting.checkRequest!({ contents })).toBeUndefined();
    expect(counting.checkRequest!({ generateContentRequest: wrapped })).toBeUndefined();
    expect(counting.checkRequest!({})?.param).toBe('contents');
    expect(counting.checkRequest!({ generateContentRequest: [] })?.param).toBe('generateContentRequest');
    expect(counting.checkRequest!({ generateContentRequest: {} })?.param).toBe('generateContentRequest.contents');
    expect(counting.answer(7)).toEqual({ totalTokens: 7 });
  });
});
