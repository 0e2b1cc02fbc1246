// Model groups end to end: fallback, retries, retry-after, the first-byte rule, circuit breakers and cheapest, over real HTTP upstreams.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import OpenAI from 'openai';
import { fakeOnly } from './helpers/fake-clock.js';
import { caught, healthDetails, waitFor } from './helpers/proxy.js';
import { ask, failWith, inTurn, openAiAnswer, routingFixture } from './helpers/routing-upstreams.js';
import type { RoutingProxy } from './helpers/routing-upstreams.js';

const { upstream, routing, closeAll } = routingFixture();
afterEach(async () => {
  jest.useRealTimers();
  await closeAll();
});

async function healthOf(routed: RoutingProxy): Promise<{ target: string; breaker: string; calls: number }[]> {
  const health = await healthDetails<{ routing: { target: string; breaker: string; calls: number }[] }>(
    routed.proxy.url,
    routed.adminKey,
  );
  return health.routing;
}

describe('fallback and retries', () => {
  it('serves a request whose primary fails from the secondary, in the same request, billed as the secondary', async () => {
    const primary = await upstream(failWith(500));
    const secondary = await upstream(openAiAnswer('gpt-4o-mini', { input: 9, output: 4 }));
    const { routed, client } = await routing({
      upstreams: { primary: { baseUrl: `${primary.url}/v1` }, secondary: { baseUrl: `${secondary.url}/v1` } },
      modelGroups: {
        smart: {
          strategy: 'fallback',
          targets: [
            { upstream: 'primary', model: 'gpt-4o' },
            { upstream: 'secondary', model: 'gpt-4o-mini' },
          ],
        },
      },
      retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 10 },
    });
    const answer = await ask(client, 'smart');
    expect(answer.choices[0]!.message.content).toBe('Hello there');
    expect(primary.requests).toHaveLength(1);
    expect(secondary.requests).toHaveLength(1);
    expect((secondary.requests[0]!.body as { model: string }).model).toBe('gpt-4o-mini');
    const [record] = await routed.records();
    expect(record).toMatchObject({
      model: 'gpt-4o-mini',
      provider: 'secondary',
      requestedModel: 'smart',
      status: 200,
      inputTokens: 9,
      outputTokens: 4,
    });
    expect(routed.watch.notClosedOnce()).toEqual([]);
  });

  it('serves a stream whose primary fails before its first byte from the secondary', async () => {
    const primary = await upstream(failWith(503));
    const secondary = await upstream(openAiAnswer('gpt-4o-mini', { input: 9, output: 4 }));
    const { routed, client } = await routing({
      upstreams: { primary: { baseUrl: `${primary.url}/v1` }, secondary: { baseUrl: `${secondary.url}/v1` } },
      modelGroups: {
        smart: {
          targets: [
            { upstream: 'primary', model: 'gpt-4o' },
            { upstream: 'secondary', model: 'gpt-4o-mini' },
          ],
        },
      },
      retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 5 },
    });
    const stream = await client.chat.completions.create({
      model: 'smart',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 20,
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('Hello there');
    expect(primary.requests).toHaveLength(1);
    const [record] = await waitFor(
      async () => ((await routed.records()).length > 0 ? routed.records() : undefined),
      'the usage record',
    );
    expect(record).toMatchObject({ provider: 'secondary', model: 'gpt-4o-mini', stream: true, outputTokens: 4 });
    expect(routed.watch.notClosedOnce()).toEqual([]);
  });

  it('serves a flaky upstream after a retry', async () => {
    const flaky = await upstream(inTurn(failWith(503), openAiAnswer('gpt-4o-mini', { input: 5, output: 2 })));
    const { routed, client } = await routing({
      upstreams: { flaky: { baseUrl: `${flaky.url}/v1` } },
      modelGroups: { solo: { targets: [{ upstream: 'flaky', model: 'gpt-4o-mini' }] } },
      retry: { attempts: 2, baseDelayMs: 5, maxDelayMs: 20 },
    });
    const answer = await ask(client, 'solo');
    expect(answer.usage?.completion_tokens).toBe(2);
    expect(flaky.requests).toHaveLength(2);
    expect((await routed.records())[0]).toMatchObject({ status: 200, provider: 'flaky', model: 'gpt-4o-mini' });
  });

  it('honours retry-after-ms before trying the same upstream again', async () => {
    const limited = await upstream(
      inTurn(failWith(429, { 'retry-after-ms': '400' }), openAiAnswer('gpt-4o-mini', { input: 5, output: 2 })),
    );
    const seenAt: number[] = [];
    const answer = limited.answer;
    limited.answer = (request, res) => {
      seenAt.push(Date.now());
      answer(request, res);
    };
    const { client } = await routing({
      upstreams: { limited: { baseUrl: `${limited.url}/v1` } },
      modelGroups: { solo: { targets: [{ upstream: 'limited', model: 'gpt-4o-mini' }] } },
      retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 5000 },
    });
    await ask(client, 'solo');
    expect(seenAt).toHaveLength(2);
    expect(seenAt[1]! - seenAt[0]!).toBeGreaterThanOrEqual(380);
  });

  it('passes the last failure on as the upstream gave it when every try fails', async () => {
    const limited = await upstream(failWith(429, { 'retry-after': '0' }));
    const { routed, client } = await routing({
      upstreams: { limited: { baseUrl: `${limited.url}/v1` } },
      modelGroups: { solo: { targets: [{ upstream: 'limited', model: 'gpt-4o-mini' }] } },
      retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 5 },
    });
    const error = (await caught(ask(client, 'solo'))) as InstanceType<typeof OpenAI.APIError>;
    expect(error.status).toBe(429);
    expect(limited.requests).toHaveLength(3);
    expect(routed.watch.notClosedOnce()).toEqual([]);
  });

  it('never retries once the first streamed byte has reached the client', async () => {
    const cutting = await upstream((_request, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: { role: 'assistant', content: 'Hel' }, finish_reason: null }] })}\n\n`,
      );
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const spare = await upstream(openAiAnswer('gpt-4o-mini', { input: 5, output: 2 }));
    const { routed, client } = await routing({
      upstreams: { cutting: { baseUrl: `${cutting.url}/v1` }, spare: { baseUrl: `${spare.url}/v1` } },
      modelGroups: {
        smart: {
          targets: [
            { upstream: 'cutting', model: 'gpt-4o' },
            { upstream: 'spare', model: 'gpt-4o-mini' },
          ],
        },
      },
      retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 5 },
    });
    const stream = await client.chat.completions.create({
      model: 'smart',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 20,
      stream: true,
    });
    const received: string[] = [];
    const failure = await caught(
      (async () => {
        for await (const chunk of stream) received.push(chunk.choices[0]?.delta.content ?? '');
      })(),
    );
    expect(String(failure)).toMatch(/terminated|aborted|closed|socket/i);
    expect(received.join('')).toBe('Hel');
    expect(cutting.requests).toHaveLength(1);
    expect(spare.requests).toHaveLength(0);
    const [record] = await waitFor(
      async () => ((await routed.records()).length > 0 ? routed.records() : undefined),
      'the usage record',
    );
    expect(record).toMatchObject({ provider: 'cutting', model: 'gpt-4o', upstreamAborted: true });
    expect(routed.watch.notClosedOnce()).toEqual([]);
  });
});

describe('circuit breakers', () => {
  it('stops calling an open target for its cooldown, then a half-open probe closes it', async () => {
    // The breakers read Date.now(): Date is jest's, moved past the cooldown below.
    fakeOnly(['Date']);
    const broken = await upstream(failWith(500));
    const spare = await upstream(openAiAnswer('gpt-4o-mini', { input: 5, output: 2 }));
    // The operator's webhook: the breaker opening is an alert.
    const hook = await upstream((_request, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
    const { routed, client } = await routing({
      upstreams: { broken: { baseUrl: `${broken.url}/v1` }, spare: { baseUrl: `${spare.url}/v1` } },
      modelGroups: {
        smart: {
          targets: [
            { upstream: 'broken', model: 'gpt-4o' },
            { upstream: 'spare', model: 'gpt-4o-mini' },
          ],
        },
      },
      retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 5 },
      circuitBreaker: { failureThreshold: 2, cooldownMs: 60_000 },
      alerts: { webhooks: [{ url: `${hook.url}/alerts` }] },
    });
    await ask(client, 'smart');
    await ask(client, 'smart');
    expect(broken.requests).toHaveLength(2);
    expect((await healthOf(routed)).find((report) => report.target === 'broken/gpt-4o')).toMatchObject({
      breaker: 'open',
    });
    const metrics = await (await fetch(`${routed.proxy.url}/metrics`)).text();
    expect(metrics).toContain(
      'tollgate_route_breaker_state{target="broken/gpt-4o",upstream="broken",model="gpt-4o"} 2',
    );
    const alert = await waitFor(
      async () => hook.requests.find((request) => (request.body as { type?: string }).type === 'breaker_open'),
      'the breaker_open alert',
    );
    expect(alert.body).toMatchObject({
      type: 'breaker_open',
      message: expect.stringContaining('broken/gpt-4o') as unknown as string,
    });

    // Open: answered by the spare without a call to the broken upstream.
    await ask(client, 'smart');
    expect(broken.requests).toHaveLength(2);
    expect(spare.requests).toHaveLength(3);

    // Still open a millisecond before the cooldown's end.
    broken.answer = openAiAnswer('gpt-4o', { input: 5, output: 3 });
    jest.advanceTimersByTime(59_999);
    await ask(client, 'smart');
    expect(broken.requests).toHaveLength(2);
    expect(spare.requests).toHaveLength(4);
    // Past the cooldown one probe goes through; it succeeds and the breaker closes.
    jest.advanceTimersByTime(1);
    const probed = await ask(client, 'smart');
    expect(probed.usage?.completion_tokens).toBe(3);
    expect(broken.requests).toHaveLength(3);
    expect((await healthOf(routed)).find((report) => report.target === 'broken/gpt-4o')).toMatchObject({
      breaker: 'closed',
    });
    expect(routed.watch.notClosedOnce()).toEqual([]);
  });

  it('answers 503 at once when every target of the group is open', async () => {
    const broken = await upstream(failWith(502));
    const { routed, client } = await routing({
      upstreams: { broken: { baseUrl: `${broken.url}/v1` } },
      modelGroups: { solo: { targets: [{ upstream: 'broken', model: 'gpt-4o-mini' }] } },
      retry: { attempts: 0 },
      circuitBreaker: { failureThreshold: 1, cooldownMs: 30_000 },
    });
    expect(((await caught(ask(client, 'solo'))) as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
    const error = (await caught(ask(client, 'solo'))) as InstanceType<typeof OpenAI.APIError>;
    expect(error.status).toBe(503);
    expect(Number(error.headers?.get('retry-after'))).toBeGreaterThan(0);
    expect(broken.requests).toHaveLength(1);
    expect(routed.watch.notClosedOnce()).toEqual([]);
  });
});

describe('cheapest', () => {
  it('picks the cheaper healthy target, and moves to the other when it fails', async () => {
    const dear = await upstream(openAiAnswer('gpt-4o', { input: 5, output: 2 }));
    const cheap = await upstream(openAiAnswer('gpt-4o-mini', { input: 5, output: 2 }));
    const { routed, client } = await routing({
      upstreams: { dear: { baseUrl: `${dear.url}/v1` }, cheap: { baseUrl: `${cheap.url}/v1` } },
      modelGroups: {
        thrifty: {
          strategy: 'cheapest',
          targets: [
            { upstream: 'dear', model: 'gpt-4o' },
            { upstream: 'cheap', model: 'gpt-4o-mini' },
          ],
        },
      },
      retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 5 },
      circuitBreaker: { failureThreshold: 1, cooldownMs: 30_000 },
    });
    await ask(client, 'thrifty');
    expect(cheap.requests).toHaveLength(1);
    expect(dear.requests).toHaveLength(0);

    cheap.answer = failWith(500);
    await ask(client, 'thrifty');
    expect(cheap.requests).toHaveLength(2);
    expect(dear.requests).toHaveLength(1);
    // Its breaker open, the cheap target is not tried at all.
    await ask(client, 'thrifty');
    expect(cheap.requests).toHaveLength(2);
    expect(dear.requests).toHaveLength(2);
    const records = await routed.records();
    expect(records.map((record) => record.provider)).toEqual(['cheap', 'dear', 'dear']);
    // The reservation of the fallback request was moved to the dear target: each reservation closed once.
    expect(routed.watch.granted.length).toBe(4);
    expect(routed.watch.notClosedOnce()).toEqual([]);
  });
});

describe('upstream kinds and request classes', () => {
  it('calls Azure OpenAI at its deployment URL with its api-key header and api-version', async () => {
    const azure = await upstream(openAiAnswer('gpt-4o', { input: 5, output: 2 }));
    const { routed, client } = await routing({
      upstreams: {
        azure: {
          baseUrl: azure.url,
          api: 'azure-openai',
          apiKey: 'azure-secret',
          apiVersion: '2024-10-21',
          deployments: { 'gpt-4o': 'prod-4o' },
        },
      },
      modelGroups: { smart: { targets: [{ upstream: 'azure', model: 'gpt-4o' }] } },
    });
    await ask(client, 'smart');
    const seen = azure.requests[0]!;
    expect(seen.url).toBe('/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21');
    expect(seen.headers['api-key']).toBe('azure-secret');
    expect(seen.headers.authorization).toBeUndefined();
    expect((await routed.records())[0]).toMatchObject({ provider: 'azure', model: 'gpt-4o', requestedModel: 'smart' });
  });

  it('sends an `auto` request to the group its class rules pick (tools, the class header, else the default)', async () => {
    const small = await upstream(openAiAnswer('gpt-4o-mini', { input: 5, output: 2 }));
    const large = await upstream(openAiAnswer('gpt-4o', { input: 5, output: 2 }));
    const { routed, client } = await routing({
      upstreams: { small: { baseUrl: `${small.url}/v1` }, large: { baseUrl: `${large.url}/v1` } },
      modelGroups: {
        quick: { targets: [{ upstream: 'small', model: 'gpt-4o-mini' }] },
        deep: { targets: [{ upstream: 'large', model: 'gpt-4o' }] },
      },
      requestClasses: {
        auto: {
          rules: [
            { tools: true, group: 'deep' },
            { header: 'reasoning', group: 'deep' },
          ],
          default: 'quick',
        },
      },
    });
    await ask(client, 'auto');
    expect(small.requests).toHaveLength(1);
    await ask(client, 'auto', {
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }],
    });
    expect(large.requests).toHaveLength(1);
    await client.chat.completions.create(
      { model: 'auto', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20 },
      { headers: { 'x-tollgate-class': 'reasoning' } },
    );
    expect(large.requests).toHaveLength(2);
    const records = await routed.records();
    expect(records.map((record) => [record.requestedModel, record.model])).toEqual([
      ['auto', 'gpt-4o-mini'],
      ['auto', 'gpt-4o'],
      ['auto', 'gpt-4o'],
    ]);
  });

  it('reports active probes of each upstream on /healthz', async () => {
    const up = await upstream((request, res) => {
      if (request.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"data":[]}');
        return;
      }
      openAiAnswer('gpt-4o-mini', { input: 5, output: 2 })(request, res);
    });
    const { routed } = await routing({
      upstreams: { up: { baseUrl: `${up.url}/v1` } },
      modelGroups: { solo: { targets: [{ upstream: 'up', model: 'gpt-4o-mini' }] } },
      healthProbe: { intervalMs: 60_000, timeoutMs: 1000 },
    });
    const report = await waitFor(
      async () => ((await healthOf(routed)) as { probe?: { ok: boolean } }[])[0]?.probe,
      'a probe',
    );
    expect(report.ok).toBe(true);
    expect(up.requests.some((request) => request.method === 'GET' && request.url === '/v1/models')).toBe(true);
  });
});
