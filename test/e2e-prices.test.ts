// Prices from a maintained source (a file, a local URL) refreshed while the gateway runs, and calls priced by the
// service tier that served them (OpenAI's `service_tier`), through the official SDK, on memory and on Redis.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { TollgateStores, UsageRecord } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import {
  closeServer,
  deleteRedisPrefix,
  newApiKey,
  readUsageLog,
  REDIS_URL,
  sha256Hex,
  startFakeUpstream,
  startProxy,
  waitFor,
} from './helpers/proxy.js';
import type { FakeUpstream, RunningProxy } from './helpers/proxy.js';
import { costOf, priceFile, readPrices, tenantSpend, tierUpstream } from './helpers/price-source.js';
import type { PriceStatus } from './helpers/price-source.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-prices-'));
const adminKey = newApiKey();
const userKey = newApiKey();
/** Keys of tenants whose day budget is near its end: one standard call fits `tight`, one fast US call `roomy`. */
const tightKey = newApiKey();
const roomyKey = newApiKey();
/** A key with room for a few fast US calls (the fields left unsaid by the answer). */
const unsaidKey = newApiKey();

/** A price file served over HTTP with an ETag, as a maintained source is; it notes the If-None-Match it is sent. */
async function startPriceServer(): Promise<{
  url: string;
  body: string;
  asked: IncomingHttpHeaders[];
  close(): Promise<void>;
}> {
  const state = { body: priceFile(1, 2), asked: [] as IncomingHttpHeaders[] };
  const server = createServer((req, res) => {
    state.asked.push(req.headers);
    const etag = `"${sha(state.body)}"`;
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', etag });
    res.end(state.body);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as { port: number };
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/model_prices_and_context_window.json`,
    close: () => closeServer(server),
  });
}

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

/** One gateway (and its upstream) reading `source`, on one kind of store. */
class Setup {
  proxy!: RunningProxy;
  upstream!: FakeUpstream;
  readonly tiers = tierUpstream();
  stores: TollgateStores | undefined;
  readonly usageLog = path.join(dir, `${randomUUID()}-usage.jsonl`);
  readonly prefix = `tg-test:prices:${randomUUID()}:`;

  constructor(
    readonly store: 'memory' | 'redis',
    readonly source: string,
  ) {}

  async start(): Promise<void> {
    this.upstream = await startFakeUpstream(this.tiers.answer);
    const config: GatewayConfig = {
      usageLog: this.usageLog,
      adminKeySha256: sha256Hex(adminKey),
      upstreams: {
        openai: { baseUrl: `${this.upstream.url}/v1`, apiKey: 'sk-upstream' },
        anthropic: { baseUrl: this.upstream.url, apiKey: 'sk-ant-upstream' },
      },
      models: {
        'own-model': {
          provider: 'openai',
          inputPerMTok: 4,
          outputPerMTok: 8,
          serviceTiers: { flex: { inputPerMTok: 2, outputPerMTok: 4 } },
        },
      },
      prices: { source: this.source, refresh: 100 },
      tiers: { pro: { requestsPerMinute: 10_000, tokensPerMinute: 100_000_000 } },
      tenants: {
        acme: { tier: 'pro', budget: { usd: 100, period: 'day' } },
        tight: { tier: 'pro', budget: { usd: 0.0006, period: 'day' } },
        roomy: { tier: 'pro', budget: { usd: 0.002, period: 'day' } },
        unsaid: { tier: 'pro', budget: { usd: 1, period: 'day' } },
      },
      keys: [
        { id: 'acme-key', sha256: sha256Hex(userKey), tenant: 'acme', scopes: ['chat'] },
        { id: 'tight-key', sha256: sha256Hex(tightKey), tenant: 'tight', scopes: ['chat'] },
        { id: 'roomy-key', sha256: sha256Hex(roomyKey), tenant: 'roomy', scopes: ['chat'] },
        { id: 'unsaid-key', sha256: sha256Hex(unsaidKey), tenant: 'unsaid', scopes: ['chat'] },
      ],
      ...(this.store === 'redis' ? { redis: { blocks: false } } : {}),
    };
    if (this.store === 'redis')
      this.stores = createRedisStores({ url: REDIS_URL, prefix: this.prefix, timeoutMs: 5_000 });
    this.proxy = await startProxy(config, this.stores ? { stores: this.stores } : {});
  }

  async close(): Promise<void> {
    await this.proxy?.close();
    await this.upstream?.close();
    await this.stores?.close();
    if (this.store === 'redis') await deleteRedisPrefix(this.prefix);
  }

  prices(): Promise<PriceStatus> {
    return readPrices(this.proxy.url, adminKey);
  }

  /** The tenant's budget once no reservation holds any of it: what its calls were charged. */
  settledSpend(tenant = 'acme'): Promise<number> {
    return waitFor(async () => {
      const budget = await tenantSpend(this.proxy.url, adminKey, tenant);
      return budget.reservedNanoUsd === 0 ? budget.spentNanoUsd : undefined;
    }, 'the budget settled');
  }

  /** The tenant's spend once it is no longer `previous` (a settle landed), whatever is still reserved. */
  spendAfter(previous: number): Promise<number> {
    return waitFor(async () => {
      const { spentNanoUsd } = await tenantSpend(this.proxy.url, adminKey, 'acme');
      return spentNanoUsd === previous ? undefined : spentNanoUsd;
    }, `spend other than ${previous}`);
  }

  /** Waits for the source's first load. */
  pricesLoaded(): Promise<PriceStatus> {
    return waitFor(async () => {
      const status = await this.prices();
      return status.loadedAt === null ? undefined : status;
    }, 'a first load of the price source');
  }

  /** Waits until the gateway's prices are no longer `version` (the refresh took the new source). */
  pricesAfter(version: string): Promise<PriceStatus> {
    return waitFor(async () => {
      const status = await this.prices();
      return status.version === version ? undefined : status;
    }, `prices other than ${version}`);
  }

  /** Sends one chat call and returns its usage record. */
  async call(content: string, extra: Record<string, unknown> = {}, model = 'gpt-4o-mini'): Promise<UsageRecord> {
    const requestId = randomUUID();
    try {
      await this.client().chat.completions.create(
        { model, messages: [{ role: 'user', content }], max_tokens: 100, ...extra },
        { headers: { 'x-request-id': requestId } },
      );
    } catch (error) {
      // A refusal is the test's to judge from the record.
      if (!(error instanceof OpenAI.APIError)) throw error;
    }
    return this.recordOf(requestId);
  }

  /**
   * Starts a chat stream and reads its first chunk; `finish` reads the rest and returns the usage record (and notes
   * the `cost_usd` the stream's usage chunk told, when the client asked for one). A prompt that says `hold:<tag>` is
   * held by the upstream after its first chunk until `tiers.release(tag)`.
   */
  async startStream(content: string, extra: Record<string, unknown> = {}) {
    const requestId = randomUUID();
    const stream = await this.client().chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content }], max_tokens: 100, stream: true, ...extra },
      { headers: { 'x-request-id': requestId } },
    );
    const chunks = stream[Symbol.asyncIterator]();
    const first = await chunks.next();
    expect(first.done).toBe(false);
    const handle = {
      costUsdTold: undefined as number | undefined,
      finish: async () => {
        for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
          const usage = next.value.usage as { cost_usd?: number } | null | undefined;
          if (usage?.cost_usd !== undefined) handle.costUsdTold = usage.cost_usd;
        }
        return this.recordOf(requestId);
      },
    };
    return handle;
  }

  /** Streams one call of the Responses API to its end and returns its usage record. */
  async respond(input: string, extra: Record<string, unknown> = {}): Promise<UsageRecord> {
    const requestId = randomUUID();
    const stream = await this.client().responses.create(
      { model: 'gpt-4o-mini', input, max_output_tokens: 100, stream: true, ...extra },
      { headers: { 'x-request-id': requestId } },
    );
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(types).toContain('response.completed');
    return this.recordOf(requestId);
  }

  /**
   * One Messages call through the Anthropic SDK (streamed or not) and its usage record, with the status of a refusal
   * (an `APIError`) when there was one.
   */
  async ask(
    content: string,
    stream: boolean,
    extra: Partial<Anthropic.MessageCreateParamsNonStreaming> = {},
    key = userKey,
  ): Promise<UsageRecord & { refusedWith?: number }> {
    const requestId = randomUUID();
    const anthropic = new Anthropic({ apiKey: key, baseURL: this.proxy.url, maxRetries: 0 });
    const request = {
      model: 'claude-opus-5',
      max_tokens: 100,
      messages: [{ role: 'user' as const, content }],
      ...extra,
    };
    const options = { headers: { 'x-request-id': requestId } };
    try {
      if (stream) await anthropic.messages.stream(request, options).finalMessage();
      else await anthropic.messages.create(request, options);
    } catch (error) {
      if (!(error instanceof Anthropic.APIError)) throw error;
      return { ...(await this.recordOf(requestId)), refusedWith: error.status };
    }
    return this.recordOf(requestId);
  }

  private client(): OpenAI {
    return new OpenAI({ apiKey: userKey, baseURL: `${this.proxy.url}/v1`, maxRetries: 0 });
  }

  private recordOf(requestId: string): Promise<UsageRecord> {
    return waitFor(async () => {
      await this.proxy.app.flushUsage();
      return readUsageLog(this.usageLog).find((record) => record.requestId === requestId);
    }, `the record of ${requestId}`);
  }
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each(['memory', 'redis'] as const)('prices from a file source, on %s', (store) => {
  const file = path.join(dir, `${store}-prices.json`);
  let setup: Setup;

  beforeAll(async () => {
    writeFileSync(file, priceFile(1, 2));
    setup = new Setup(store, file);
    await setup.start();
  }, 30_000);
  afterAll(() => setup.close());

  it('loads the source, uses a change for the next reservation and record, and says what changed', async () => {
    const first = await setup.pricesLoaded();
    expect(first.source).toBe(file);
    expect(first.loadedAt).not.toBeNull();
    const before = await setup.call('hello');
    expect(before.costNanoUsd).toBe(costOf(1, 2));
    expect(before.priceVersion).toBe(first.version);

    writeFileSync(file, priceFile(3, 6));
    const second = await setup.pricesAfter(first.version);
    expect(second.changes).toEqual([
      expect.objectContaining({
        model: 'gpt-4o-mini',
        before: expect.objectContaining({ inputPerMTok: 1 }),
        after: expect.objectContaining({ inputPerMTok: 3 }),
      }),
    ]);
    const after = await setup.call('hello');
    expect(after.costNanoUsd).toBe(costOf(3, 6));
    expect(after.priceVersion).toBe(second.version);
    // Reserved at the new prices too: the same prompt's bound is three times the old one.
    expect(after.estimatedCostNanoUsd).toBe(before.estimatedCostNanoUsd * 3);
  });

  it('refuses an invalid source whole and keeps the prices in use', async () => {
    const kept = await setup.prices();
    for (const bad of [
      priceFile(-1, 2),
      priceFile(1, 2, { output_cost_per_token_flex: 'cheap' }),
      priceFile(20_000, 2),
      '{"gpt-4o-mini": ',
    ]) {
      const failures = (await setup.prices()).failures;
      writeFileSync(file, bad);
      const refused = await waitFor(async () => {
        const status = await setup.prices();
        return status.failures > failures ? status : undefined;
      }, 'a refused read');
      expect(refused.version).toBe(kept.version);
      expect(refused.lastError?.message).toMatch(/prices source|price|USD/);
    }
    const record = await setup.call('hello');
    expect(record.priceVersion).toBe(kept.version);
    expect(record.costNanoUsd).toBe(costOf(3, 6));
  });

  it('bills an answer served at flex at the flex price, and reserves at the tier asked', async () => {
    writeFileSync(file, priceFile(3, 6));
    const standard = await setup.call('tier please');
    const flex = await setup.call('tier please', { service_tier: 'flex' });
    expect(flex.serviceTier).toBe('flex');
    expect(flex.costNanoUsd).toBe(costOf(1.5, 3));
    expect(flex.estimatedCostNanoUsd).toBeLessThan(standard.estimatedCostNanoUsd);
    expect(standard.serviceTier).toBe('default');
    expect(standard.costNanoUsd).toBe(costOf(3, 6));
  });

  it('charges nothing for a flex request refused with 429', async () => {
    const refused = await setup.call('refuse me', { service_tier: 'flex' });
    expect(refused.status).toBe(429);
    expect(refused.costNanoUsd).toBe(0);
  });

  it('bills an answer served at priority at the priority price, whatever was asked', async () => {
    const priority = await setup.call('serve:priority');
    expect(priority.serviceTier).toBe('priority');
    expect(priority.costNanoUsd).toBe(costOf(6, 12));
  });

  it("prices the config's own model by its serviceTiers, over any source", async () => {
    const flex = await setup.call('own', { service_tier: 'flex' }, 'own-model');
    expect(flex.costNanoUsd).toBe(costOf(2, 4));
    const standard = await setup.call('own', {}, 'own-model');
    expect(standard.costNanoUsd).toBe(costOf(4, 8));
  });

  it('bills a chat stream whose chunks say flex at the flex price, in the record and the budget', async () => {
    // Asked for flex, and served flex without asking: the chunks' `service_tier` prices the record either way.
    for (const [content, extra] of [
      ['stream flex', { service_tier: 'flex' }],
      ['stream serve:flex', {}],
    ] as const) {
      const spent = await setup.settledSpend();
      const record = await (await setup.startStream(content, extra)).finish();
      expect(record).toMatchObject({ stream: true, usageSource: 'provider', serviceTier: 'flex', status: 200 });
      expect(record.costNanoUsd).toBe(costOf(1.5, 3));
      expect((await setup.settledSpend()) - spent).toBe(costOf(1.5, 3));
    }
    const standard = await (await setup.startStream('stream')).finish();
    expect(standard.serviceTier).toBe('default');
    expect(standard.costNanoUsd).toBe(costOf(3, 6));
  });

  it.each([false, true])(
    'bills an Anthropic answer (stream: %s) by its iterations, at fast speed in the US',
    async (stream) => {
      const before = await setup.settledSpend();
      const record = await setup.ask('compact and answer', stream);
      // The compaction docs' example on Opus 5: 203,000 in and 4,500 out over both calls, at the fast prices ($10 / $50)
      // times 1.1 for US-only inference.
      const billed = 203_000 * 11_000 + 4_500 * 55_000;
      expect(record).toMatchObject({
        model: 'claude-opus-5',
        inputTokens: 203_000,
        outputTokens: 4_500,
        speed: 'fast',
        inferenceGeo: 'us',
        costNanoUsd: billed,
      });
      expect(record.iterations?.map((call) => call.kind)).toEqual(['compaction', 'message']);
      expect((await setup.settledSpend()) - before).toBe(billed);
    },
  );

  it('bills a Responses stream at the tier its response.completed says served it', async () => {
    const spent = await setup.settledSpend();
    const flex = await setup.respond('responses', { service_tier: 'flex' });
    expect(flex).toMatchObject({ stream: true, usageSource: 'provider', serviceTier: 'flex' });
    expect(flex.costNanoUsd).toBe(costOf(1.5, 3));
    expect((await setup.settledSpend()) - spent).toBe(costOf(1.5, 3));
    // Asked for nothing (`auto` while in progress), completed at priority: priced at priority.
    const priority = await setup.respond('responses serve:priority');
    expect(priority.serviceTier).toBe('priority');
    expect(priority.costNanoUsd).toBe(costOf(6, 12));
  });

  it('settles a stream in flight when new prices load at the prices it was reserved with', async () => {
    const reservedAt = await setup.prices();
    const spent = await setup.settledSpend();
    const tag = `${store}Inflight`;
    const inFlight = await setup.startStream(`stream hold:${tag}`, { stream_options: { include_usage: true } });
    await setup.tiers.started(tag);

    writeFileSync(file, priceFile(5, 10));
    const loaded = await setup.pricesAfter(reservedAt.version);
    // A call started after the load is reserved and billed at the new prices (a prompt of as many tokens that the
    // upstream does not hold: a JSON call reaches it as a stream)...
    const next = await setup.call(`stream wait:${tag}`);
    expect(next.priceVersion).toBe(loaded.version);
    expect(next.costNanoUsd).toBe(costOf(5, 10));
    const spentBefore = await setup.spendAfter(spent);
    setup.tiers.release(tag);
    const record = await inFlight.finish();
    // ...the one in flight at the old ones, from its reservation to the cost its client was told, its record and its
    // budget charge.
    expect(record.priceVersion).toBe(reservedAt.version);
    expect(record.costNanoUsd).toBe(costOf(3, 6));
    expect(inFlight.costUsdTold).toBe(costOf(3, 6) / 1e9);
    expect(record.estimatedCostNanoUsd * 5).toBe(next.estimatedCostNanoUsd * 3);
    expect((await setup.settledSpend()) - spentBefore).toBe(costOf(3, 6));
    expect(spentBefore - spent).toBe(costOf(5, 10));
  });
});

// A gateway of its own: the compaction answers above teach claude-opus-5 an input margin (billed far past the bound),
// which later reservations of that model carry.
describe.each(['memory', 'redis'] as const)(
  'a budget near its end, on Claude Opus 5 (fast $10 / $50 per MTok, 1.1x in the US), on %s',
  (store) => {
    let setup: Setup;

    beforeAll(async () => {
      const file = path.join(dir, `${store}-near-end-prices.json`);
      writeFileSync(file, priceFile(1, 2));
      setup = new Setup(store, file);
      await setup.start();
    }, 30_000);
    afterAll(() => setup.close());

    // 16 output tokens (the smallest answer a budget grants): each call is reserved whole or refused. Worst cases,
    // with a short prompt's input bound of b tokens at the priciest class (the 1-hour cache write): standard
    // 16 x $25 + b x $10 per MTok = 400,000 + b x 10,000 nano-USD; fast 800,000 + b x 20,000; fast in the US 1.1x that.
    const cap = { max_tokens: 16 };

    it('refuses a fast call its budget cannot hold, up front, JSON or streamed, and serves a standard one', async () => {
      // The tight tenant's $0.0006 holds a standard call's worst case, not a fast one's.
      for (const stream of [false, true]) {
        const refused = await setup.ask('fast please', stream, { ...cap, speed: 'fast' }, tightKey);
        expect(refused.refusedWith).toBe(429);
        expect(refused).toMatchObject({ status: 429, refusedBy: 'budget', costNanoUsd: 0 });
      }
      expect(await setup.settledSpend('tight')).toBe(0);
      const standard = await setup.ask('standard please', false, cap, tightKey);
      // 1 input token and 16 output tokens at $5 / $25 per MTok.
      expect(standard).toMatchObject({ status: 200, speed: 'standard', costNanoUsd: 5_000 + 400_000 });
      expect(standard.overshootNanoUsd ?? 0).toBe(0);
      expect(await setup.settledSpend('tight')).toBe(405_000);
    });

    it('settles a fast US-only call that fits at its reservation or under, never above it', async () => {
      const record = await setup.ask('fast in the US', false, { ...cap, speed: 'fast', inference_geo: 'us' }, roomyKey);
      // 1 input token and 16 output tokens at $11 / $55 per MTok.
      expect(record).toMatchObject({ status: 200, speed: 'fast', inferenceGeo: 'us', costNanoUsd: 11_000 + 880_000 });
      expect(record.overshootNanoUsd ?? 0).toBe(0);
      expect(record.estimatedCostNanoUsd).toBeGreaterThanOrEqual(record.costNanoUsd);
      expect(await setup.settledSpend('roomy')).toBe(891_000);
    });

    it('bills a fast US-only call whose answer names no speed or region at what it asked for, JSON or streamed', async () => {
      for (const stream of [false, true]) {
        const asked = { ...cap, speed: 'fast' as const, inference_geo: 'us' };
        const record = await setup.ask('fast in the US, unsaid', stream, asked, unsaidKey);
        // As the call above: $11 / $55 per MTok, not the standard $5 / $25 an answer without the fields would give.
        expect(record).toMatchObject({ status: 200, speed: 'fast', inferenceGeo: 'us', costNanoUsd: 11_000 + 880_000 });
      }
      expect(await setup.settledSpend('unsaid')).toBe(2 * 891_000);
    });
  },
);

describe('prices from a local URL', () => {
  let server: Awaited<ReturnType<typeof startPriceServer>>;
  let setup: Setup;

  beforeAll(async () => {
    server = await startPriceServer();
    setup = new Setup('memory', server.url);
    await setup.start();
  }, 30_000);
  afterAll(async () => {
    await setup.close();
    await server.close();
  });

  it('loads the URL, asks again with its ETag, and takes a change', async () => {
    const first = await setup.pricesLoaded();
    expect((await setup.call('hello')).costNanoUsd).toBe(costOf(1, 2));
    // Asked again with the ETag it was given: unchanged is a 304, nothing reloaded.
    await waitFor(() => (server.asked.some((headers) => headers['if-none-match']) ? true : undefined), 'a 304');
    expect((await setup.prices()).version).toBe(first.version);

    server.body = priceFile(2, 4);
    const second = await setup.pricesAfter(first.version);
    const record = await setup.call('hello');
    expect(record.priceVersion).toBe(second.version);
    expect(record.costNanoUsd).toBe(costOf(2, 4));

    server.body = 'not json';
    await waitFor(async () => ((await setup.prices()).failures > 0 ? true : undefined), 'a refused read');
    expect((await setup.call('hello')).costNanoUsd).toBe(costOf(2, 4));
  });
});
