// Mistral's chat API in translation: a dialect of the chat family (its adapter says so), so a model group may fall back
// openai <-> mistral <-> anthropic; the fields only Mistral or only OpenAI has are mapped, dropped or refused.
import { describe, expect, it } from '@jest/globals';
import { SseDecoder } from '@tollgate/providers/sse';
import {
  canTranslate,
  createStreamTranslator,
  translateError,
  translateRequest,
  translateResponse,
} from '../src/translate/index.js';

type Json = Record<string, unknown>;
const messages = [{ role: 'user', content: 'Bonjour' }];

function translated(
  body: Json,
  from: Parameters<typeof translateRequest>[1],
  to: Parameters<typeof translateRequest>[2],
) {
  const result = translateRequest(body, from, to, 'target-model');
  if (!result.ok) throw new Error(result.reason);
  return result.body;
}

describe('which translations exist for mistral.chat', () => {
  it('to and from every chat dialect and Anthropic Messages; Responses and Gemini stay pairwise elsewhere', () => {
    for (const other of ['openai.chat', 'openai.compatible', 'anthropic.messages'] as const) {
      expect(canTranslate('mistral.chat', other)).toBe(true);
      expect(canTranslate(other, 'mistral.chat')).toBe(true);
    }
    expect(canTranslate('openai.responses', 'mistral.chat')).toBe(false);
    expect(canTranslate('mistral.chat', 'openai.responses')).toBe(false);
    expect(canTranslate('mistral.chat', 'gemini.generate')).toBe(false);
  });
});

describe('requests', () => {
  it('OpenAI chat to Mistral: the cap in max_tokens, seed as random_seed, stream_options and user left out', () => {
    const body = {
      model: 'gpt-4o',
      messages,
      max_completion_tokens: 40,
      seed: 1,
      user: 'u-1',
      stream: true,
      stream_options: { include_usage: true },
    };
    expect(translated(body, 'openai.chat', 'mistral.chat')).toEqual({
      model: 'target-model',
      messages,
      max_tokens: 40,
      random_seed: 1,
      stream: true,
    });
    // The client's body is never changed.
    expect(body.max_completion_tokens).toBe(40);
  });

  it('OpenAI chat to Mistral: a field Mistral has no equivalent for skips the target', () => {
    const result = translateRequest(
      { model: 'gpt-4o', messages, logprobs: true },
      'openai.chat',
      'mistral.chat',
      'mistral-large-latest',
    );
    expect(result).toEqual({ ok: false, reason: 'the chat field "logprobs" has no Mistral equivalent' });
  });

  it('Mistral to OpenAI chat: random_seed as seed, the cap in max_completion_tokens; safe_prompt on cannot go', () => {
    expect(
      translated(
        { model: 'mistral-small-latest', messages, max_tokens: 30, random_seed: 9 },
        'mistral.chat',
        'openai.chat',
      ),
    ).toEqual({ model: 'target-model', messages, max_completion_tokens: 30, seed: 9 });
    expect(
      translated({ model: 'mistral-small-latest', messages, max_tokens: 30 }, 'mistral.chat', 'openai.compatible'),
    ).toEqual({ model: 'target-model', messages, max_tokens: 30 });
    expect(
      translateRequest({ model: 'm', messages, safe_prompt: true }, 'mistral.chat', 'openai.chat', 'gpt-4o'),
    ).toEqual({ ok: false, reason: 'the Mistral field "safe_prompt" has no chat equivalent' });
  });

  it('Mistral to Mistral for another model: only the model changes', () => {
    const body = { model: 'mistral-small-latest', messages, random_seed: 2, safe_prompt: true };
    expect(translated(body, 'mistral.chat', 'mistral.chat')).toEqual({ ...body, model: 'target-model' });
  });

  it('Anthropic Messages to Mistral: max_tokens, no stream_options (its streams carry usage unasked)', () => {
    expect(
      translated(
        { model: 'claude-haiku-4-5', max_tokens: 64, system: 'Be brief.', messages, stream: true },
        'anthropic.messages',
        'mistral.chat',
      ),
    ).toEqual({
      model: 'target-model',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Bonjour' },
      ],
      max_tokens: 64,
      stream: true,
    });
    const topK = translateRequest(
      { model: 'claude-haiku-4-5', max_tokens: 64, messages, top_k: 5 },
      'anthropic.messages',
      'mistral.chat',
      'mistral-large-latest',
    );
    expect(topK).toEqual({ ok: false, reason: 'the chat field "top_k" has no Mistral equivalent' });
  });

  it('Mistral to Anthropic Messages: through the neutral form (random_seed has no Messages field and is dropped)', () => {
    const body = translated(
      { model: 'mistral-small-latest', max_tokens: 50, messages, random_seed: 4 },
      'mistral.chat',
      'anthropic.messages',
    );
    expect(body).toMatchObject({ model: 'target-model', max_tokens: 50, messages: [{ role: 'user' }] });
    expect(body).not.toHaveProperty('seed');
    expect(body).not.toHaveProperty('random_seed');
  });
});

describe('answers, streams and errors', () => {
  it("an Anthropic message as a Mistral client's chat completion", () => {
    const answer = translateResponse(
      {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-haiku-4-5',
        content: [{ type: 'text', text: 'Salut' }],
        stop_reason: 'max_tokens',
        stop_sequence: null,
        usage: { input_tokens: 5, output_tokens: 2 },
      },
      'anthropic.messages',
      'mistral.chat',
      'mistral-small-latest',
    );
    expect(answer).toMatchObject({
      object: 'chat.completion',
      model: 'mistral-small-latest',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Salut' }, finish_reason: 'length' }],
      usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
    });
  });

  it("a Mistral stream (usage on its finishing chunk) as an Anthropic client's events", () => {
    const head = { id: 'cmpl-1', object: 'chat.completion.chunk', created: 1, model: 'mistral-small-latest' };
    const upstream = [
      { ...head, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] },
      { ...head, choices: [{ index: 0, delta: { content: 'Salut' }, finish_reason: null }] },
      {
        ...head,
        choices: [{ index: 0, delta: { content: '' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 6, completion_tokens: 2, total_tokens: 8 },
      },
    ]
      .map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`)
      .join('');
    const translator = createStreamTranslator('mistral.chat', 'anthropic.messages', 'claude-haiku-4-5');
    const out = translator.push(upstream) + translator.push('data: [DONE]\n\n') + translator.end();
    const events = new SseDecoder().push(Buffer.from(out)).map((block) => block.event);
    expect(events[0]).toBe('message_start');
    expect(events.at(-1)).toBe('message_stop');
    const delta = new SseDecoder().push(Buffer.from(out)).find((block) => block.event === 'message_delta')!;
    expect(JSON.parse(delta.data)).toMatchObject({ delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 2 } });
  });

  it("a Mistral 422 as an OpenAI client's error, its detail list read", () => {
    const body = JSON.stringify({
      object: 'error',
      message: { detail: [{ type: 'extra_forbidden', loc: ['body', 'foo'], msg: 'Extra inputs are not permitted' }] },
      type: 'invalid_request_error',
      param: null,
      code: null,
    });
    expect(translateError(422, body, 'mistral.chat', 'openai.chat')).toEqual({
      status: 422,
      body: {
        error: {
          message:
            'The Mistral upstream refused the translated request (HTTP 422): body.foo: Extra inputs are not permitted',
          type: 'invalid_request_error',
          code: 'invalid_request',
          param: null,
        },
      },
    });
  });

  it("an Anthropic error as a Mistral client's error, in Mistral's shape", () => {
    const anthropic = { type: 'error', error: { type: 'rate_limit_error', message: 'Slow down' } };
    expect(translateError(429, anthropic, 'anthropic.messages', 'mistral.chat')).toEqual({
      status: 429,
      body: {
        object: 'error',
        message: 'The Anthropic upstream refused the translated request (HTTP 429): Slow down',
        type: 'requests',
        param: null,
        code: 'rate_limit_exceeded',
      },
    });
    expect(translateError(500, anthropic, 'anthropic.messages', 'mistral.chat').body).toEqual({
      object: 'error',
      message: 'The Anthropic upstream failed (HTTP 500).',
      type: 'server_error',
      param: null,
      code: 'upstream_error',
    });
  });
});
