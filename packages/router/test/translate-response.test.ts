// Whole JSON answers and error answers translated into the client's API.
import { describe, expect, it } from '@jest/globals';
import { anthropicMessages, openAiChat } from '@tollgate/providers';
import { createStreamTranslator, translateError, translateResponse } from '../src/translate/index.js';
import { fixtureJson } from './translate-helpers.js';

describe('JSON answers', () => {
  it('writes an Anthropic message as a chat.completion: text, tool calls with their ids, finish reason, usage with cache tokens', () => {
    const completion = translateResponse(
      fixtureJson('anthropic-tool-message.json'),
      'anthropic.messages',
      'openai.chat',
      'smart',
    );
    expect(completion).toEqual({
      id: 'msg_01Aq9w938a90dw8q',
      object: 'chat.completion',
      created: expect.any(Number),
      model: 'smart',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: "I'll check the current weather in San Francisco for you.",
            refusal: null,
            annotations: [],
            tool_calls: [
              {
                id: 'toolu_01A09q90qw90lq917835lq9',
                type: 'function',
                function: { name: 'get_weather', arguments: '{"location":"San Francisco, CA","unit":"celsius"}' },
              },
            ],
          },
          logprobs: null,
          finish_reason: 'tool_calls',
        },
      ],
      usage: {
        prompt_tokens: 385 + 2048 + 4096,
        completion_tokens: 74,
        total_tokens: 385 + 2048 + 4096 + 74,
        prompt_tokens_details: { cached_tokens: 4096, audio_tokens: 0 },
        completion_tokens_details: {
          reasoning_tokens: 0,
          audio_tokens: 0,
          accepted_prediction_tokens: 0,
          rejected_prediction_tokens: 0,
        },
      },
    });
  });

  it('writes a chat.completion as an Anthropic message: input without cached tokens, cache reads apart', () => {
    const original = fixtureJson('openai-tool-completion.json');
    const message = translateResponse(original, 'openai.chat', 'anthropic.messages', 'smart');
    expect(message).toEqual({
      id: 'chatcmpl-CX7def456',
      type: 'message',
      role: 'assistant',
      model: 'smart',
      content: [
        { type: 'text', text: 'Checking the weather in Paris.' },
        {
          type: 'tool_use',
          id: 'call_62136354',
          name: 'get_weather',
          input: { location: 'Paris, France', unit: 'celsius' },
        },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: {
        input_tokens: 2210 - 1920,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 1920,
        output_tokens: 41,
      },
    });
    // The Anthropic adapter reads from the translation exactly what the OpenAI adapter reads from the original, but
    // the service tier: OpenAI's tiers (default, flex, priority) are not Anthropic's, so the translation names none.
    const { model: _translatedModel, ...translatedUsage } = anthropicMessages.readUsage(message)!;
    const { model: _originalModel, serviceTier, ...originalUsage } = openAiChat.readUsage(original)!;
    expect(serviceTier).toBe('default');
    expect(translatedUsage).toEqual(originalUsage);
  });

  it('writes an Anthropic message as a Responses object: message and function_call items, usage', () => {
    const response = translateResponse(
      fixtureJson('anthropic-tool-message.json'),
      'anthropic.messages',
      'openai.responses',
      'smart',
    );
    expect(response).toEqual({
      id: 'resp_msg_01Aq9w938a90dw8q',
      object: 'response',
      created_at: expect.any(Number),
      status: 'completed',
      error: null,
      incomplete_details: null,
      model: 'smart',
      output: [
        {
          type: 'message',
          id: 'msg_01Aq9w938a90dw8q_1',
          status: 'completed',
          role: 'assistant',
          content: [
            {
              type: 'output_text',
              text: "I'll check the current weather in San Francisco for you.",
              annotations: [],
              logprobs: [],
            },
          ],
        },
        {
          type: 'function_call',
          id: 'fc_toolu_01A09q90qw90lq917835lq9',
          call_id: 'toolu_01A09q90qw90lq917835lq9',
          name: 'get_weather',
          arguments: '{"location":"San Francisco, CA","unit":"celsius"}',
          status: 'completed',
        },
      ],
      parallel_tool_calls: true,
      tool_choice: 'auto',
      tools: [],
      usage: {
        input_tokens: 6529,
        input_tokens_details: { cached_tokens: 4096 },
        output_tokens: 74,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 6603,
      },
      metadata: {},
    });
  });

  it.each([
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['max_tokens', 'length'],
    ['tool_use', 'tool_calls'],
    ['refusal', 'content_filter'],
  ])('maps the stop reason %s to %s', (stopReason, finishReason) => {
    const message = {
      id: 'msg_1',
      content: [{ type: 'text', text: 'Hi' }],
      stop_reason: stopReason,
      usage: { input_tokens: 1, output_tokens: 1 },
    };
    const completion = translateResponse(message, 'anthropic.messages', 'openai.chat', 'smart') as {
      choices: Array<{ finish_reason: string }>;
    };
    expect(completion.choices[0]!.finish_reason).toBe(finishReason);
  });

  it.each([
    ['stop', 'end_turn'],
    ['length', 'max_tokens'],
    ['tool_calls', 'tool_use'],
    ['content_filter', 'refusal'],
  ])('maps the finish reason %s to %s', (finishReason, stopReason) => {
    const completion = {
      id: 'c',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hi' }, finish_reason: finishReason }],
      usage: { prompt_tokens: 3, completion_tokens: 1 },
    };
    expect(translateResponse(completion, 'openai.chat', 'anthropic.messages', 'smart').stop_reason).toBe(stopReason);
  });

  it('returns same-shaped answers as they are and throws a documented error for pairs it cannot translate', () => {
    const completion = fixtureJson('openai-tool-completion.json');
    expect(translateResponse(completion, 'openai.compatible', 'openai.chat', 'smart')).toBe(completion);
    expect(() => translateResponse(completion, 'gemini.generate', 'openai.chat', 'smart')).toThrow(
      expect.objectContaining({ code: 'ERR_TG_ROUTER_NO_TRANSLATION' }),
    );
    expect(() => createStreamTranslator('openai.responses', 'anthropic.messages', 'smart')).toThrow(
      expect.objectContaining({ code: 'ERR_TG_ROUTER_NO_TRANSLATION' }),
    );
  });
});

describe('error answers', () => {
  const anthropicRateLimit = {
    type: 'error',
    error: { type: 'rate_limit_error', message: 'Number of request tokens has exceeded your per-minute rate limit' },
  };
  const openAiBadRequest = {
    error: {
      message: "Invalid 'messages[1].content': string too long.",
      type: 'invalid_request_error',
      param: 'messages',
      code: 'string_above_max_length',
    },
  };

  it('gives an OpenAI client an Anthropic 4xx in the OpenAI shape, status kept', () => {
    expect(translateError(429, anthropicRateLimit, 'anthropic.messages', 'openai.chat')).toEqual({
      status: 429,
      body: {
        error: {
          message:
            'The Anthropic upstream refused the translated request (HTTP 429): Number of request tokens has exceeded your per-minute rate limit',
          type: 'requests',
          code: 'rate_limit_exceeded',
          param: null,
        },
      },
    });
    expect(translateError(400, JSON.stringify(openAiBadRequest), 'openai.chat', 'anthropic.messages')).toEqual({
      status: 400,
      body: {
        type: 'error',
        error: {
          type: 'invalid_request_error',
          message:
            "The OpenAI upstream refused the translated request (HTTP 400): Invalid 'messages[1].content': string too long.",
        },
      },
    });
  });

  it('turns upstream failures and credential refusals into a 502 that repeats none of the upstream words', () => {
    const overloaded = translateError(
      529,
      { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } },
      'anthropic.messages',
      'openai.chat',
    );
    expect(overloaded).toEqual({
      status: 502,
      body: {
        error: {
          message: 'The Anthropic upstream failed (HTTP 529).',
          type: 'server_error',
          code: 'upstream_error',
          param: null,
        },
      },
    });
    const credentials = translateError(
      401,
      { error: { message: 'Incorrect API key provided: sk-proj-****abcd' } },
      'openai.chat',
      'anthropic.messages',
    );
    expect(credentials).toEqual({
      status: 502,
      body: {
        type: 'error',
        error: { type: 'api_error', message: "The OpenAI upstream refused the gateway's credentials (HTTP 401)." },
      },
    });
    expect(JSON.stringify(credentials)).not.toContain('sk-proj');
  });
});
