// The official OpenAI and Anthropic clients parse translated answers: JSON, streams (split anywhere) and errors.
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { ProviderApi } from '@tollgate/core';
import { createStreamTranslator, translateError, translateRequest, translateResponse } from '../src/translate/index.js';
import { fixtureJson, fixtureText, randomSplit, seededRandom } from './translate-helpers.js';

/** What the fake gateway answers with: an upstream answer of `target`'s API, translated for the client. */
interface Answer {
  target: ProviderApi;
  json?: Record<string, unknown>;
  sse?: string;
  error?: { status: number; body: unknown };
}

const servers: Server[] = [];
const received: Array<Record<string, unknown>> = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  received.length = 0;
});

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
}

/**
 * A tiny local server in the client's API: it translates the request it gets for the target (and
 * keeps the result for the test), then answers with the target's answer translated back, streams
 * written in random pieces with a pause between them.
 */
async function startGateway(client: ProviderApi, answer: Answer): Promise<string> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const body = await readBody(req);
      const translated = translateRequest(body, client, answer.target, 'target-model');
      if (!translated.ok) throw new Error(translated.reason);
      received.push(translated.body);
      if (answer.error) {
        const { status, body: errorBody } = translateError(
          answer.error.status,
          answer.error.body,
          answer.target,
          client,
        );
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(errorBody));
        return;
      }
      if (answer.json) {
        const json = translateResponse(answer.json, answer.target, client, String(body.model));
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(json));
        return;
      }
      const options =
        client === 'openai.chat'
          ? { includeUsage: (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true }
          : {};
      const translator = createStreamTranslator(answer.target, client, String(body.model), options);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (const piece of randomSplit(answer.sse!, seededRandom(7), 25)) {
        const out = translator.push(piece);
        if (out !== '') res.write(out);
        await new Promise((resolve) => setImmediate(resolve));
      }
      res.end(translator.end());
    })().catch((error: unknown) => res.writeHead(500).end(String(error)));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const weatherTool: OpenAI.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  },
};

describe('an OpenAI client served by an Anthropic target', () => {
  const ask: OpenAI.ChatCompletionCreateParamsNonStreaming = {
    model: 'smart',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Weather in San Francisco?' },
    ],
    tools: [weatherTool],
    max_tokens: 200,
  };
  const askStream: OpenAI.ChatCompletionCreateParamsStreaming = {
    ...ask,
    stream: true,
    stream_options: { include_usage: true },
  };

  it('parses a JSON answer with a tool call, finish reason and usage', async () => {
    const url = await startGateway('openai.chat', {
      target: 'anthropic.messages',
      json: fixtureJson('anthropic-tool-message.json'),
    });
    const openai = new OpenAI({ apiKey: 'test', baseURL: `${url}/v1`, maxRetries: 0 });
    const completion = await openai.chat.completions.create(ask);
    expect(received[0]).toMatchObject({
      model: 'target-model',
      system: 'Be brief.',
      max_tokens: 200,
      tools: [{ name: 'get_weather' }],
    });
    expect(completion.model).toBe('smart');
    const choice = completion.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBe("I'll check the current weather in San Francisco for you.");
    const call = choice.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.id).toBe('toolu_01A09q90qw90lq917835lq9');
    expect(JSON.parse(call.function.arguments)).toEqual({ location: 'San Francisco, CA', unit: 'celsius' });
    expect(completion.usage).toMatchObject({
      prompt_tokens: 6529,
      completion_tokens: 74,
      total_tokens: 6603,
      prompt_tokens_details: { cached_tokens: 4096 },
    });
  });

  it('parses a stream with text, tool call argument deltas, finish reason and the usage chunk', async () => {
    const url = await startGateway('openai.chat', {
      target: 'anthropic.messages',
      sse: fixtureText('anthropic-tool-stream.sse'),
    });
    const openai = new OpenAI({ apiKey: 'test', baseURL: `${url}/v1`, maxRetries: 0 });
    const stream = await openai.chat.completions.create(askStream);
    let text = '';
    const calls = new Map<number, { id?: string; name?: string; arguments: string }>();
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      expect(chunk.model).toBe('smart');
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices[0];
      if (!choice) continue;
      text += choice.delta.content ?? '';
      for (const delta of choice.delta.tool_calls ?? []) {
        const call = calls.get(delta.index) ?? { arguments: '' };
        call.id ??= delta.id;
        call.name ??= delta.function?.name;
        call.arguments += delta.function?.arguments ?? '';
        calls.set(delta.index, call);
      }
      finish = choice.finish_reason ?? finish;
    }
    expect(received[0]).toMatchObject({ stream: true, system: 'Be brief.' });
    expect(text).toBe("Okay, let's check the weather in San Francisco, CA — ¡hola! 🌤️");
    expect([...calls.values()].map((call) => ({ ...call, arguments: JSON.parse(call.arguments) as unknown }))).toEqual([
      {
        id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
        name: 'get_weather',
        arguments: { location: 'San Francisco, CA', unit: 'fahrenheit' },
      },
    ]);
    expect(finish).toBe('tool_calls');
    expect(usage).toMatchObject({
      prompt_tokens: 4672,
      completion_tokens: 89,
      total_tokens: 4761,
      prompt_tokens_details: { cached_tokens: 3000 },
    });
  });

  it('raises the SDK error for a translated Anthropic rate limit', async () => {
    const error = { status: 429, body: { type: 'error', error: { type: 'rate_limit_error', message: 'Slow down' } } };
    const url = await startGateway('openai.chat', { target: 'anthropic.messages', error });
    const openai = new OpenAI({ apiKey: 'test', baseURL: `${url}/v1`, maxRetries: 0 });
    const failure = await openai.chat.completions.create(ask).catch((caught: unknown) => caught);
    expect(failure).toBeInstanceOf(OpenAI.RateLimitError);
    expect(failure).toMatchObject({ status: 429, code: 'rate_limit_exceeded', type: 'requests' });
    expect((failure as Error).message).toContain('Slow down');
  });
});

describe('an Anthropic client served by an OpenAI target', () => {
  const ask = {
    model: 'smart',
    max_tokens: 300,
    system: 'Be brief.',
    messages: [{ role: 'user' as const, content: 'Weather and time in Paris?' }],
    tools: [
      {
        name: 'get_weather',
        description: 'Current weather',
        input_schema: { type: 'object' as const, properties: { location: { type: 'string' } } },
      },
    ],
  };

  it('parses a JSON answer with tool_use, stop reason and usage (messages.create)', async () => {
    const url = await startGateway('anthropic.messages', {
      target: 'openai.chat',
      json: fixtureJson('openai-tool-completion.json'),
    });
    const anthropic = new Anthropic({ apiKey: 'test', baseURL: url, maxRetries: 0 });
    const message = await anthropic.messages.create(ask);
    expect(received[0]).toMatchObject({
      model: 'target-model',
      max_completion_tokens: 300,
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user' }],
    });
    expect(message.model).toBe('smart');
    expect(message.stop_reason).toBe('tool_use');
    expect(message.content).toEqual([
      { type: 'text', text: 'Checking the weather in Paris.' },
      {
        type: 'tool_use',
        id: 'call_62136354',
        name: 'get_weather',
        input: { location: 'Paris, France', unit: 'celsius' },
      },
    ]);
    expect(message.usage).toMatchObject({
      input_tokens: 290,
      cache_read_input_tokens: 1920,
      cache_creation_input_tokens: 0,
      output_tokens: 41,
    });
  });

  it('parses a stream with text and two tool calls (messages.stream)', async () => {
    const url = await startGateway('anthropic.messages', {
      target: 'openai.chat',
      sse: fixtureText('openai-tool-stream.sse'),
    });
    const anthropic = new Anthropic({ apiKey: 'test', baseURL: url, maxRetries: 0 });
    const stream = anthropic.messages.stream(ask);
    let text = '';
    stream.on('text', (delta) => {
      text += delta;
    });
    const message = await stream.finalMessage();
    expect(received[0]).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect(text).toBe('Let me look that up — ünïcödé 🌤️');
    expect(message.stop_reason).toBe('tool_use');
    expect(message.content).toEqual([
      expect.objectContaining({ type: 'text', text: 'Let me look that up — ünïcödé 🌤️' }),
      {
        type: 'tool_use',
        id: 'call_DdmO9pD3xa9XTPNJ32zg2hcA',
        name: 'get_weather',
        input: { location: 'Paris, France' },
      },
      { type: 'tool_use', id: 'call_7xq1YbTZkLrW0sH2fV9mNaE4', name: 'get_time', input: { zone: 'Europe/Paris' } },
    ]);
    expect(message.usage).toMatchObject({
      input_tokens: 298,
      cache_read_input_tokens: 1536,
      cache_creation_input_tokens: 0,
      output_tokens: 61,
    });
  });

  it('raises the SDK error for a translated OpenAI bad request', async () => {
    const error = {
      status: 400,
      body: {
        error: { message: 'Invalid tools[0].function.name', type: 'invalid_request_error', param: 'tools', code: null },
      },
    };
    const url = await startGateway('anthropic.messages', { target: 'openai.chat', error });
    const anthropic = new Anthropic({ apiKey: 'test', baseURL: url, maxRetries: 0 });
    const failure = await anthropic.messages.create(ask).catch((caught: unknown) => caught);
    expect(failure).toBeInstanceOf(Anthropic.BadRequestError);
    expect(failure).toMatchObject({ status: 400, error: { type: 'error', error: { type: 'invalid_request_error' } } });
    expect((failure as Error).message).toContain('Invalid tools[0].function.name');
  });
});

describe('an OpenAI Responses client served by an Anthropic target', () => {
  const ask = {
    model: 'smart',
    instructions: 'Be brief.',
    input: [{ role: 'user' as const, content: 'Weather in San Francisco?' }],
    tools: [
      {
        type: 'function' as const,
        name: 'get_weather',
        description: 'Current weather',
        parameters: { type: 'object', properties: { location: { type: 'string' } } },
        strict: false,
      },
    ],
    max_output_tokens: 200,
  };

  it('parses a JSON answer with output_text, a function call and usage (responses.create)', async () => {
    const url = await startGateway('openai.responses', {
      target: 'anthropic.messages',
      json: fixtureJson('anthropic-tool-message.json'),
    });
    const openai = new OpenAI({ apiKey: 'test', baseURL: `${url}/v1`, maxRetries: 0 });
    const response = await openai.responses.create(ask);
    expect(received[0]).toMatchObject({
      model: 'target-model',
      system: 'Be brief.',
      max_tokens: 200,
      tools: [{ name: 'get_weather' }],
    });
    expect(response.status).toBe('completed');
    expect(response.output_text).toBe("I'll check the current weather in San Francisco for you.");
    const call = response.output.find(
      (item): item is OpenAI.Responses.ResponseFunctionToolCall => item.type === 'function_call',
    );
    expect(call).toMatchObject({ call_id: 'toolu_01A09q90qw90lq917835lq9', name: 'get_weather' });
    expect(JSON.parse(call!.arguments)).toEqual({ location: 'San Francisco, CA', unit: 'celsius' });
    expect(response.usage).toMatchObject({
      input_tokens: 6529,
      input_tokens_details: { cached_tokens: 4096 },
      output_tokens: 74,
      total_tokens: 6603,
    });
  });

  it('parses a stream: text deltas, function call arguments and the final response (responses.stream)', async () => {
    const url = await startGateway('openai.responses', {
      target: 'anthropic.messages',
      sse: fixtureText('anthropic-tool-stream.sse'),
    });
    const openai = new OpenAI({ apiKey: 'test', baseURL: `${url}/v1`, maxRetries: 0 });
    const stream = openai.responses.stream(ask);
    let text = '';
    let args = '';
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.function_call_arguments.delta') args += event.delta;
    }
    const response = await stream.finalResponse();
    expect(received[0]).toMatchObject({ stream: true });
    expect(text).toBe("Okay, let's check the weather in San Francisco, CA — ¡hola! 🌤️");
    expect(JSON.parse(args)).toEqual({ location: 'San Francisco, CA', unit: 'fahrenheit' });
    expect(response.status).toBe('completed');
    expect(response.output_text).toBe(text);
    expect(response.output.map((item) => item.type)).toEqual(['message', 'function_call']);
    expect(response.usage).toMatchObject({
      input_tokens: 4672,
      input_tokens_details: { cached_tokens: 3000 },
      output_tokens: 89,
    });
  });

  it('iterates the raw events of responses.create with stream: true', async () => {
    const url = await startGateway('openai.responses', {
      target: 'anthropic.messages',
      sse: fixtureText('anthropic-tool-stream.sse'),
    });
    const openai = new OpenAI({ apiKey: 'test', baseURL: `${url}/v1`, maxRetries: 0 });
    const types: string[] = [];
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of await openai.responses.create({ ...ask, stream: true })) {
      types.push(event.type);
      if (event.type === 'response.completed') completed = event.response;
    }
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
    expect(completed?.usage?.output_tokens).toBe(89);
  });
});
