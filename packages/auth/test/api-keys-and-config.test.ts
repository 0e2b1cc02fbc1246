// Key material (generate, hash, format) and the config `keys` entries <-> core ApiKeyRecord mapping.
import { describe, it, expect } from '@jest/globals';
import { TollgateError } from '@tollgate/core';
import { adminKeyRecord, configKeyFromRecord, generateApiKey, hashApiKey, keyRecordsFromConfig } from '../src/index.js';
import { isApiKeyFormat, sha256Equal } from '../src/api-keys.js';

describe('generateApiKey / hashApiKey', () => {
  it('makes tgk_ keys of 43 base62 characters, all different', () => {
    const keys = new Set(Array.from({ length: 500 }, () => generateApiKey()));
    expect(keys.size).toBe(500);
    for (const key of keys) {
      expect(key).toMatch(/^tgk_[0-9A-Za-z]{43}$/);
      expect(isApiKeyFormat(key)).toBe(true);
    }
    // Every base62 character shows up: no alphabet slice is lost to the byte mapping.
    const seen = new Set([...keys].join('').replace(/tgk_/g, ''));
    expect(seen.size).toBe(62);
  });

  it('hashes the whole key string with SHA-256 hex', () => {
    expect(hashApiKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(isApiKeyFormat('tgk_short')).toBe(false);
    expect(isApiKeyFormat(`sk_${'a'.repeat(40)}`)).toBe(false);
  });
});

describe('keyRecordsFromConfig', () => {
  const sha = 'AB'.repeat(32);

  it("maps the proxy config's key entries to records and back, the budget on the record, other fields in metadata", () => {
    const entry = {
      id: 'acme-support',
      sha256: sha,
      tenant: 'acme',
      user: 'alice',
      feature: 'support-bot',
      tags: ['mobile'],
      scopes: ['chat'],
      budget: { usd: 5, period: 'day' },
      budgetOf: 'acme-support-0',
      note: 'kept',
      tier: 'pro',
      models: ['gpt-4o-mini'],
      expiresAt: '2030-01-01T00:00:00.000Z',
    };
    const [record] = keyRecordsFromConfig([entry]);
    expect(record).toEqual({
      id: 'acme-support',
      sha256: sha.toLowerCase(),
      tenantId: 'acme',
      userId: 'alice',
      feature: 'support-bot',
      tags: ['mobile'],
      tier: 'pro',
      scopes: ['chat'],
      models: ['gpt-4o-mini'],
      expiresAt: '2030-01-01T00:00:00.000Z',
      createdAt: new Date(0).toISOString(),
      budget: { usd: 5, period: 'day' },
      budgetOf: 'acme-support-0',
      metadata: { note: 'kept' },
    });
    expect(configKeyFromRecord(record!)).toEqual({ ...entry, sha256: sha.toLowerCase() });
    expect(keyRecordsFromConfig(undefined)).toEqual([]);
    expect(keyRecordsFromConfig([{ id: 'bare', sha256: sha }])[0]).toMatchObject({ scopes: [] });
  });

  it.each([
    [{}, /keys must be an array/],
    [[{ id: 'a', sha256: 'nope' }], /keys\[0\]\.sha256/],
    [[{ id: '', sha256: sha }], /keys\[0\]\.id/],
    [[{ id: 'a b', sha256: sha }], /keys\[0\]\.id/],
    [
      [
        { id: 'a', sha256: sha },
        { id: 'a', sha256: 'c'.repeat(64) },
      ],
      /keys\[1\]\.id repeats/,
    ],
    [
      [
        { id: 'a', sha256: sha },
        { id: 'b', sha256: sha.toLowerCase() },
      ],
      /keys\[1\]\.sha256 repeats/,
    ],
    [[{ id: 'a', sha256: sha, scopes: 'chat' }], /keys\[0\]\.scopes/],
    [[{ id: 'a', sha256: sha, expiresAt: 'tomorrow' }], /keys\[0\]\.expiresAt/],
    [[{ id: 'a', sha256: sha, disabled: 'yes' }], /keys\[0\]\.disabled/],
    [[null], /keys\[0\] must be an object/],
  ])('names the faulty field: %j', (keys, message) => {
    expect(() => keyRecordsFromConfig(keys)).toThrow(TollgateError);
    expect(() => keyRecordsFromConfig(keys)).toThrow(message);
  });

  it('never quotes a hash in its errors', () => {
    expect.assertions(1);
    try {
      keyRecordsFromConfig([
        { id: 'a', sha256: sha },
        { id: 'b', sha256: sha },
      ]);
    } catch (error) {
      expect((error as Error).message.toLowerCase()).not.toContain(sha.toLowerCase());
    }
  });

  it('adminKeyRecord gives the admin scope to the configured hash', () => {
    expect(adminKeyRecord(sha)).toMatchObject({ id: 'admin', sha256: sha.toLowerCase(), scopes: ['admin'] });
    expect(() => adminKeyRecord('nope')).toThrow(/adminKeySha256/);
  });
});

describe('sha256Equal', () => {
  const digest = hashApiKey('tgk_example');

  it('matches a digest in either case, and nothing that is not a whole 64-digit hex digest', () => {
    expect(sha256Equal(digest, digest.toUpperCase())).toBe(true);
    expect(sha256Equal(digest, hashApiKey('tgk_other'))).toBe(false);
    for (const bad of [`${digest.slice(0, 63)}g`, `g${digest.slice(1)}`, digest.slice(0, 62), `${digest}00`, '']) {
      expect(sha256Equal(digest, bad)).toBe(false);
      expect(sha256Equal(bad, bad)).toBe(false);
    }
    expect(sha256Equal(digest, undefined as unknown as string)).toBe(false);
  });
});
