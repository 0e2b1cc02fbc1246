import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ApiError, createPricing, getContext, renderApiError } from '@tollgate/core';
import { costNanoUsd, exactUsd } from '@tollgate/core/costs';
import type { Identity, ProviderApi, UsageRecord } from '@tollgate/core';
import { meter } from '@tollgate/metering';
import { countTextTokens, preloadTokenizers } from '@tollgate/providers';
import { CountBudget } from '@tollgate/providers/count-budget';
import type { MeterOptions, UsageSink } from '@tollgate/metering';
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response } from 'express';

// Provider answers recorded once, shared with the adapters' own tests.
const fixture = (name: string) => readFileSync(new URL(`../../providers/test/fixtures/${name}`, import.meta.url));
const pricing = createPricing();
const identity: Identity = {
  keyId: 'key-1',
  tenantId: 'acme',
  userId: 'alice',
  tier: 'free',
  feature: 'support-bot',
  scopes: ['chat'],
  authMethod: 'api_key',
};

/** A sink that hands records to waiting tests. */
class MemorySink implements UsageSink {
  records: UsageRecord[] = [];
  private waiters: ((record: UsageRecord) => void)[] = [];
  write(record: UsageRecord) {
    this.records.push(record);
    this.waiters.shift()?.(record);
  }
  next(): Promise<UsageRecord> {
    const index = this.records.length;
    return new Promise((resolve) => {
      if (this.records.length > index) resolve(this.records[index]!);
      else this.waiters.push(resolve);
    });
  }
  flush = async () => undefined;
  close = async () => undefined;
}

interface Harness {
  url: string;
  sink: MemorySink;
  settles: (UsageRecord | undefined)[];
  close(): Promise<void>;
}

const servers: http.Server[] = [];

async function start(
  handler: RequestHandler,
  options: MeterOptions = {},
  after: RequestHandler[] = [],
): Promise<Harness> {
  const sink = new MemorySink();
  const settles: (UsageRecord | undefined)[] = [];
  const app = express();
  app.use(express.json());
  app.use((req: Request, res: Response, next: NextFunction) => {
    getContext(req, res).identity = identity;
    next();
  });
  // What tokenRateLimit and budgetGuard do after the meter: register a settle listener.
  const listen: RequestHandler = (req, _res, next) => {
    req.tollgate.onSettle((record) => {
      settles.push(record);
    });
    next();
  };
  // Each route declares the API it speaks; /custom declares none (an SDK-calling handler reports usage itself).
  const routes: [string, ProviderApi | undefined][] = [
    ['/v1/chat/completions', 'openai.chat'],
    ['/v1/responses', 'openai.responses'],
    ['/v1/messages', 'anthropic.messages'],
    ['/custom', undefined],
  ];
  for (const [path, api] of routes)
    app.post(path, meter({ pricing, sinks: [sink], ...(api ? { api } : {}), ...options }), listen, ...after, handler);
  const server = http.createServer(app);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    sink,
    settles,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

beforeAll(async () => {
  await preloadTokenizers();
});

const post = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** Writes an SSE transcript in pieces cut at the given byte offsets (some inside UTF-8 characters). */
async function writeInPieces(res: Response, bytes: Buffer, cuts: number[]): Promise<void> {
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    res.write(bytes.subarray(from, cut));
    from = cut;
    await new Promise((resolve) => setImmediate(resolve));
  }
  res.end();
}

const sseHeaders = (res: Response) => {
  res.status(200);
  res.setHeader('content-type', 'text/event-stream; charset=utf-8');
  res.setHeader('cache-control', 'no-cache');
};

describe('meter() with JSON responses', () => {
  it('sets the estimate before the handler and bills the provider usage after it', async () => {
    let seen: unknown;
    const app = await start((req, res) => {
      seen = {
        estimate: req.tollgate.estimate,
        requestedModel: req.tollgate.requestedModel,
        metered: req.tollgate.metered,
      };
      res.type('application/json').send(fixture('openai-chat.json'));
    });
    const recorded = app.sink.next();
    const response = await post(`${app.url}/v1/chat/completions?x=1`, {
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Hello!' }],
      max_tokens: 100,
    });
    expect(response.status).toBe(200);
    expect((await response.json()) as unknown).toMatchObject({ usage: { prompt_tokens: 1117 } });
    const record = await recorded;
    expect(seen).toMatchObject({
      estimate: { provider: 'openai', model: 'gpt-4o', inputTokens: 9, maxOutputTokens: 100, totalTokens: 109 },
      requestedModel: 'gpt-4o',
      metered: true,
    });
    const usage = {
      inputTokens: 1117,
      cachedInputTokens: 1024,
      cacheWriteTokens: 0,
      outputTokens: 46,
      reasoningTokens: 0,
    };
    expect(record).toMatchObject({
      ...usage,
      keyId: 'key-1',
      tenantId: 'acme',
      userId: 'alice',
      feature: 'support-bot',
      route: '/v1/chat/completions',
      provider: 'openai',
      model: 'gpt-4o-2024-08-06',
      requestedModel: 'gpt-4o',
      status: 200,
      stream: false,
      aborted: false,
      usageSource: 'provider',
    });
    // gpt-4o: 93 uncached x $2.50 + 1024 cached x $1.25 + 46 output x $10 per 1M tokens.
    expect(record.costNanoUsd).toBe(232_500 + 1_280_000 + 460_000);
    expect(record.costNanoUsd).toBe(costNanoUsd(usage, pricing.get('gpt-4o')));
    expect(record.estimatedCostNanoUsd).toBe((seen as { estimate: { costNanoUsd: number } }).estimate.costNanoUsd);
    expect(record.requestId).toBe(response.headers.get('x-request-id'));
    expect(new Date(record.timestamp).toISOString()).toBe(record.timestamp);
    expect(record.latencyMs).toBeGreaterThanOrEqual(0);
    expect(app.settles).toEqual([record]);
  });

  it('reads Responses and Anthropic JSON bodies, cache writes at the write price', async () => {
    const app = await start((req, res) => {
      res.json(
        JSON.parse(
          fixture(req.path.endsWith('/messages') ? 'anthropic-messages.json' : 'openai-responses.json').toString(
            'utf8',
          ),
        ),
      );
    });
    let recorded = app.sink.next();
    await (await post(`${app.url}/v1/responses`, { model: 'gpt-4.1', input: 'Tell me a story' })).text();
    expect(await recorded).toMatchObject({
      inputTokens: 36,
      outputTokens: 87,
      model: 'gpt-4.1-2025-04-14',
      usageSource: 'provider',
    });
    recorded = app.sink.next();
    await (
      await post(`${app.url}/v1/messages`, {
        model: 'claude-sonnet-4-5',
        max_tokens: 1024,
        messages: [{ role: 'user', content: 'Hi' }],
      })
    ).text();
    const record = await recorded;
    expect(record).toMatchObject({
      provider: 'anthropic',
      inputTokens: 1300,
      cachedInputTokens: 1000,
      cacheWriteTokens: 200,
      outputTokens: 50,
    });
    // claude-sonnet-4-5: 100 x $3 + 1000 cached x $0.30 + 200 written x $3.75 + 50 x $15 per 1M tokens.
    expect(record.costNanoUsd).toBe(300_000 + 300_000 + 750_000 + 750_000);
  });

  it('rejects an unknown model with 400 invalid_request naming the param, before the handler', async () => {
    let called = false;
    const app = await start((_req, res) => {
      called = true;
      res.json({});
    });
    const response = await post(`${app.url}/v1/chat/completions`, { model: 'my-secret-llm', messages: [] });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { code: string; param: string; message: string } };
    expect(body.error).toMatchObject({ code: 'invalid_request', param: 'model' });
    expect(body.error.message).toContain('my-secret-llm');
    expect(called).toBe(false);
    const priced = await start((_req, res) => res.json({ usage: { prompt_tokens: 10, completion_tokens: 5 } }), {
      pricing: createPricing({ defaultPrice: { provider: 'vllm', inputPerMTok: 1, outputPerMTok: 2 } }),
    });
    const recorded = priced.sink.next();
    expect((await post(`${priced.url}/v1/chat/completions`, { model: 'my-secret-llm', messages: [] })).status).toBe(
      200,
    );
    // 10 x $1 + 5 x $2 per 1M tokens.
    expect(await recorded).toMatchObject({ provider: 'vllm', costNanoUsd: 10_000 + 10_000 });
  });

  it('bills the model a later middleware downgraded to, keeping the requested one', async () => {
    const downgrade: RequestHandler = (req, _res, next) => {
      req.body.model = 'gpt-4o-mini';
      req.tollgate.estimate = { ...req.tollgate.estimate!, model: 'gpt-4o-mini' };
      next();
    };
    const app = await start((_req, res) => res.json({ usage: { prompt_tokens: 1000, completion_tokens: 100 } }), {}, [
      downgrade,
    ]);
    const recorded = app.sink.next();
    await (
      await post(`${app.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
    ).text();
    const record = await recorded;
    expect(record).toMatchObject({ model: 'gpt-4o-mini', requestedModel: 'gpt-4o' });
    expect(record.costNanoUsd).toBe(
      costNanoUsd(
        { inputTokens: 1000, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 100, reasoningTokens: 0 },
        pricing.get('gpt-4o-mini'),
      ),
    );
  });

  it('fills and clamps the output cap to the tier and writes it into the body', async () => {
    let body: Record<string, unknown> = {};
    let maxOutputTokens = 0;
    const app = await start(
      (req, res) => {
        body = req.body;
        maxOutputTokens = req.tollgate.estimate!.maxOutputTokens;
        res.json({ usage: { prompt_tokens: 1, completion_tokens: 1 } });
      },
      { tierMaxOutputTokens: { free: 100 } },
    );
    const recorded = app.sink.next();
    await (
      await post(`${app.url}/v1/chat/completions`, {
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 5000,
      })
    ).text();
    await recorded;
    expect(body.max_tokens).toBe(100);
    expect(maxOutputTokens).toBe(100);
    const again = app.sink.next();
    await (await post(`${app.url}/v1/responses`, { model: 'gpt-4o', input: 'hi' })).text();
    await again;
    expect(body.max_output_tokens).toBe(100);
    expect(maxOutputTokens).toBe(100);
  });

  it('counts the output and charges the estimated prompt when the provider omits usage', async () => {
    let estimateInput = 0;
    const app = await start((req, res) => {
      estimateInput = req.tollgate.estimate!.inputTokens;
      res.json({ model: 'gpt-4o', choices: [{ index: 0, message: { role: 'assistant', content: 'hello world' } }] });
    });
    const recorded = app.sink.next();
    await (
      await post(`${app.url}/v1/chat/completions`, {
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'say hello world' }],
      })
    ).text();
    expect(await recorded).toMatchObject({
      usageSource: 'counted',
      aborted: false,
      inputTokens: estimateInput,
      outputTokens: 2,
    });
  });

  it("says when counted output is a bound of the provider's count (Claude's tokenizer is not published)", async () => {
    const app = await start((req, res) => {
      const claude = req.body.model === 'claude-sonnet-4-5';
      const text = 'hello world, counted here';
      res.json(
        claude
          ? { model: req.body.model, content: [{ type: 'text', text }] }
          : { model: req.body.model, choices: [{ index: 0, message: { role: 'assistant', content: text } }] },
      );
    });
    const claudeRecord = app.sink.next();
    const claudeBody = { model: 'claude-sonnet-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] };
    await (await post(`${app.url}/v1/messages`, claudeBody)).text();
    expect(await claudeRecord).toMatchObject({ usageSource: 'counted', outputUpperBound: true });
    const openaiRecord = app.sink.next();
    await (
      await post(`${app.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
    ).text();
    const exact = await openaiRecord;
    expect({ usageSource: exact.usageSource, outputUpperBound: exact.outputUpperBound }).toEqual({
      usageSource: 'counted',
      outputUpperBound: undefined,
    });
  });

  it('never records counted output above the output cap the request ran with', async () => {
    // Anthropic output is counted with o200k_base x 1.25: 40 distinct words count as ~50 tokens, the cap is 10.
    const words = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
    const app = await start((_req, res) => {
      res.json({ model: 'claude-sonnet-4-5', content: [{ type: 'text', text: words }] });
    });
    const recorded = app.sink.next();
    await (
      await post(`${app.url}/v1/messages`, {
        model: 'claude-sonnet-4-5',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'talk' }],
      })
    ).text();
    expect(await recorded).toMatchObject({ usageSource: 'counted', outputTokens: 10 });
  });

  it('finds usage at the end of a JSON body too large to parse whole', async () => {
    const big = JSON.stringify({
      model: 'gpt-4o',
      choices: [{ index: 0, message: { role: 'assistant', content: 'x'.repeat(5_000_000) } }],
      usage: { prompt_tokens: 7, completion_tokens: 1_250_000 },
    });
    const app = await start((_req, res) => {
      res.type('application/json').send(big);
    });
    const recorded = app.sink.next();
    const response = await post(`${app.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [] });
    const text = await response.text();
    const record = await recorded;
    expect(record).toMatchObject({ inputTokens: 7, outputTokens: 1_250_000, usageSource: 'provider' });
    // Held whole (it is under the bound a JSON answer is held to), and told its cost like any other.
    const cost = exactUsd(record.costNanoUsd);
    expect(response.headers.get('x-tollgate-cost-usd')).toBe(cost);
    expect(text).toBe(big.replace(/}}$/, `,"cost_usd":${cost}}}`));
  });

  it('reads the usage at the top of a JSON answer, not usage-like text or objects inside it', async () => {
    const content = 'A "usage": {"prompt_tokens": 999, "completion_tokens": 999} and a \\"usage\\" quote';
    const answer = {
      id: 'chatcmpl-1',
      model: 'gpt-4o-2024-08-06',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content, metadata: { usage: { prompt_tokens: 5, completion_tokens: 5 } } },
        },
      ],
      usage: { prompt_tokens: 12, completion_tokens: 3, prompt_tokens_details: { cached_tokens: 0 } },
      system_fingerprint: 'fp_1',
    };
    const app = await start((_req, res) => {
      res.type('application/json').send(JSON.stringify(answer, null, 2));
    });
    const recorded = app.sink.next();
    await (
      await post(`${app.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
    ).text();
    expect(await recorded).toMatchObject({
      inputTokens: 12,
      outputTokens: 3,
      model: 'gpt-4o-2024-08-06',
      usageSource: 'provider',
    });
  });

  it('reads a JSON answer whole when its usage reports no output, or the answer does not parse', async () => {
    const bodies = [
      JSON.stringify({
        model: 'gpt-4o',
        choices: [{ index: 0, message: { role: 'assistant', content: 'hello world' } }],
        usage: { prompt_tokens: 4, completion_tokens: 0 },
      }),
      '{"model": "gpt-4o", "choices": [{"message": {"content": "hello world"}}], "usage": {"prompt_tokens": 4, "completion_tokens": 2}',
    ];
    let next = 0;
    const app = await start((_req, res) => {
      res.type('application/json').send(bodies[next++]);
    });
    const records: UsageRecord[] = [];
    for (let i = 0; i < bodies.length; i++) {
      const recorded = app.sink.next();
      await (
        await post(`${app.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
      ).text();
      records.push(await recorded);
    }
    // The text that passed is counted: 'hello world', then the whole body that did not parse (its usage untrusted).
    expect(records[0]).toMatchObject({ usageSource: 'counted', inputTokens: 4, outputTokens: 2 });
    expect(records[1]).toMatchObject({ usageSource: 'counted' });
    expect(records[1]!.outputTokens).toBeGreaterThan(10);
  });

  it('reads answers written inside a sub-app mounted after the meter, and leaves unmetered responses alone', async () => {
    const sink = new MemorySink();
    const app = express();
    app.use(express.json());
    app.use('/v1/chat', meter({ pricing, sinks: [sink], api: 'openai.chat' }));
    const v1 = express();
    v1.post('/chat/completions', (_req, res) => {
      res.type('application/json').send(fixture('openai-chat.json'));
    });
    v1.get('/plain', (_req, res) => {
      res.type('application/json').send('{"usage": "none here"}');
    });
    app.use('/v1', v1);
    const server = http.createServer(app);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const recorded = sink.next();
    const response = await post(`${url}/v1/chat/completions`, {
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Hello!' }],
    });
    expect((await response.json()) as unknown).toMatchObject({ usage: { prompt_tokens: 1117 } });
    expect(await recorded).toMatchObject({
      inputTokens: 1117,
      outputTokens: 46,
      model: 'gpt-4o-2024-08-06',
      usageSource: 'provider',
    });
    expect(await (await fetch(`${url}/v1/plain`)).text()).toBe('{"usage": "none here"}');
    expect(sink.records).toHaveLength(1);
  });

  it('leaves streams alone when includeStreamUsage is off', async () => {
    let streamOptions: unknown = 'unset';
    const app = await start(
      (req, res) => {
        streamOptions = req.body.stream_options;
        sseHeaders(res);
        res.end('data: [DONE]\n\n');
      },
      { includeStreamUsage: false },
    );
    const recorded = app.sink.next();
    expect(
      await (await post(`${app.url}/v1/chat/completions`, { model: 'gpt-4o', stream: true, messages: [] })).text(),
    ).toBe('data: [DONE]\n\n');
    expect(streamOptions).toBeUndefined();
    expect(await recorded).toMatchObject({ stream: true, outputTokens: 0, usageSource: 'counted' });
  });

  it('records a failed provider call without charging the prompt', async () => {
    const app = await start((_req, res) =>
      res
        .status(502)
        .json({ error: { message: 'upstream down', type: 'server_error', code: 'upstream_error', param: null } }),
    );
    const recorded = app.sink.next();
    await (
      await post(`${app.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
    ).text();
    expect(await recorded).toMatchObject({
      status: 502,
      inputTokens: 0,
      outputTokens: 0,
      costNanoUsd: 0,
      usageSource: 'counted',
    });
  });

  it('does not bill the text of a failed call whose body is not JSON (a gateway page, a bare error line)', async () => {
    const app = await start((_req, res) => {
      res.writeHead(503);
      res.end('upstream connect error or disconnect/reset before headers. reset reason: connection termination');
    });
    const recorded = app.sink.next();
    await (
      await post(`${app.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
    ).text();
    expect(await recorded).toMatchObject({
      status: 503,
      inputTokens: 0,
      outputTokens: 0,
      costNanoUsd: 0,
      usageSource: 'counted',
    });
  });

  it('marks a request tollgate refused with the refusing layer, and a provider failure with none', async () => {
    const app = await start((req, res) => {
      const answer = req.headers['x-answer'];
      if (answer === 'limit') renderApiError(new ApiError('rate_limit_exceeded', 'Slow down.'), req, res);
      else if (answer === 'budget') renderApiError(new ApiError('insufficient_quota', 'Budget exhausted.'), req, res);
      else if (answer === 'upstream')
        renderApiError(new ApiError('upstream_error', 'The upstream failed (HTTP 500).'), req, res);
      // The provider's own 429, passed on as it came.
      else
        res
          .status(429)
          .json({ error: { message: 'Slow down.', type: 'requests', code: 'rate_limit_exceeded', param: null } });
    });
    const send = async (answer: string) => {
      const recorded = app.sink.next();
      const response = await fetch(`${app.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-answer': answer },
        body: JSON.stringify({ model: 'gpt-4o', messages: [] }),
      });
      await response.text();
      return recorded;
    };
    expect(await send('limit')).toMatchObject({ status: 429, refusedBy: 'requests', provider: 'openai' });
    expect(await send('budget')).toMatchObject({ status: 429, refusedBy: 'budget' });
    for (const answer of ['upstream', 'provider']) {
      const record = await send(answer);
      expect(record.status).toBe(answer === 'upstream' ? 502 : 429);
      expect(record).not.toHaveProperty('refusedBy');
    }
  });
});

describe('meter() with streams', () => {
  it('adds include_usage, passes chunks at once, strips the usage chunk it added and bills it', async () => {
    let release!: () => void;
    const clientSawFirstDelta = new Promise<void>((resolve) => (release = resolve));
    let streamOptions: unknown;
    const bytes = fixture('openai-chat-stream.sse');
    const firstEvent = bytes.indexOf('\n\n') + 2;
    const secondEvent = bytes.indexOf('\n\n', firstEvent) + 2;
    const app = await start(async (req, res) => {
      streamOptions = req.body.stream_options;
      sseHeaders(res);
      res.write(bytes.subarray(0, secondEvent));
      // Deadlocks (and times out) if the meter held the bytes back.
      await clientSawFirstDelta;
      const rest = bytes.subarray(secondEvent);
      const inChar = rest.indexOf('数') + 1;
      await writeInPieces(res, rest, [inChar, rest.indexOf('"usage":{') + 3, rest.length - 5]);
    });
    const recorded = app.sink.next();
    const response = await post(`${app.url}/v1/chat/completions`, {
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { foo: 1 },
      messages: [{ role: 'user', content: 'Hi' }],
    });
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (text.includes('Héllo')) release();
    }
    expect(streamOptions).toEqual({ foo: 1, include_usage: true });
    expect(text).not.toContain('prompt_tokens');
    expect(text).toContain(' wörld, 数据 😀!');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    const record = await recorded;
    expect(record).toMatchObject({
      stream: true,
      inputTokens: 2048,
      cachedInputTokens: 1536,
      outputTokens: 320,
      reasoningTokens: 64,
      model: 'gpt-4o-mini-2024-07-18',
      usageSource: 'provider',
    });
    expect(record.costNanoUsd).toBe(costNanoUsd(record, pricing.get('gpt-4o-mini')));
  });

  it('strips its usage chunk before a wrapper that middleware before the meter put on the response sees the bytes', async () => {
    let seenByWrapper = '';
    const wrapBefore: RequestHandler = (_req, res, next) => {
      const write = res.write;
      const end = res.end;
      res.write = function keep(this: Response, chunk: unknown, ...rest: unknown[]) {
        seenByWrapper += String(chunk);
        return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
      } as Response['write'];
      res.end = function keepEnd(this: Response, chunk?: unknown, ...rest: unknown[]) {
        if (chunk !== undefined && typeof chunk !== 'function') seenByWrapper += String(chunk);
        return (end as (...args: unknown[]) => Response).call(this, chunk, ...rest);
      } as Response['end'];
      next();
    };
    const sink = new MemorySink();
    const app = express();
    app.use(express.json());
    app.post('/v1/chat/completions', wrapBefore, meter({ pricing, sinks: [sink], api: 'openai.chat' }), (_req, res) => {
      sseHeaders(res);
      res.write(fixture('openai-chat-stream.sse'));
      res.end();
    });
    const server = http.createServer(app);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const recorded = sink.next();
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const text = await (
      await post(`${url}/v1/chat/completions`, {
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: 'Hi' }],
      })
    ).text();
    expect(text).not.toContain('prompt_tokens');
    expect(seenByWrapper).toBe(text);
    expect(await recorded).toMatchObject({ stream: true, outputTokens: 320, usageSource: 'provider' });
  });

  it('keeps the usage chunk when the client asked for it', async () => {
    let streamOptions: unknown;
    const app = await start(async (req, res) => {
      streamOptions = req.body.stream_options;
      sseHeaders(res);
      await writeInPieces(res, fixture('openai-chat-stream.sse'), [10, 400]);
    });
    const recorded = app.sink.next();
    const text = await (
      await post(`${app.url}/v1/chat/completions`, {
        model: 'gpt-4o-mini',
        stream: true,
        stream_options: { include_usage: true },
        messages: [],
      })
    ).text();
    expect(streamOptions).toEqual({ include_usage: true });
    const record = await recorded;
    expect(record).toMatchObject({ inputTokens: 2048 });
    // As the provider sent it, but for the call's cost in the usage object.
    const usageEnd = '"rejected_prediction_tokens":0}}}';
    expect(text).toBe(
      fixture('openai-chat-stream.sse')
        .toString('utf8')
        .replace(usageEnd, `"rejected_prediction_tokens":0},"cost_usd":${exactUsd(record.costNanoUsd)}}}`),
    );
  });

  it('bills cumulative Anthropic usage and Responses usage from streams', async () => {
    const app = await start(async (req, res) => {
      sseHeaders(res);
      await writeInPieces(
        res,
        fixture(req.path.endsWith('/messages') ? 'anthropic-messages-stream.sse' : 'openai-responses-stream.sse'),
        [1, 333, 334, 1000],
      );
    });
    let recorded = app.sink.next();
    await (
      await post(`${app.url}/v1/messages`, {
        model: 'claude-sonnet-4-5',
        stream: true,
        max_tokens: 500,
        messages: [{ role: 'user', content: 'Weather?' }],
      })
    ).text();
    const anthropic = await recorded;
    expect(anthropic).toMatchObject({
      inputTokens: 2520,
      cachedInputTokens: 2048,
      outputTokens: 89,
      stream: true,
      usageSource: 'provider',
    });
    // 472 x $3 + 2048 cached x $0.30 + 89 x $15 per 1M tokens.
    expect(anthropic.costNanoUsd).toBe(1_416_000 + 614_400 + 1_335_000);
    recorded = app.sink.next();
    await (await post(`${app.url}/v1/responses`, { model: 'o4-mini', stream: true, input: 'Hi' })).text();
    const responses = await recorded;
    expect(responses).toMatchObject({
      inputTokens: 4096,
      cachedInputTokens: 2048,
      outputTokens: 700,
      reasoningTokens: 512,
      model: 'o4-mini-2025-04-16',
    });
    expect(responses.costNanoUsd).toBe(costNanoUsd(responses, pricing.get('o4-mini')));
  });

  it('counts the output that passed when the client aborts mid-stream, and settles once', async () => {
    let handlerSawClose!: () => void;
    const closed = new Promise<void>((resolve) => (handlerSawClose = resolve));
    const bytes = fixture('openai-chat-stream.sse');
    const twoDeltas = bytes.indexOf('"finish_reason":"stop"');
    const cut = bytes.lastIndexOf('\n\n', twoDeltas) + 2;
    let estimateInput = 0;
    const app = await start((req, res) => {
      estimateInput = req.tollgate.estimate!.inputTokens;
      sseHeaders(res);
      res.write(bytes.subarray(0, cut));
      res.on('close', handlerSawClose);
    });
    const recorded = app.sink.next();
    const { port } = new URL(app.url);
    await new Promise<void>((resolve, reject) => {
      const request = http.request(
        {
          host: '127.0.0.1',
          port,
          path: '/v1/chat/completions',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
        },
        (response) => {
          let text = '';
          response.on('data', (chunk: Buffer) => {
            text += chunk.toString('utf8');
            if (text.includes('数据')) {
              request.destroy();
              resolve();
            }
          });
        },
      );
      request.on('error', () => undefined);
      request.on('close', () => resolve());
      request.setTimeout(10_000, () => reject(new Error('no data')));
      request.end(JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'Hi there' }] }));
    });
    await closed;
    const record = await recorded;
    const passed = countTextTokens('Héllo wörld, 数据 😀!', 'o200k_base', new CountBudget(1000));
    expect(record).toMatchObject({
      aborted: true,
      usageSource: 'counted',
      inputTokens: estimateInput,
      outputTokens: passed,
      stream: true,
    });
    // The chunks that passed named the model that ran: that is the one billed.
    expect(record.model).toBe('gpt-4o-mini-2024-07-18');
    expect(record.costNanoUsd).toBe(costNanoUsd(record, pricing.get('gpt-4o-mini')));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(app.sink.records).toHaveLength(1);
    expect(app.settles).toEqual([record]);
  });
});

describe('recordUsage()', () => {
  it('is preferred for SDK-calling handlers, on provider routes and custom routes', async () => {
    const app = await start((req, res) => {
      req.tollgate.recordUsage({
        model: 'gpt-4o',
        provider: 'openai',
        inputTokens: 1000,
        cachedInputTokens: 500,
        outputTokens: 200,
        reasoningTokens: 50,
      });
      res.json({ summary: 'done' });
    });
    let recorded = app.sink.next();
    await (await post(`${app.url}/custom`, { text: 'summarize this' })).text();
    const custom = await recorded;
    expect(custom).toMatchObject({
      route: '/custom',
      model: 'gpt-4o',
      provider: 'openai',
      inputTokens: 1000,
      cachedInputTokens: 500,
      outputTokens: 200,
      reasoningTokens: 50,
      usageSource: 'provider',
      estimatedCostNanoUsd: 0,
    });
    // 500 uncached x $2.50 + 500 cached x $1.25 + 200 x $10 per 1M tokens.
    expect(custom.costNanoUsd).toBe(1_250_000 + 625_000 + 2_000_000);
    recorded = app.sink.next();
    await (
      await post(`${app.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
    ).text();
    expect(await recorded).toMatchObject({ requestedModel: 'gpt-4o', inputTokens: 1000, usageSource: 'provider' });
  });

  it('leaves routes that are no provider API and report nothing unrecorded', async () => {
    const app = await start((_req, res) => res.json({ ok: true }));
    await (await post(`${app.url}/custom`, {})).text();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(app.sink.records).toHaveLength(0);
    expect(app.settles).toEqual([undefined]);
  });
});

describe('meter() options', () => {
  it('rejects unknown option names with a hint', () => {
    expect(() => meter({ sink: [] } as unknown as MeterOptions)).toThrow(/did you mean "sinks"/);
    expect(() => meter({ maxEstimateMs: 0 })).toThrow(/maxEstimateMs/);
    for (const countCacheChars of [-1, 1.5, '1000']) {
      expect(() => meter({ countCacheChars } as unknown as MeterOptions)).toThrow(
        /countCacheChars must be a positive integer/,
      );
    }
    // The stop rests on a provable bound now, not on a factor: the option is gone.
    expect(() => meter({ lowerBoundFactor: 0.5 } as unknown as MeterOptions)).toThrow(/lowerBoundFactor/);
  });

  it('estimates a prompt sent again as it did the first time, with or without the count cache', async () => {
    const estimates: number[] = [];
    const handler: RequestHandler = (req, res) => {
      estimates.push(req.tollgate.estimate!.inputTokens);
      res.json({ usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
    };
    const system = 'You answer questions about invoices, politely and briefly. '.repeat(200);
    for (const options of [{}, { countCacheChars: 0 }]) {
      const harness = await start(handler, options);
      for (const question of ['What is due?', 'What is due?', 'And when?']) {
        const response = await post(`${harness.url}/v1/chat/completions`, {
          model: 'gpt-4o',
          messages: [
            { role: 'system', content: system },
            { role: 'user', content: question },
          ],
        });
        expect(response.status).toBe(200);
      }
      await harness.close();
    }
    const exact = (question: string) =>
      countTextTokens(system, 'o200k_base', new CountBudget(60_000)) +
      countTextTokens(question, 'o200k_base', new CountBudget(60_000)) +
      11;
    const expected = [exact('What is due?'), exact('What is due?'), exact('And when?')];
    expect(estimates).toEqual([...expected, ...expected]);
  });
});
