// The cache key: the same request in another key order or form shares an entry; another caller, API or model does not.
import { describe, expect, it } from '@jest/globals';
import { cacheKey, normaliseBody, scopeOf } from '@tollgate/cache';

const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], temperature: 0, max_tokens: 50 };

describe('normaliseBody', () => {
  it('sorts keys at every depth and keeps array order', () => {
    const reordered = { max_tokens: 50, temperature: 0, messages: [{ content: 'hi', role: 'user' }], model: 'gpt-4o-mini' };
    expect(normaliseBody(reordered)).toBe(normaliseBody(body));
    expect(normaliseBody(body)).toBe('{"max_tokens":50,"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini","temperature":0}');
    const swapped = { ...body, messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }] };
    const swappedBack = { ...body, messages: [{ role: 'user', content: 'b' }, { role: 'user', content: 'a' }] };
    expect(normaliseBody(swapped)).not.toBe(normaliseBody(swappedBack));
  });

  it('leaves out the fields that do not change the answer, at the top level only', () => {
    const noisy = { ...body, user: 'alice', stream: true, stream_options: { include_usage: true }, metadata: { user_id: 'u1' }, safety_identifier: 'x', prompt_cache_key: 'k' };
    expect(normaliseBody(noisy)).toBe(normaliseBody(body));
    const nested = { ...body, tools: [{ type: 'function', function: { name: 'user', parameters: { user: { type: 'string' } } } }] };
    expect(normaliseBody(nested)).toContain('"user":{"type":"string"}');
  });

  it('tells apart bodies that differ in any other field', () => {
    expect(normaliseBody({ ...body, temperature: 1 })).not.toBe(normaliseBody(body));
    expect(normaliseBody({ ...body, max_tokens: 51 })).not.toBe(normaliseBody(body));
  });
});

describe('normaliseBody with many keys', () => {
  it('orders an object of any size as JSON.stringify of its sorted keys would', () => {
    // Few keys take the insertion sort, many the built-in one: both give the same order.
    for (const size of [2, 16, 17, 5_000]) {
      const names = Array.from({ length: size }, (_, index) => `k${(index * 7919) % size}-${String.fromCharCode(65 + (index % 50))}`);
      const object = Object.fromEntries(names.map((name, index) => [name, index]));
      const sorted = Object.fromEntries([...names].sort().map((name) => [name, object[name]]));
      expect(normaliseBody({ tools: [object] })).toBe(JSON.stringify({ tools: [sorted] }));
    }
  });
});

describe('cacheKey', () => {
  it('differs by scope, API and model, and is a SHA-256 hex digest', () => {
    const key = cacheKey('tenant:acme', 'openai.chat', 'gpt-4o-mini', body);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(cacheKey('tenant:acme', 'openai.chat', 'gpt-4o-mini', { ...body, stream: true })).toBe(key);
    expect(cacheKey('tenant:globex', 'openai.chat', 'gpt-4o-mini', body)).not.toBe(key);
    expect(cacheKey('tenant:acme', 'openai.responses', 'gpt-4o-mini', body)).not.toBe(key);
    expect(cacheKey('tenant:acme', 'openai.chat', 'gpt-4o', body)).not.toBe(key);
  });
});

describe('scopeOf', () => {
  it('names the tenant, the key or everyone, and no one without an identity', () => {
    expect(scopeOf('tenant', { keyId: 'k1', tenantId: 'acme' })).toBe('tenant:acme');
    expect(scopeOf('tenant', { keyId: 'k1' })).toBe('key:k1');
    expect(scopeOf('key', { keyId: 'k1', tenantId: 'acme' })).toBe('key:k1');
    expect(scopeOf('global', { keyId: 'k1', tenantId: 'acme' })).toBe('global');
    expect(scopeOf('tenant', undefined)).toBeUndefined();
    expect(scopeOf('key', undefined)).toBeUndefined();
  });
});
