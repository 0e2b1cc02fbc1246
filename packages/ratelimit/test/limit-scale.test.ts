// limitScale: a per-request factor on a limiter's limit (how a guard's throttle slows a caller down), requests and tokens.
import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import type { Request, RequestHandler } from 'express';
import { createMemoryStores, getContext, TollgateError, type UsageEstimate } from '@tollgate/core';
import { tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { testApp } from './helpers.js';

/** Keys named `slow-*` are throttled to a tenth of their limit; the rest get it whole. */
const throttleSlowKeys = (req: Request) => (req.tollgate.identity?.keyId.startsWith('slow-') ? 0.1 : 1);

const estimateFromHeader: RequestHandler = (req, res, next) => {
  const inputTokens = Number(req.header('x-input') ?? 0);
  const estimate: UsageEstimate = {
    provider: 'openai',
    model: 'gpt-4o-mini',
    inputTokens,
    maxOutputTokens: 0,
    costNanoUsd: 0,
    totalTokens: inputTokens,
  };
  getContext(req, res).estimate = estimate;
  next();
};

async function statuses(
  app: Parameters<typeof request>[0],
  count: number,
  headers: Record<string, string>,
): Promise<number[]> {
  const result: number[] = [];
  for (let i = 0; i < count; i++) result.push((await request(app).get('/v1/x').set(headers)).status);
  return result;
}

describe('limitScale', () => {
  it('scales the request limit of the callers it names, and only theirs', async () => {
    const app = testApp(tieredRateLimit({ tiers: { pro: 30 }, limitScale: throttleSlowKeys }));
    expect(await statuses(app, 4, { 'x-key': 'slow-1', 'x-tier': 'pro' })).toEqual([200, 200, 200, 429]);
    const refused = await request(app).get('/v1/x').set({ 'x-key': 'slow-1', 'x-tier': 'pro' });
    expect(refused.body.error.message).toMatch(/limit 3 per minute/);
    expect((await statuses(app, 10, { 'x-key': 'fast-1', 'x-tier': 'pro' })).every((status) => status === 200)).toBe(
      true,
    );
  });

  it('never scales a limit below one request, and ignores factors of 1 and above or not numbers', async () => {
    const tiny = testApp(tieredRateLimit({ limit: 5, limitScale: () => 0 }));
    expect(await statuses(tiny, 2, { 'x-key': 'k' })).toEqual([200, 429]);
    const ignored = testApp(tieredRateLimit({ limit: 2, limitScale: () => Number.NaN }));
    expect(await statuses(ignored, 3, { 'x-key': 'k' })).toEqual([200, 200, 429]);
  });

  it('scales a token limit per layer', async () => {
    const stores = createMemoryStores();
    const app = testApp([
      estimateFromHeader,
      tokenRateLimit({ stores, layers: [{ name: 'key', by: 'key', limit: 1000, limitScale: throttleSlowKeys }] }),
    ]);
    expect((await request(app).get('/v1/x').set({ 'x-key': 'slow-2', 'x-input': '150' })).status).toBe(429);
    expect((await request(app).get('/v1/x').set({ 'x-key': 'slow-3', 'x-input': '90' })).status).toBe(200);
    expect((await request(app).get('/v1/x').set({ 'x-key': 'fast-2', 'x-input': '900' })).status).toBe(200);
    await stores.close();
  });

  it('must be a function', () => {
    expect(() => tieredRateLimit({ limitScale: 0.5 as unknown as () => number })).toThrow(TollgateError);
  });
});
