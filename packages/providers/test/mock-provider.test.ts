// The built-in mock speaks the providers' documented wire shapes, with deterministic usage and its failure knobs.
import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { countPromptTokens, createMockProvider } from '@tollgate/providers/mock';
import { countMockTokens } from '../src/mock-provider/reply.js';

function events(text: string): { event?: string; data: string }[] {
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1] ?? '';
      return event === undefined ? { data } : { event, data };
    });
}

describe('mock provider', () => {
  const { app, behavior } = createMockProvider();

  it('counts tokens simply and deterministically', () => {
    expect(countMockTokens('Hello, world!')).toBe(4);
    expect(countPromptTokens({ messages: [{ role: 'user', content: 'Hello, world!' }] })).toBe(4 + 3 + 3);
  });

  it('OpenAI chat stream: no usage without include_usage; with it, usage: null on chunks and a last chunk with choices: []', async () => {
    const plain = await request(app)
      .post('/v1/chat/completions')
      .send({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 3 });
    const plainEvents = events(plain.text);
    expect(plainEvents.at(-1)?.data).toBe('[DONE]');
    const plainChunks = plainEvents.slice(0, -1).map((e) => JSON.parse(e.data) as Record<string, unknown>);
    expect(plainChunks.every((chunk) => !('usage' in chunk))).toBe(true);
    expect(plainChunks.at(-1)).toMatchObject({ choices: [{ finish_reason: 'length', delta: {} }] });

    const withUsage = await request(app)
      .post('/chat/completions')
      .send({
        model: 'm',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
        max_tokens: 3,
        stream_options: { include_usage: true },
      });
    const chunks = events(withUsage.text)
      .slice(0, -1)
      .map((e) => JSON.parse(e.data) as { choices: unknown[]; usage: unknown });
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null && chunk.choices.length === 1)).toBe(true);
    expect(chunks.at(-1)).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
    });
  });

  it('Responses stream: created, deltas, completed with usage; incomplete when the cap cuts it', async () => {
    const res = await request(app).post('/v1/responses').send({ model: 'm', input: 'hi', stream: true });
    const list = events(res.text);
    expect(list[0]?.event).toBe('response.created');
    expect(list.filter((e) => e.event === 'response.output_text.delta')).toHaveLength(24);
    const last = JSON.parse(list.at(-1)!.data) as {
      type: string;
      sequence_number: number;
      response: { usage: { output_tokens: number } };
    };
    expect(last.type).toBe('response.completed');
    expect(last.sequence_number).toBe(list.length - 1);
    expect(last.response.usage.output_tokens).toBe(24);
    const cut = await request(app).post('/v1/responses').send({ model: 'm', input: 'hi', max_output_tokens: 5 });
    expect(cut.body).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
      usage: { output_tokens: 5 },
    });
  });

  it('Anthropic stream: message_start usage, then cumulative message_delta usage, then message_stop', async () => {
    const res = await request(app)
      .post('/v1/messages')
      .send({ model: 'claude', max_tokens: 6, messages: [{ role: 'user', content: 'hi' }], stream: true });
    const list = events(res.text);
    expect(list.map((e) => e.event)).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      ...Array(6).fill('content_block_delta'),
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(JSON.parse(list[0]!.data)).toMatchObject({ message: { usage: { input_tokens: 7, output_tokens: 1 } } });
    expect(JSON.parse(list.at(-2)!.data)).toMatchObject({
      delta: { stop_reason: 'max_tokens' },
      usage: { output_tokens: 6 },
    });
  });

  it('OpenAI embeddings: a deterministic unit vector per input, floats or base64 float32, usage on input only', async () => {
    const floats = await request(app)
      .post('/v1/embeddings')
      .send({ model: 'text-embedding-3-small', input: ['Hello, world!', [1, 2, 3]], dimensions: 8 });
    expect(floats.status).toBe(200);
    expect(floats.body).toMatchObject({
      object: 'list',
      model: 'text-embedding-3-small',
      usage: { prompt_tokens: 4 + 3, total_tokens: 4 + 3 },
    });
    const vectors = (floats.body as { data: { index: number; embedding: number[] }[] }).data;
    expect(vectors.map((item) => [item.index, item.embedding.length])).toEqual([
      [0, 8],
      [1, 8],
    ]);
    for (const { embedding } of vectors) expect(Math.hypot(...embedding)).toBeCloseTo(1, 6);
    const base64 = await request(app)
      .post('/v1/embeddings')
      .send({ model: 'text-embedding-3-small', input: 'Hello, world!', dimensions: 8, encoding_format: 'base64' });
    const bytes = Buffer.from((base64.body as { data: { embedding: string }[] }).data[0]!.embedding, 'base64');
    expect(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4))).toEqual(
      vectors[0]!.embedding,
    );
    // One array of token ids is one input; the default length is 1536.
    const tokens = await request(app)
      .post('/v1/embeddings')
      .send({ model: 'm', input: [1, 2, 3] });
    expect((tokens.body as { data: { embedding: number[] }[] }).data).toHaveLength(1);
    expect((tokens.body as { data: { embedding: number[] }[] }).data[0]!.embedding).toHaveLength(1536);
    expect((tokens.body as { usage: unknown }).usage).toEqual({ prompt_tokens: 3, total_tokens: 3 });
    const refused = await request(app).post('/v1/embeddings').send({ model: 'm', input: '', stream: true });
    expect(refused.status).toBe(422);
    expect((await request(app).post('/v1/embeddings').send({ model: 'm', input: '' })).status).toBe(400);
  });

  it('validates like the providers, in their error shapes', async () => {
    const anthropic = await request(app)
      .post('/v1/messages')
      .send({ model: 'claude', messages: [{ role: 'user', content: 'hi' }] });
    expect(anthropic.status).toBe(400);
    expect(anthropic.body).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: expect.stringContaining('max_tokens') },
    });
    const openai = await request(app).post('/v1/chat/completions').send({ model: 'm', messages: 'hi' });
    expect(openai.status).toBe(400);
    expect(openai.body.error).toMatchObject({ type: 'invalid_request_error', param: 'messages' });
  });

  it('fails on demand: 500, 429 with retry-after, required key', async () => {
    behavior.failure = 'error500';
    expect((await request(app).post('/v1/chat/completions').send({})).status).toBe(500);
    behavior.failure = 'rateLimit';
    behavior.retryAfterSeconds = 3;
    const limited = await request(app).post('/v1/messages').send({});
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('3');
    expect(limited.body.error.type).toBe('rate_limit_error');
    behavior.failure = 'none';
    behavior.requireApiKey = 'secret';
    expect((await request(app).post('/v1/chat/completions').send({})).status).toBe(401);
    expect(
      (
        await request(app)
          .post('/v1/chat/completions')
          .set('authorization', 'Bearer secret')
          .send({ model: 'm', messages: [{ role: 'user', content: 'x' }] })
      ).status,
    ).toBe(200);
    behavior.requireApiKey = undefined;
  });
});
