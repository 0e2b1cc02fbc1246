// The cache key: the same request in another key order or form shares an entry; another caller, API or model does not.
import { describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { cacheKey, normaliseBody, scopeOf } from '../src/cache-key.js';

const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], temperature: 0, max_tokens: 50 };

describe('normaliseBody', () => {
  it('sorts keys at every depth and keeps array order', () => {
    const reordered = {
      max_tokens: 50,
      temperature: 0,
      messages: [{ content: 'hi', role: 'user' }],
      model: 'gpt-4o-mini',
    };
    expect(normaliseBody(reordered)).toBe(normaliseBody(body));
    expect(normaliseBody(body)).toBe(
      '{"max_tokens":50,"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini","temperature":0}',
    );
    const swapped = {
      ...body,
      messages: [
        { role: 'user', content: 'a' },
        { role: 'user', content: 'b' },
      ],
    };
    const swappedBack = {
      ...body,
      messages: [
        { role: 'user', content: 'b' },
        { role: 'user', content: 'a' },
      ],
    };
    expect(normaliseBody(swapped)).not.toBe(normaliseBody(swappedBack));
  });

  it('leaves out the fields that do not change the answer, at the top level only', () => {
    const noisy = {
      ...body,
      user: 'alice',
      stream: true,
      stream_options: { include_usage: true },
      metadata: { user_id: 'u1' },
      safety_identifier: 'x',
      prompt_cache_key: 'k',
    };
    expect(normaliseBody(noisy)).toBe(normaliseBody(body));
    const nested = {
      ...body,
      tools: [{ type: 'function', function: { name: 'user', parameters: { user: { type: 'string' } } } }],
    };
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
      const names = Array.from(
        { length: size },
        (_, index) => `k${(index * 7919) % size}-${String.fromCharCode(65 + (index % 50))}`,
      );
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

/**
 * The normal form as its definition says, written the plain way: JSON with every object's keys in
 * `sort()` order (integer-like keys too, which JSON.stringify would put first), the ignored
 * top-level fields left out.
 */
function sortedJson(value: unknown, topLevel = true): string {
  if (Array.isArray(value))
    return `[${value.map((item) => (item === undefined ? 'null' : sortedJson(item, false))).join(',')}]`;
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const ignored = topLevel
    ? ['user', 'metadata', 'safety_identifier', 'stream', 'stream_options', 'prompt_cache_key']
    : [];
  const fields = Object.keys(value)
    .sort()
    .filter((key) => !ignored.includes(key) && (value as Record<string, unknown>)[key] !== undefined);
  return `{${fields.map((key) => `${JSON.stringify(key)}:${sortedJson((value as Record<string, unknown>)[key], false)}`).join(',')}}`;
}

describe('the key text, written as bytes', () => {
  const bodies: [string, unknown][] = [
    [
      'escapes and control characters',
      { model: 'm', messages: [{ role: 'user', content: 'say "hi"\\ \n\t\u0001 \u007f </script>' }] },
    ],
    [
      'non-ASCII text, short and long',
      {
        model: 'm',
        messages: [
          { role: 'user', content: 'héllo 世界 😀' },
          { role: 'assistant', content: 'ü'.repeat(5_000) },
        ],
      },
    ],
    ['lone surrogates', { model: 'm', messages: [{ role: 'user', content: 'a\ud800b\udc00c' }], ['k\ud83d']: 1 }],
    [
      'numbers, booleans, nulls and undefined',
      { temperature: 0.7, n: -0, big: 1e21, tiny: 5e-324, flags: [true, false, null, undefined], gone: undefined },
    ],
    ['long plain strings', { model: 'm', messages: [{ role: 'user', content: 'a'.repeat(300_000) }] }],
    [
      'deep nesting and objects inside arrays',
      {
        tools: [{ type: 'function', function: { name: 'f', parameters: { z: { b: 1, a: [{ d: 1, c: 2 }] }, y: {} } } }],
        model: 'm',
      },
    ],
    ['integer-like keys', { 10: 'a', 9: 'b', x: { 2: 1, 1: 2, b: 3 } }],
  ];

  it.each(bodies)('is the normal form of the definition: %s', (_name, value) => {
    expect(normaliseBody(value)).toBe(sortedJson(value));
  });

  it.each(bodies)('hashes the same text as SHA-256 of the key string would: %s', (_name, value) => {
    const text = `tenant:acme\nopenai.chat\ngpt-4o-mini-ü\n${sortedJson(value)}`;
    expect(cacheKey('tenant:acme', 'openai.chat', 'gpt-4o-mini-ü', value)).toBe(
      createHash('sha256').update(text, 'utf8').digest('hex'),
    );
  });

  it('reads only own keys, and stays right after a body it could not write', () => {
    const inherited = Object.create({ hidden: 1 }) as Record<string, unknown>;
    inherited.model = 'm';
    expect(normaliseBody(inherited)).toBe('{"model":"m"}');
    expect(() => cacheKey('s', 'a', 'm', { n: 1n })).toThrow();
    expect(cacheKey('s', 'a', 'm', body)).toBe(
      createHash('sha256')
        .update(`s\na\nm\n${sortedJson(body)}`)
        .digest('hex'),
    );
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
