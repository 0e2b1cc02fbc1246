// A plain Express app whose route calls a provider SDK itself: tier rules, caps and budgets hold and are charged there too.
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import OpenAI from 'openai';
import { apiErrorHandler, createMemoryStores, createPricing, getContext } from '@tollgate/core';
import type { TollgateStores, UsageRecord } from '@tollgate/core';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard } from '@tollgate/budget';
import { meter } from '@tollgate/metering';
import type { UsageSink } from '@tollgate/metering';
import { combineLimits, tierPolicy, tokenRateLimit } from '@tollgate/ratelimit';
import { createRedisStores } from '@tollgate/redis';
import { createMockProvider } from '@tollgate/providers/mock';

const pricing = createPricing();
const closers: (() => Promise<unknown> | unknown)[] = [];

afterAll(async () => {
  for (const close of closers.reverse()) await close();
});

async function listen(app: express.Express): Promise<string> {
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  closers.push(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The provider the SDK talks to: the example proxy's mock, over real HTTP. */
async function startProvider(): Promise<OpenAI> {
  const mock = createMockProvider({ replyTokens: 40 });
  closers.push(() => mock.close());
  return new OpenAI({ baseURL: `${await listen(mock.app)}/v1`, apiKey: 'sk-provider', maxRetries: 0 });
}

class MemorySink implements UsageSink {
  records: UsageRecord[] = [];
  write(record: UsageRecord): void {
    this.records.push(record);
  }
  flush = async () => undefined;
  close = async () => undefined;
}

/** What an auth middleware would set: tenant and tier from test headers. */
const identify: RequestHandler = (req, res, next) => {
  getContext(req, res).identity = {
    keyId: req.get('x-key') ?? 'k1',
    tenantId: req.get('x-tenant') ?? 'acme',
    tier: req.get('x-tier') ?? 'pro',
    scopes: [],
    authMethod: 'api_key',
  };
  next();
};

/** The metering README's pattern: the route builds the provider request and calls the SDK itself. */
function summarizeApp(client: OpenAI, guards: RequestHandler[], sink: MemorySink) {
  const app = express();
  app.use(express.json());
  const sdkCall = meter({
    api: 'openai.chat',
    pricing,
    sinks: [sink],
    request: (req) => {
      const body = req.body as { text?: string; model?: string; max_tokens?: number };
      return {
        model: body.model ?? 'gpt-4o-mini',
        max_tokens: body.max_tokens ?? 200,
        messages: [{ role: 'user', content: `Summarize: ${body.text ?? ''}` }],
      };
    },
  });
  app.post(
    '/summarize',
    identify,
    sdkCall,
    ...guards,
    async function summarize(req: Request, res: Response, next: NextFunction) {
      try {
        const call = req.tollgate.call!;
        const completion = await client.chat.completions.create(
          call.body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
          { signal: call.signal },
        );
        req.tollgate.recordResponse(completion);
        res.json({ summary: completion.choices[0]?.message.content, sent: call.body });
      } catch (error) {
        next(error);
      }
    },
  );
  app.use(apiErrorHandler());
  return app;
}

const post = (url: string, body: object, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = async (response: globalThis.Response): Promise<any> => response.json();

async function budgetOnSdkRoute(stores: TollgateStores): Promise<void> {
  const client = await startProvider();
  const sink = new MemorySink();
  const tenant = `t-${randomUUID()}`;
  const guard: BudgetGuard = budgetGuard({
    ledger: stores.ledger,
    pricing,
    log: false,
    tenants: { [tenant]: { usd: 0.00002, period: 'day' } },
  });
  closers.push(() => guard.close());
  const url = await listen(
    summarizeApp(client, [combineLimits(tokenRateLimit({ stores, limit: 1_000_000 }), guard)], sink),
  );
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) {
    const response = await post(
      `${url}/summarize`,
      { text: 'the quarterly report, in one line' },
      { 'x-tenant': tenant },
    );
    statuses.push(response.status);
    if (response.status === 429) expect((await json(response)).error.code).toBe('insufficient_quota');
    else await response.text();
  }
  // Before: 8 of 8 served and the budget's spend stayed 0 while the usage log recorded every call.
  expect(statuses.filter((status) => status === 200).length).toBeGreaterThan(0);
  expect(statuses.filter((status) => status === 429).length).toBeGreaterThan(0);
  const ours = () => sink.records.filter((record) => record.tenantId === tenant);
  for (let i = 0; i < 100 && ours().length < statuses.filter((status) => status === 200).length; i++)
    await new Promise((resolve) => setTimeout(resolve, 10));
  const [status] = await guard.status({ scope: 'tenant', id: tenant });
  const billed = ours().reduce((sum, record) => sum + record.costNanoUsd, 0);
  expect(billed).toBeGreaterThan(0);
  expect(status!.spentNanoUsd).toBe(billed);
  expect(status!.spentNanoUsd).toBeLessThanOrEqual(status!.limitNanoUsd);
  expect(status!.reservedNanoUsd).toBe(0);
}

describe('an SDK-calling route (the metering README pattern)', () => {
  it('is budgeted and charged like a proxied one (memory stores)', async () => {
    const stores = createMemoryStores();
    closers.push(() => stores.close());
    await budgetOnSdkRoute(stores);
  });

  it('is budgeted and charged like a proxied one (Redis stores)', async () => {
    const stores = createRedisStores({
      url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      prefix: `tg-test:${randomUUID()}:`,
    });
    closers.push(() => stores.close());
    await budgetOnSdkRoute(stores);
  });

  it('a route that declares its API is guarded under every spelling Express routes to it (trailing slash, other case)', async () => {
    const stores = createMemoryStores();
    closers.push(() => stores.close());
    const sink = new MemorySink();
    const tenant = `t-${randomUUID()}`;
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      log: false,
      tenants: { [tenant]: { usd: 0.0001, period: 'day' } },
    });
    closers.push(() => guard.close());
    const app = express();
    app.use(express.json());
    app.post(
      '/v1/chat/completions',
      identify,
      meter({ api: 'openai.chat', pricing, sinks: [sink] }),
      tierPolicy({ tiers: { free: { models: ['gpt-4o-mini'], maxOutputTokens: 50 } } }),
      guard,
      (req, res) => {
        res.json({
          sent: req.tollgate.call?.body,
          usage: { prompt_tokens: 10, completion_tokens: 5 },
          model: 'gpt-4o-mini',
        });
      },
    );
    app.use(apiErrorHandler());
    const url = await listen(app);
    // Before: `/v1/chat/completions/` and `/V1/CHAT/COMPLETIONS` were routed here, but the meter read the API off the path and found none.
    for (const path of ['/v1/chat/completions/', '/V1/CHAT/COMPLETIONS', '/v1/chat/completions?x=1']) {
      const refused = await post(
        `${url}${path}`,
        { model: 'gpt-4o', max_tokens: 100_000, messages: [] },
        { 'x-tier': 'free', 'x-tenant': tenant },
      );
      expect(refused.status).toBe(403);
      const capped = await post(
        `${url}${path}`,
        { model: 'gpt-4o-mini', max_tokens: 100_000, messages: [] },
        { 'x-tier': 'free', 'x-tenant': tenant },
      );
      expect(capped.status).toBe(200);
      expect((await json(capped)).sent.max_tokens).toBe(50);
    }
    // The refusals are recorded too (status 403, cost 0): the meter stood before the tier rules.
    for (let i = 0; i < 100 && sink.records.length < 6; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(sink.records.filter((record) => record.status === 200)).toHaveLength(3);
    expect(sink.records.filter((record) => record.status === 403).every((record) => record.costNanoUsd === 0)).toBe(
      true,
    );
    const [status] = await guard.status({ scope: 'tenant', id: tenant });
    expect(status!.spentNanoUsd).toBe(sink.records.reduce((sum, record) => sum + record.costNanoUsd, 0));
  });

  it('applies the tier allowlist and cap to the request the route builds', async () => {
    const client = await startProvider();
    const sink = new MemorySink();
    const tiers = tierPolicy({
      tiers: { free: { models: ['gpt-4o-mini'], maxOutputTokens: 300 }, pro: { models: ['*'] } },
    });
    const url = await listen(summarizeApp(client, [tiers], sink));
    // Before: a free key got gpt-4o with max_tokens 5000.
    const refused = await post(
      `${url}/summarize`,
      { text: 'x', model: 'gpt-4o', max_tokens: 5000 },
      { 'x-tier': 'free' },
    );
    expect(refused.status).toBe(403);
    expect((await json(refused)).error.code).toBe('model_not_allowed');
    const capped = await post(
      `${url}/summarize`,
      { text: 'x', model: 'gpt-4o-mini', max_tokens: 5000 },
      { 'x-tier': 'free' },
    );
    expect(capped.status).toBe(200);
    expect((await json(capped)).sent.max_tokens).toBe(300);
  });

  it('meter({ tierMaxOutputTokens }) clamps every cap field, like tierPolicy', async () => {
    const app = express();
    app.use(express.json());
    app.post(
      '/v1/chat/completions',
      identify,
      meter({ api: 'openai.chat', pricing, tierMaxOutputTokens: { free: 500 } }),
      (req, res) => {
        res.json({ body: req.body, estimate: req.tollgate.estimate });
      },
    );
    const url = await listen(app);
    // Before: max_tokens 10000 passed a 500 cap (only max_completion_tokens was clamped).
    for (const cap of [
      { max_tokens: 10_000 },
      { max_completion_tokens: 10_000 },
      { max_tokens: 10_000, max_completion_tokens: 10_000 },
    ]) {
      const response = await post(
        `${url}/v1/chat/completions`,
        { model: 'gpt-4o-mini', messages: [], ...cap },
        { 'x-tier': 'free' },
      );
      const { body, estimate } = await json(response);
      for (const field of Object.keys(cap)) expect(body[field]).toBe(500);
      expect(estimate.maxOutputTokens).toBe(500);
    }
  });

  it('meter() on an ordinary route is no provider call: it passes, and records what the handler reports', async () => {
    const sink = new MemorySink();
    const app = express();
    app.use(express.json());
    app.post('/api/threads/:id/messages', identify, meter({ pricing, sinks: [sink] }), (req, res) => {
      req.tollgate.recordUsage({ model: 'gpt-4o-mini', inputTokens: 100, outputTokens: 10 });
      res.json({ ok: true });
    });
    const url = await listen(app);
    // Before: 400 "needs a model" (the path's /messages suffix was taken for Anthropic's API).
    const response = await post(`${url}/api/threads/1/messages`, { text: 'hello' });
    expect(response.status).toBe(200);
    for (let i = 0; i < 100 && sink.records.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(sink.records[0]).toMatchObject({
      model: 'gpt-4o-mini',
      inputTokens: 100,
      outputTokens: 10,
      costNanoUsd: 21_000,
    });
  });

  it('an unknown model is never free: refused when reported on its own, billed at the admitted price on a declared call', async () => {
    const sink = new MemorySink();
    const errors: unknown[] = [];
    const app = express();
    app.use(express.json());
    app.post('/report', identify, meter({ pricing, sinks: [sink] }), (req, res) => {
      try {
        req.tollgate.recordUsage({ model: 'my-private-llm', inputTokens: 1000, outputTokens: 1000 });
      } catch (error) {
        errors.push(error);
      }
      res.json({ ok: true });
    });
    app.post('/declared', identify, meter({ api: 'openai.chat', pricing, sinks: [sink] }), (req, res) => {
      req.tollgate.recordUsage({ model: 'my-private-llm', inputTokens: 1000, outputTokens: 1000 });
      res.json({ ok: true });
    });
    const url = await listen(app);
    await (await post(`${url}/report`, {})).text();
    // Before: recorded at cost 0.
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toMatch(/my-private-llm.*no price/);
    await (await post(`${url}/declared`, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })).text();
    for (let i = 0; i < 100 && sink.records.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(sink.records).toHaveLength(1);
    // 1000 x $0.15 + 1000 x $0.60 per 1M tokens at the admitted gpt-4o-mini price.
    expect(sink.records[0]).toMatchObject({ model: 'gpt-4o-mini', costNanoUsd: 750_000 });
  });

  it('a budget or token limit on a route that declares no provider call refuses it, never lets it through unmetered', async () => {
    const stores = createMemoryStores();
    closers.push(() => stores.close());
    const guard = budgetGuard({ ledger: stores.ledger, pricing, log: false, global: { usd: 1 } });
    closers.push(() => guard.close());
    let reached = 0;
    const app = express();
    app.use(express.json());
    const handler: RequestHandler = (_req, res) => {
      reached++;
      res.json({ ok: true });
    };
    app.post('/budgeted', identify, meter({ pricing }), guard, handler);
    app.post('/limited', identify, meter({ pricing }), tokenRateLimit({ stores, limit: 1000 }), handler);
    app.use(apiErrorHandler());
    const url = await listen(app);
    for (const path of ['/budgeted', '/limited']) {
      const response = await post(`${url}${path}`, { model: 'gpt-4o', max_tokens: 100_000, messages: [] });
      expect(response.status).toBe(500);
      expect((await json(response)).error.code).toBe('misconfigured_route');
    }
    expect(reached).toBe(0);
  });
});
