// Every refused or failed path of a routed request settles each budget reservation exactly once (one test per path).
import { afterEach, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { caught, waitFor } from './helpers/proxy.js';
import {
  anthropicAnswer,
  ask,
  failWith,
  openAiAnswer,
  routingFixture,
  startSwitchableUpstream,
} from './helpers/routing-upstreams.js';
import type { RoutingProxy } from './helpers/routing-upstreams.js';

type ApiFailure = InstanceType<typeof OpenAI.APIError>;
const { upstream, routing, closeAll } = routingFixture();
afterEach(closeAll);

/** Settles run when the response closes: wait for the record, then every granted reservation must be closed once. */
async function expectEachSettledOnce(routed: RoutingProxy, grants: number): Promise<void> {
  await waitFor(async () => ((await routed.records()).length > 0 ? true : undefined), 'the usage record');
  await waitFor(
    () => (routed.watch.granted.every((id) => routed.watch.closes.has(id)) ? true : undefined),
    'every reservation closed',
  );
  expect(routed.watch.granted).toHaveLength(grants);
  expect(routed.watch.notClosedOnce()).toEqual([]);
}

const retry = { attempts: 2, baseDelayMs: 1, maxDelayMs: 5 };

describe('each reservation settles exactly once', () => {
  it('when every try fails with a 5xx (502 to the client)', async () => {
    const broken = await upstream(failWith(500));
    const { routed, client } = await routing({
      upstreams: { broken: { baseUrl: `${broken.url}/v1` } },
      modelGroups: { solo: { targets: [{ upstream: 'broken', model: 'gpt-4o-mini' }] } },
      retry,
    });
    expect(((await caught(ask(client, 'solo'))) as ApiFailure).status).toBe(502);
    expect(broken.requests).toHaveLength(3);
    await expectEachSettledOnce(routed, 1);
    expect((await routed.records())[0]).toMatchObject({ status: 502, costNanoUsd: 0 });
  });

  it('when no target can be reached at all', async () => {
    // An upstream that was there and is gone: its port refuses connections.
    const gone = await startSwitchableUpstream(failWith(500));
    const url = gone.url;
    await gone.close();
    const { routed, client } = await routing({
      upstreams: { gone: { baseUrl: `${url}/v1` } },
      modelGroups: { solo: { targets: [{ upstream: 'gone', model: 'gpt-4o-mini' }] } },
      retry,
    });
    const error = (await caught(ask(client, 'solo'))) as ApiFailure;
    expect(error.status).toBe(502);
    expect(error.message).toMatch(/could not be reached/);
    await expectEachSettledOnce(routed, 1);
  });

  it('when the fallback target is dearer: the reservation is re-priced, old and new each closed once', async () => {
    const cheap = await upstream(failWith(503));
    const dear = await upstream(openAiAnswer('gpt-4o', { input: 8, output: 5 }));
    const { routed, client } = await routing({
      upstreams: { cheap: { baseUrl: `${cheap.url}/v1` }, dear: { baseUrl: `${dear.url}/v1` } },
      modelGroups: {
        smart: {
          targets: [
            { upstream: 'cheap', model: 'gpt-4o-mini' },
            { upstream: 'dear', model: 'gpt-4o' },
          ],
        },
      },
      retry,
    });
    await ask(client, 'smart');
    await expectEachSettledOnce(routed, 2);
    expect((await routed.records())[0]).toMatchObject({ provider: 'dear', model: 'gpt-4o', status: 200 });
  });

  it('when the budget cannot cover the fallback target: it is skipped and the first failure passed on', async () => {
    const cheap = await upstream(failWith(503));
    const dear = await upstream(openAiAnswer('gpt-4o', { input: 8, output: 5 }));
    const { routed, client } = await routing(
      {
        upstreams: { cheap: { baseUrl: `${cheap.url}/v1` }, dear: { baseUrl: `${dear.url}/v1` } },
        modelGroups: {
          smart: {
            targets: [
              { upstream: 'cheap', model: 'gpt-4o-mini' },
              { upstream: 'dear', model: 'gpt-4o' },
            ],
          },
        },
        retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 5 },
      },
      0.0001,
    );
    expect(((await caught(ask(client, 'smart'))) as ApiFailure).status).toBe(502);
    expect(dear.requests).toHaveLength(0);
    await expectEachSettledOnce(routed, 1);
  });

  it('when no target can express the request (502 naming why)', async () => {
    const claude = await upstream(anthropicAnswer('claude-haiku-4-5', { input: 8, output: 5 }));
    const { routed, client } = await routing({
      upstreams: { claude: { baseUrl: claude.url, api: 'anthropic' } },
      modelGroups: { 'to-claude': { targets: [{ upstream: 'claude', model: 'claude-haiku-4-5' }] } },
      retry,
    });
    const error = (await caught(ask(client, 'to-claude', { n: 2 }))) as ApiFailure;
    expect(error.status).toBe(502);
    expect(error.message).toMatch(/claude\/claude-haiku-4-5: .*n > 1/);
    expect(claude.requests).toHaveLength(0);
    await expectEachSettledOnce(routed, 1);
  });

  it('when every breaker is open (503 without a call)', async () => {
    const broken = await upstream(failWith(500));
    const { routed, client } = await routing({
      upstreams: { broken: { baseUrl: `${broken.url}/v1` } },
      modelGroups: { solo: { targets: [{ upstream: 'broken', model: 'gpt-4o-mini' }] } },
      retry: { attempts: 0 },
      circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 },
    });
    await caught(ask(client, 'solo'));
    await expectEachSettledOnce(routed, 1);
    expect(((await caught(ask(client, 'solo'))) as ApiFailure).status).toBe(503);
    await waitFor(async () => ((await routed.records()).length === 2 ? true : undefined), 'the second record');
    expect(routed.watch.granted).toHaveLength(2);
    expect(routed.watch.notClosedOnce()).toEqual([]);
  });

  it('when the upstream refuses the request (a 4xx passed on, no retry)', async () => {
    const strict = await upstream(failWith(400));
    const { routed, client } = await routing({
      upstreams: { strict: { baseUrl: `${strict.url}/v1` } },
      modelGroups: { solo: { targets: [{ upstream: 'strict', model: 'gpt-4o-mini' }] } },
      retry,
    });
    expect(((await caught(ask(client, 'solo'))) as ApiFailure).status).toBe(400);
    expect(strict.requests).toHaveLength(1);
    await expectEachSettledOnce(routed, 1);
  });

  it('when the client leaves while a retry waits', async () => {
    const slow = await upstream(failWith(503, { 'retry-after-ms': '1500' }));
    const { routed, client } = await routing({
      upstreams: { slow: { baseUrl: `${slow.url}/v1` } },
      modelGroups: { solo: { targets: [{ upstream: 'slow', model: 'gpt-4o-mini' }] } },
      retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 5000 },
    });
    const leaving = new AbortController();
    setTimeout(() => leaving.abort(), 300);
    await caught(
      client.chat.completions.create(
        { model: 'solo', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20 },
        { signal: leaving.signal },
      ),
    );
    await expectEachSettledOnce(routed, 1);
    // The wait ended with the client: no second call went out.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(slow.requests).toHaveLength(1);
  });
});
