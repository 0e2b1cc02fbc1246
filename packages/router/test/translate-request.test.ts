// Requests translated between OpenAI chat and Anthropic Messages: what maps, and what a target is skipped for.
import { describe, expect, it } from '@jest/globals';
import { modelMaxOutputTokens } from '@tollgate/providers';
import { canTranslate, translateRequest } from '../src/translate/index.js';

const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  },
};

function translated(result: ReturnType<typeof translateRequest>): Record<string, unknown> {
  if (!result.ok) throw new Error(`expected a translation, got the refusal: ${result.reason}`);
  return result.body;
}

describe('OpenAI chat request to Anthropic Messages', () => {
  it('maps a tool conversation: system prompts lifted, tool calls and results with their ids, parameters', () => {
    const body = {
      model: 'smart',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'developer', content: [{ type: 'text', text: 'Use metric units.' }] },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather in Paris? Here is a photo.' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}`, detail: 'low' } },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } },
            { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Lyon"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '18°C, sunny' },
        { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: '21°C' }] },
        { role: 'user', content: 'And tomorrow? https://example.test/map.png' },
      ],
      temperature: 0.3,
      top_p: 0.9,
      stop: ['\n\nHuman:', 'END'],
      max_completion_tokens: 300,
      tools: [weatherTool],
      tool_choice: 'required',
      parallel_tool_calls: false,
      stream: true,
      stream_options: { include_usage: true },
      user: 'user-42',
      seed: 7,
    };
    const before = JSON.stringify(body);
    const request = translated(translateRequest(body, 'openai.chat', 'anthropic.messages', 'claude-sonnet-4-5'));
    expect(JSON.stringify(body)).toBe(before);
    expect(request).toEqual({
      model: 'claude-sonnet-4-5',
      max_tokens: 300,
      system: [
        { type: 'text', text: 'You are terse.' },
        { type: 'text', text: 'Use metric units.' },
      ],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather in Paris? Here is a photo.' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'tool_use', id: 'call_1', name: 'get_weather', input: { location: 'Paris' } },
            { type: 'tool_use', id: 'call_2', name: 'get_weather', input: { location: 'Lyon' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'call_1', content: '18°C, sunny' },
            { type: 'tool_result', tool_use_id: 'call_2', content: '21°C' },
            { type: 'text', text: 'And tomorrow? https://example.test/map.png' },
          ],
        },
      ],
      temperature: 0.3,
      top_p: 0.9,
      stop_sequences: ['\n\nHuman:', 'END'],
      tools: [
        {
          name: 'get_weather',
          description: 'Current weather for a city',
          input_schema: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
        },
      ],
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
      metadata: { user_id: 'user-42' },
      stream: true,
    });
  });

  it('takes max_tokens when max_completion_tokens is absent, and the target model limit when both are', () => {
    const messages = [{ role: 'user', content: 'Hi' }];
    expect(
      translated(
        translateRequest(
          { model: 'm', messages, max_tokens: 64, stop: 'STOP' },
          'openai.chat',
          'anthropic.messages',
          'claude-haiku-4-5',
        ),
      ),
    ).toEqual({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }],
      stop_sequences: ['STOP'],
    });
    const uncapped = translated(
      translateRequest({ model: 'm', messages }, 'openai.chat', 'anthropic.messages', 'claude-sonnet-4-5'),
    );
    expect(uncapped.max_tokens).toBe(modelMaxOutputTokens('claude-sonnet-4-5'));
    expect(uncapped.max_tokens).toBeGreaterThan(1000);
  });

  it('maps image URLs, named tool choices and plain string tool arguments', () => {
    const request = translated(
      translateRequest(
        {
          model: 'm',
          messages: [
            {
              role: 'user',
              content: [{ type: 'image_url', image_url: { url: 'https://images.example.test/cat.jpg' } }],
            },
          ],
          tools: [weatherTool],
          tool_choice: { type: 'function', function: { name: 'get_weather' } },
        },
        'openai.chat',
        'anthropic.messages',
        'claude-sonnet-4-5',
      ),
    );
    expect(request.messages).toEqual([
      {
        role: 'user',
        content: [{ type: 'image', source: { type: 'url', url: 'https://images.example.test/cat.jpg' } }],
      },
    ]);
    expect(request.tool_choice).toEqual({ type: 'tool', name: 'get_weather' });
  });

  it.each([
    [{ n: 2 }, 'several choices'],
    [{ logprobs: true }, 'log probabilities'],
    [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } } }, 'response_format'],
    [{ response_format: { type: 'json_object' } }, 'response_format'],
    [{ audio: { voice: 'alloy', format: 'wav' }, modalities: ['text', 'audio'] }, 'audio'],
    [{ temperature: 1.5 }, 'temperature between 0 and 1'],
    [{ frequency_penalty: 0.5 }, 'frequency_penalty'],
    [{ some_future_field: true }, '"some_future_field"'],
    [
      {
        messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] }],
      },
      '"input_audio" content part',
    ],
    [
      {
        messages: [
          { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/bmp;base64,Qk0=' } }] },
        ],
      },
      'image/bmp',
    ],
    [
      {
        messages: [
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '[1]' } }],
          },
        ],
      },
      'not a JSON object',
    ],
    [{ tools: [{ type: 'custom', custom: { name: 'grammar' } }] }, 'function tools only'],
  ])('refuses %j (the target is skipped)', (extra, reason) => {
    const body = { model: 'm', messages: [{ role: 'user', content: 'Hi' }], ...extra };
    const result = translateRequest(body, 'openai.chat', 'anthropic.messages', 'claude-sonnet-4-5');
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });

  it('accepts the default values of fields it cannot express', () => {
    const body = {
      model: 'm',
      messages: [{ role: 'user', content: 'Hi' }],
      n: 1,
      logprobs: false,
      frequency_penalty: 0,
      response_format: { type: 'text' },
      modalities: ['text'],
    };
    expect(translateRequest(body, 'openai.chat', 'anthropic.messages', 'claude-sonnet-4-5').ok).toBe(true);
  });
});

describe('Anthropic Messages request to OpenAI chat', () => {
  it('maps a tool conversation: system first, tool results as tool messages before the user text, usage asked for in streams', () => {
    const body = {
      model: 'smart',
      system: [
        { type: 'text', text: 'You are terse.', cache_control: { type: 'ephemeral' } },
        { type: 'text', text: 'Use metric units.' },
      ],
      max_tokens: 512,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather here?' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'Call the tool.', signature: 'sig' },
            { type: 'text', text: 'Checking.' },
            { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { location: 'Paris' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: '18°C' }] },
            { type: 'text', text: 'Thanks! And Lyon?' },
          ],
        },
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 'toolu_2', name: 'get_weather', input: { location: 'Lyon' } }],
        },
        {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: 'toolu_2', content: 'station offline', is_error: true }],
        },
      ],
      temperature: 0.2,
      top_p: 0.95,
      stop_sequences: ['END'],
      tools: [
        {
          name: 'get_weather',
          description: 'Current weather',
          input_schema: { type: 'object', properties: { location: { type: 'string' } } },
        },
      ],
      tool_choice: { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true },
      metadata: { user_id: 'user-42' },
      stream: true,
    };
    const request = translated(translateRequest(body, 'anthropic.messages', 'openai.chat', 'gpt-4o'));
    expect(request).toEqual({
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'You are terse.\n\nUse metric units.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather here?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
          ],
        },
        {
          role: 'assistant',
          content: 'Checking.',
          tool_calls: [
            { type: 'function', id: 'toolu_1', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_1', content: '18°C' },
        { role: 'user', content: 'Thanks! And Lyon?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { type: 'function', id: 'toolu_2', function: { name: 'get_weather', arguments: '{"location":"Lyon"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_2', content: 'Error: station offline' },
      ],
      max_completion_tokens: 512,
      temperature: 0.2,
      top_p: 0.95,
      stop: ['END'],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Current weather',
            parameters: { type: 'object', properties: { location: { type: 'string' } } },
          },
        },
      ],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
      user: 'user-42',
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('writes max_tokens and keeps top_k for OpenAI-compatible servers', () => {
    const body = { model: 'm', max_tokens: 100, top_k: 40, messages: [{ role: 'user', content: 'Hi' }] };
    expect(translated(translateRequest(body, 'anthropic.messages', 'openai.compatible', 'llama-3.1-8b'))).toEqual({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 100,
      top_k: 40,
    });
  });

  it.each([
    [{ top_k: 40 }, 'top_k'],
    [{ thinking: { type: 'enabled', budget_tokens: 2000 } }, '"thinking"'],
    [{ stop_sequences: ['a', 'b', 'c', 'd', 'e'] }, 'at most 4 stop sequences'],
    [{ tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, 'server tools'],
    [
      {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
            ],
          },
        ],
      },
      '"document" block',
    ],
    [
      {
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'tool_result',
                tool_use_id: 't',
                content: [{ type: 'image', source: { type: 'url', url: 'https://x.test/a.png' } }],
              },
            ],
          },
        ],
      },
      'text only',
    ],
  ])('refuses %j (the target is skipped)', (extra, reason) => {
    const body = { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'Hi' }], ...extra };
    const result = translateRequest(body, 'anthropic.messages', 'openai.chat', 'gpt-4o');
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });
});

describe('OpenAI Responses request to Anthropic Messages', () => {
  it('maps instructions, input items (messages, function calls and their outputs), tools and the output cap', () => {
    const body = {
      model: 'smart',
      instructions: 'Be brief.',
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'Weather in Paris?' },
            { type: 'input_image', image_url: 'https://images.example.test/paris.jpg', detail: 'auto' },
          ],
        },
        { type: 'reasoning', id: 'rs_1', summary: [], encrypted_content: 'gAAAA' },
        {
          type: 'function_call',
          id: 'fc_1',
          call_id: 'call_1',
          name: 'get_weather',
          arguments: '{"location":"Paris"}',
        },
        { type: 'function_call_output', call_id: 'call_1', output: '18°C' },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'It is 18°C.' }] },
        { role: 'user', content: 'Thanks' },
      ],
      max_output_tokens: 256,
      temperature: 0.5,
      tools: [
        {
          type: 'function',
          name: 'get_weather',
          description: 'Current weather',
          parameters: { type: 'object', properties: {} },
          strict: true,
        },
      ],
      tool_choice: { type: 'function', name: 'get_weather' },
      text: { format: { type: 'text' } },
      store: false,
      stream: true,
    };
    expect(translated(translateRequest(body, 'openai.responses', 'anthropic.messages', 'claude-sonnet-4-5'))).toEqual({
      model: 'claude-sonnet-4-5',
      max_tokens: 256,
      system: 'Be brief.',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather in Paris?' },
            { type: 'image', source: { type: 'url', url: 'https://images.example.test/paris.jpg' } },
          ],
        },
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 'call_1', name: 'get_weather', input: { location: 'Paris' } }],
        },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_1', content: '18°C' }] },
        { role: 'assistant', content: [{ type: 'text', text: 'It is 18°C.' }] },
        { role: 'user', content: [{ type: 'text', text: 'Thanks' }] },
      ],
      temperature: 0.5,
      tools: [
        { name: 'get_weather', description: 'Current weather', input_schema: { type: 'object', properties: {} } },
      ],
      tool_choice: { type: 'tool', name: 'get_weather' },
      stream: true,
    });
    expect(
      translated(
        translateRequest(
          { model: 'm', input: 'Hi', max_output_tokens: 9 },
          'openai.responses',
          'anthropic.messages',
          'claude-haiku-4-5',
        ),
      ),
    ).toEqual({
      model: 'claude-haiku-4-5',
      max_tokens: 9,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }],
    });
  });

  it.each([
    [{ previous_response_id: 'resp_1' }, 'previous_response_id'],
    [{ reasoning: { effort: 'high' } }, '"reasoning"'],
    [{ tools: [{ type: 'web_search' }] }, 'hosted tools'],
    [{ text: { format: { type: 'json_schema', name: 'x', schema: {} } } }, 'response_format'],
    [{ input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] }] }, '"input_file" content part'],
    [{ input: [{ type: 'item_reference', id: 'msg_1' }] }, '"item_reference" input item'],
  ])('refuses %j (the target is skipped)', (extra, reason) => {
    const result = translateRequest(
      { model: 'm', input: 'Hi', ...extra },
      'openai.responses',
      'anthropic.messages',
      'claude-sonnet-4-5',
    );
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });
});

describe('pairs', () => {
  it('passes same-shaped requests with the target model and refuses pairs it has no translation for', () => {
    const body = { model: 'smart', messages: [{ role: 'user', content: 'Hi' }] };
    expect(translated(translateRequest(body, 'openai.chat', 'openai.compatible', 'llama'))).toEqual({
      ...body,
      model: 'llama',
    });
    // The cap goes in the field each side reads.
    expect(
      translated(translateRequest({ ...body, max_completion_tokens: 50 }, 'openai.chat', 'openai.compatible', 'llama')),
    ).toMatchObject({ max_tokens: 50, max_completion_tokens: 50 });
    const toOpenAi = translated(
      translateRequest({ ...body, max_tokens: 50 }, 'openai.compatible', 'openai.chat', 'o4-mini'),
    );
    expect(toOpenAi).toEqual({ ...body, model: 'o4-mini', max_completion_tokens: 50 });
    expect(canTranslate('openai.chat', 'anthropic.messages')).toBe(true);
    expect(canTranslate('gemini.generate', 'anthropic.messages')).toBe(false);
    expect(canTranslate('openai.responses', 'anthropic.messages')).toBe(true);
    expect(canTranslate('anthropic.messages', 'openai.responses')).toBe(false);
    expect(translateRequest(body, 'gemini.generate', 'openai.chat', 'gpt-4o')).toEqual({
      ok: false,
      reason: 'no translation from gemini.generate to openai.chat',
    });
  });

  it('hands back the body itself when nothing changes, and a copy (the original untouched) when the model does', () => {
    const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 20 };
    const before = JSON.stringify(body);
    expect(translated(translateRequest(body, 'openai.chat', 'openai.chat', 'gpt-4o-mini'))).toBe(body);
    const moved = translated(translateRequest(body, 'openai.chat', 'openai.chat', 'gpt-4o'));
    expect(moved).not.toBe(body);
    expect(moved).toEqual({ ...body, model: 'gpt-4o' });
    expect(JSON.stringify(body)).toBe(before);
  });
});
