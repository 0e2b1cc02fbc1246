// The proxy config's `cache` and per-tier `cache`: the contract passes as written, each mistake is named by its field.
import { describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import { createMemoryStores } from '@tollgate/core';
import { createGatewayApp } from '../src/app.js';
import { validateConfig } from '../src/config/index.js';
import { rejection } from './helpers/config-rejection.js';

describe('proxy config: cache', () => {
  it('accepts the contract as written, with a tier opting out', () => {
    const config = validateConfig({
      ...WITH_MOCK,
      tiers: { free: { requestsPerMinute: 5, cache: false }, pro: { requestsPerMinute: 600 } },
      cache: { store: 'redis', ttl: '10m', scope: 'tenant', maxEntryBytes: 1000000 },
    });
    expect(config.cache).toEqual({ store: 'redis', ttl: '10m', scope: 'tenant', maxEntryBytes: 1000000 });
    expect(config.tiers!.free!.cache).toBe(false);
    expect(validateConfig({ ...WITH_MOCK, tiers: { pro: { cache: { ttl: '1h' } } } }).tiers!.pro!.cache).toEqual({
      ttl: '1h',
    });
    expect(
      validateConfig({
        ...WITH_MOCK,
        cache: { promptCaching: { ttl: '1h', minTokens: 2048 }, costFraction: 0.1, maxBytes: 1024 },
      }).cache,
    ).toEqual({ promptCaching: { ttl: '1h', minTokens: 2048 }, costFraction: 0.1, maxBytes: 1024 });
  });

  it('names the field of each mistake', () => {
    expect(rejection({ cache: { store: 'disk' } })).toMatch(/cache\.store must be "memory" or "redis"/);
    expect(rejection({ cache: { ttl: 'soon' } })).toMatch(
      /cache\.ttl must be a positive number of ms or a string like/,
    );
    expect(rejection({ cache: { scope: 'user' } })).toMatch(/cache\.scope must be "tenant", "key" or "global"/);
    expect(rejection({ cache: { maxEntryBytes: 0 } })).toMatch(/cache\.maxEntryBytes must be a positive integer/);
    expect(rejection({ cache: { costFraction: 1.5 } })).toMatch(/cache\.costFraction must be a number from 0 to 1/);
    expect(rejection({ cache: { promptCaching: { ttl: '2h' } } })).toMatch(
      /cache\.promptCaching\.ttl must be "5m" or "1h"/,
    );
    expect(rejection({ cache: { tll: '1m' } })).toMatch(/cache has no field "tll"; did you mean "ttl"\?/);
    expect(rejection({ cache: true })).toMatch(/cache must be an object/);
    expect(rejection({ tiers: { free: { cache: 'no' } } })).toMatch(
      /tiers\.free\.cache must be true, false or \{ "ttl": "1h" \}/,
    );
    expect(rejection({ tiers: { free: { cache: { ttl: 'later' } } } })).toMatch(
      /tiers\.free\.cache\.ttl must be a positive number of ms/,
    );
    expect(rejection({ tiers: { free: { cache: { tll: '1h' } } } })).toMatch(
      /tiers\.free\.cache has no field "tll"; did you mean "ttl"\?/,
    );
  });

  it('refuses a Redis cache without Redis stores at start', () => {
    const stores = createMemoryStores();
    expect(() =>
      createGatewayApp(validateConfig({ ...WITH_MOCK, cache: { store: 'redis' } }), {
        stores,
        log: () => undefined,
        metrics: false,
      }),
    ).toThrow(/cache\.store "redis" needs Redis stores/);
  });
});
