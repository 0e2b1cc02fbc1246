// The mistral.chat adapter on its own: what it reads and writes of a request, its usage (JSON and stream), the ending
// of a stream cut at its grant, its error shape, its estimate (approximate, never under the byte bound), its dialect.
import { describe, expect, it } from '@jest/globals';
import { createPricing } from '@tollgate/core';
import { adapterFor, estimateRequest } from '@tollgate/providers';
import { SseDecoder } from '@tollgate/providers/sse';
import type { UsageReader } from '@tollgate/providers';

type Json = Record<string, unknown>;

const mistral = adapterFor('mistral.chat');
const pricing = createPricing();
const sse = (data: unknown) => `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;

/** A reader fed `events` (SSE text) as the meter's tap feeds it. */
function readerAfter(events: string, request?: Json): UsageReader {
  const reader = mistral.createReader({ stripAddedUsage: false, request });
  for (const block of new SseDecoder().push(Buffer.from(events)))
    if (block.hasData) reader.onEvent(block.event, block.data);
  return reader;
}

const head = { id: 'cmpl-e5cc70bb28c444948073e77776eb30ef', object: 'chat.completion.chunk', created: 1_702_256_327 };
const model = 'mistral-small-latest';
/** A Mistral stream: role, two deltas, then the finishing chunk that carries the usage, then [DONE]. */
const stream =
  sse({ ...head, model, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }) +
  sse({ ...head, model, choices: [{ index: 0, delta: { content: 'Bonjour' }, finish_reason: null }] }) +
  sse({ ...head, model, choices: [{ index: 0, delta: { content: ' le monde' }, finish_reason: null }] }) +
  sse({
    ...head,
    model,
    choices: [{ index: 0, delta: { content: '' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 10, total_tokens: 14, completion_tokens: 4 },
  }) +
  sse('[DONE]');

describe('mistral.chat: its declaration', () => {
  it('is provider mistral, in the chat family, served at /mistral/v1/chat/completions, reached with a bearer key', () => {
    expect(mistral).toMatchObject({
      api: 'mistral.chat',
      provider: 'mistral',
      label: 'Mistral',
      family: 'chat',
      streamUsage: 'always',
      route: { path: '/mistral/v1/chat/completions' },
      genAi: { operation: 'chat', provider: 'mistral_ai' },
    });
    expect(mistral.upstream).toMatchObject({
      kind: 'mistral',
      baseUrl: 'https://api.mistral.ai/v1',
      keyEnv: 'MISTRAL_API_KEY',
      path: '/chat/completions',
      modelsPath: '/models',
    });
    expect(mistral.upstream!.authHeaders('k-1')).toEqual({ authorization: 'Bearer k-1' });
  });

  it('its catalogue rows are Mistral models, dated ids and -latest resolving to them, counted by approximation', () => {
    for (const id of ['mistral-large-latest', 'mistral-large-2411', 'codestral-latest', 'open-mistral-nemo-2407']) {
      const price = pricing.get(id);
      expect(price.provider).toBe('mistral');
      expect(price.tokenizer).toBe('approximate');
      expect(price.ownTokenizer).toBe(false);
    }
    // $2 in, $6 out per 1M tokens (micro-USD per 1M tokens).
    expect(pricing.get('mistral-large-latest')).toMatchObject({ inputMicro: 2_000_000, outputMicro: 6_000_000 });
    expect(pricing.get('ministral-3b-latest')).toMatchObject({ inputMicro: 40_000, outputMicro: 40_000 });
  });
});

describe('mistral.chat: the request', () => {
  it('reads model, cap (max_tokens), stream and n', () => {
    expect(
      mistral.read({
        body: { model, max_tokens: 300, stream: true, n: 2, messages: [{ role: 'user', content: 'x' }] },
      }),
    ).toEqual({ model, outputCap: 300, stream: true, choices: 2 });
    // `max_completion_tokens` is no Mistral field: it bounds nothing Mistral reads.
    expect(mistral.read({ body: { model, max_completion_tokens: 50 } })).toEqual({
      model,
      outputCap: undefined,
      stream: false,
      choices: 1,
    });
  });

  it('writes the cap into max_tokens only, never raising what the client asked', () => {
    const none: Json = { model };
    mistral.writeOutputCap(none, 64);
    expect(none).toEqual({ model, max_tokens: 64 });
    const lower: Json = { model, max_tokens: 10 };
    mistral.writeOutputCap(lower, 64);
    expect(lower.max_tokens).toBe(10);
    const higher: Json = { model, max_tokens: 1000 };
    mistral.writeOutputCap(higher, 64);
    expect(higher.max_tokens).toBe(64);
    const model2: Json = { model };
    mistral.writeModel(model2, 'mistral-medium-latest');
    expect(model2.model).toBe('mistral-medium-latest');
  });

  it('asks for no stream usage: Mistral refuses stream_options, and sends the usage unasked', () => {
    const body: Json = { model, stream: true, messages: [] };
    expect(mistral.requestStreamUsage(body)).toBe(false);
    expect(body).toEqual({ model, stream: true, messages: [] });
  });

  it('checks a body as Mistral would refuse it', () => {
    expect(mistral.checkRequest!({ model, messages: [] })).toEqual({
      param: 'messages',
      message: 'messages must be a non-empty array.',
    });
    expect(mistral.checkRequest!({ model, messages: [{ role: 'user', content: 'x' }], max_tokens: 0 })).toMatchObject({
      param: 'max_tokens',
    });
    expect(mistral.checkRequest!({ model, messages: [{ role: 'user', content: 'x' }], max_tokens: 5 })).toBeUndefined();
  });
});

describe('mistral.chat: usage', () => {
  it('from a JSON answer', () => {
    const answer = {
      id: 'cmpl-1',
      object: 'chat.completion',
      created: 1,
      model: 'mistral-small-2506',
      choices: [
        { index: 0, message: { role: 'assistant', content: 'Bonjour', tool_calls: null }, finish_reason: 'stop' },
      ],
      usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
    };
    expect(mistral.readUsage(answer)).toEqual({
      inputTokens: 9,
      cachedInputTokens: 0,
      cacheWriteTokens: 0,
      outputTokens: 3,
      reasoningTokens: 0,
      model: 'mistral-small-2506',
    });
    const reader = mistral.createReader();
    reader.onJson(answer);
    expect(reader.model).toBe('mistral-small-2506');
    expect(reader.result((text) => text.length)).toEqual({
      usage: { inputTokens: 9, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 3, reasoningTokens: 0 },
      source: 'provider',
    });
  });

  it("from a stream's finishing chunk, which carries choices and the usage together (nothing stripped)", () => {
    const reader = mistral.createReader({ stripAddedUsage: false });
    const stripped: boolean[] = [];
    for (const block of new SseDecoder().push(Buffer.from(stream)))
      if (block.hasData) stripped.push(reader.onEvent(block.event, block.data));
    expect(stripped.every((strip) => !strip)).toBe(true);
    expect(reader.model).toBe(model);
    expect(reader.result((text) => text.length)).toEqual({
      usage: { inputTokens: 10, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 4, reasoningTokens: 0 },
      source: 'provider',
    });
  });

  it('counted from the output that passed when a stream is cut before its usage', () => {
    const cut = stream.slice(0, stream.indexOf('"finish_reason":"stop"'));
    const reader = readerAfter(cut.slice(0, cut.lastIndexOf('data: ')));
    expect(reader.result((text) => text.length)).toEqual({
      usage: {
        inputTokens: 0,
        cachedInputTokens: 0,
        cacheWriteTokens: 0,
        outputTokens: 'Bonjour le monde'.length,
        reasoningTokens: 0,
      },
      source: 'counted',
    });
  });
});

describe('mistral.chat: the ending of a stream cut at its grant', () => {
  it("one finishing chunk with finish_reason length and the usage (as Mistral ends), in the stream's id and model, then [DONE]", () => {
    const started = stream.slice(0, stream.indexOf('data: {', stream.indexOf(' le monde')));
    const ending = readerAfter(started, { model, stream: true }).ending({ inputTokens: 10, outputTokens: 120 });
    const blocks = new SseDecoder().push(Buffer.from(ending));
    expect(blocks.map((block) => block.data)).toHaveLength(2);
    expect(JSON.parse(blocks[0]!.data)).toEqual({
      ...head,
      model,
      choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'length' }],
      usage: { prompt_tokens: 10, completion_tokens: 120, total_tokens: 130 },
    });
    expect(blocks[1]!.data).toBe('[DONE]');
  });

  it('ends every choice still open (n > 1) in the one chunk', () => {
    const two =
      sse({ ...head, model, choices: [{ index: 0, delta: { content: 'a' }, finish_reason: null }] }) +
      sse({ ...head, model, choices: [{ index: 1, delta: { content: 'b' }, finish_reason: 'stop' }] }) +
      sse({ ...head, model, choices: [{ index: 2, delta: { content: 'c' }, finish_reason: null }] });
    const [finish] = new SseDecoder().push(Buffer.from(readerAfter(two).ending({ inputTokens: 1, outputTokens: 2 })));
    expect((JSON.parse(finish!.data) as { choices: { index: number }[] }).choices.map((c) => c.index)).toEqual([0, 2]);
  });
});

describe('mistral.chat: errors', () => {
  it("writes Mistral's error shape", () => {
    expect(
      mistral.errorBody!({
        status: 400,
        message: 'bad',
        type: 'invalid_request_error',
        code: 'invalid_request',
        param: null,
      }),
    ).toEqual({ object: 'error', message: 'bad', type: 'invalid_request_error', param: null, code: 'invalid_request' });
  });

  it('reads what an error answer says, a 422 detail list included', () => {
    expect(
      mistral.errorMessage!(
        JSON.stringify({
          object: 'error',
          message: 'Invalid model: x',
          type: 'invalid_model',
          param: null,
          code: '1500',
        }),
      ),
    ).toBe('Invalid model: x');
    const unprocessable = {
      object: 'error',
      message: {
        detail: [
          {
            type: 'extra_forbidden',
            loc: ['body', 'stream_options'],
            msg: 'Extra inputs are not permitted',
            input: {},
          },
        ],
      },
      type: 'invalid_request_error',
      param: null,
      code: null,
    };
    expect(mistral.errorMessage!(unprocessable)).toBe('body.stream_options: Extra inputs are not permitted');
    expect(mistral.errorMessage!('not json')).toBeUndefined();
  });
});

describe('mistral.chat: the estimate', () => {
  const body = {
    model: 'mistral-large-latest',
    max_tokens: 100,
    messages: [
      { role: 'system', content: 'You answer in French.' },
      { role: 'user', content: 'Tell me about the history of the Eiffel tower, in three sentences.' },
    ],
  };

  it('approximates the input (no exact tokenizer) and bounds it by its bytes; the cost is the bound at its prices', () => {
    const estimate = estimateRequest({ api: 'mistral.chat', body, pricing });
    expect(estimate).toMatchObject({ provider: 'mistral', api: 'mistral.chat', method: 'approximate', exact: false });
    expect(estimate.maxOutputTokens).toBe(100);
    const textBytes = Buffer.byteLength(
      body.messages.map((message) => message.role + message.content).join(''),
      'utf8',
    );
    // A token covers at least a byte: the bound is never under the text's bytes, whatever Mistral's tokenizer does.
    expect(estimate.bound).toBeGreaterThanOrEqual(textBytes);
    expect(estimate.inputTokensBound).toBeGreaterThanOrEqual(estimate.inputTokens);
    // $2 in, $6 out per 1M: 2,000 and 6,000 nano-USD a token.
    expect(estimate.costNanoUsd).toBe(estimate.inputTokens * 2000 + 100 * 6000);
  });

  it('without a cap, reserves the whole context window Mistral documents as the output bound', () => {
    const { max_tokens: _cap, ...uncapped } = body;
    expect(estimateRequest({ api: 'mistral.chat', body: uncapped, pricing }).maxOutputTokens).toBe(131_072);
  });

  it('a document by URL is input the body does not hold: the bound opens up to the context window', () => {
    const withDocument = {
      ...body,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Summarise this' },
            { type: 'document_url', document_url: 'https://example.com/report.pdf' },
          ],
        },
      ],
    };
    const estimate = estimateRequest({ api: 'mistral.chat', body: withDocument, pricing });
    expect(estimate.bound).toBe(Infinity);
    expect(estimate.inputTokensBound).toBe(131_072);
  });
});

describe('mistral.chat: its dialect of the chat family', () => {
  it('from the neutral form: the cap in max_tokens, seed as random_seed, fields without effect dropped', () => {
    expect(
      mistral.fromChat!({
        model,
        messages: [],
        max_completion_tokens: 50,
        seed: 7,
        user: 'u-1',
        stream: true,
        stream_options: { include_usage: true },
      }),
    ).toEqual({ model, messages: [], max_tokens: 50, random_seed: 7, stream: true });
  });

  it('refuses a field Mistral has no equivalent for (it would answer 422)', () => {
    expect(mistral.fromChat!({ model, messages: [], logit_bias: { '1': 2 } })).toEqual({
      refused: 'the chat field "logit_bias" has no Mistral equivalent',
    });
  });

  it('to the neutral form: random_seed as seed; safe_prompt only when off', () => {
    expect(mistral.toChat!({ model, messages: [], random_seed: 3, safe_prompt: false })).toEqual({
      model,
      messages: [],
      seed: 3,
    });
    expect(mistral.toChat!({ model, messages: [], safe_prompt: true })).toEqual({
      refused: 'the Mistral field "safe_prompt" has no chat equivalent',
    });
  });
});
