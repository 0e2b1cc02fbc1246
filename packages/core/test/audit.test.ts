// The audit trail without services: the memory store's filters and pages, secrets dropped, a write refused when its
// attempt cannot be stored, reads let through, the outcome written with what the route noted.
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from '@jest/globals';
import express from 'express';
import { apiErrorHandler } from '../src/index.js';
import { auditCsv, auditListing, auditTrail, memoryAuditStore, noteAudit, withoutSecrets } from '../src/audit.js';
import type { AuditAttempt, AuditStore } from '../src/audit.js';

function attempt(n: number, action: string, target: string): AuditAttempt {
  return {
    id: `id-${n}`,
    at: new Date(Date.UTC(2026, 0, 1, 0, n)).toISOString(),
    actor: n % 2 === 0 ? 'admin key' : 'oidc:https://idp.example#alice',
    role: 'admin',
    via: 'admin-key',
    address: '127.0.0.1',
    method: 'POST',
    path: `/admin/${n}`,
    action,
    target,
  };
}

async function serve(store: AuditStore, onWrite: () => void = () => undefined) {
  const trail = auditTrail({ store });
  const app = express();
  app.use(express.json());
  app.use(trail.record);
  app.get('/audit', auditListing(trail));
  app.post('/keys/:id/revoke', (req, res) => {
    onWrite();
    noteAudit(req, res, { action: 'key.revoke', target: `key:${req.params.id}` });
    noteAudit(req, res, {
      before: { id: req.params.id, sha256: 'ab12' },
      after: { id: req.params.id, disabled: true },
    });
    res.json({ ok: true });
  });
  app.use(apiErrorHandler());
  const server: Server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { trail, url, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('memoryAuditStore', () => {
  it('lists newest first, filters by action family, target, actor and time, and pages with a cursor', async () => {
    const store = memoryAuditStore();
    const actions = ['key.create', 'key.rotate', 'budget.reset', 'key.revoke', 'keys.other'];
    for (const [n, action] of actions.entries()) await store.attempt(attempt(n, action, `t:${n % 2}`));
    const all = await store.list({ limit: 10 });
    expect(all.entries.map((entry) => entry.id)).toEqual(['id-4', 'id-3', 'id-2', 'id-1', 'id-0']);
    expect(all.entries.every((entry) => entry.outcome === 'unknown')).toBe(true);
    expect((await store.list({ limit: 10, action: 'key' })).entries.map((entry) => entry.action)).toEqual([
      'key.revoke',
      'key.rotate',
      'key.create',
    ]);
    expect((await store.list({ limit: 10, target: 't:1' })).entries.length).toBe(2);
    expect((await store.list({ limit: 10, actor: 'admin key' })).entries.length).toBe(3);
    const since = attempt(2, '', '').at;
    expect((await store.list({ limit: 10, since })).entries.length).toBe(3);
    expect((await store.list({ limit: 10, until: since })).entries.length).toBe(2);
    const first = await store.list({ limit: 2 });
    const second = await store.list({ limit: 2, cursor: first.nextCursor! });
    const third = await store.list({ limit: 2, cursor: second.nextCursor! });
    expect([...first.entries, ...second.entries, ...third.entries].map((entry) => entry.id)).toEqual(
      all.entries.map((entry) => entry.id),
    );
    expect(third.nextCursor).toBeNull();
  });

  it('keeps an outcome once: a second conclusion of an entry changes nothing', async () => {
    const store = memoryAuditStore();
    await store.attempt(attempt(0, 'write.post', '/admin/0'));
    const conclusion = { id: 'id-0', finishedAt: new Date().toISOString(), status: 200, before: null, after: 1 };
    await store.conclude({ ...conclusion, action: 'key.create', target: 'key:a', outcome: 'done' });
    await store.conclude({ ...conclusion, action: 'key.revoke', target: 'key:b', outcome: 'failed' });
    expect((await store.list({ limit: 1 })).entries[0]).toMatchObject({ action: 'key.create', outcome: 'done' });
  });
});

describe('withoutSecrets', () => {
  it('drops secret fields at any depth and keeps the rest', () => {
    expect(
      withoutSecrets({ id: 'k', sha256: 'x', key: 'tgk_', nested: [{ token: 't', scope: 'key', apiKey: 'y' }] }),
    ).toEqual({ id: 'k', nested: [{ scope: 'key' }] });
    expect(withoutSecrets(undefined)).toBeNull();
  });
});

describe('auditTrail', () => {
  it('writes the attempt, then the outcome with what the route noted, secrets dropped; GET is not recorded', async () => {
    const server = await serve(memoryAuditStore());
    try {
      const answer = await fetch(`${server.url}/keys/k1/revoke`, { method: 'POST' });
      expect(answer.status).toBe(200);
      const listed = await fetch(`${server.url}/audit`);
      const { entries } = (await listed.json()) as { entries: Record<string, unknown>[] };
      expect(entries).toEqual([
        expect.objectContaining({
          actor: 'admin key',
          role: 'admin',
          via: 'admin-key',
          address: '127.0.0.1',
          method: 'POST',
          path: '/keys/k1/revoke',
          action: 'key.revoke',
          target: 'key:k1',
          outcome: 'done',
          status: 200,
          before: { id: 'k1' },
          after: { id: 'k1', disabled: true },
        }),
      ]);
      const csv = await (await fetch(`${server.url}/audit?format=csv`)).text();
      expect(csv.split('\n')[1]).toContain('admin key,admin,admin-key,127.0.0.1,key.revoke,key:k1,done,200,POST');
      expect(csv).toBe(auditCsv((await server.trail.list({ limit: 100 })).entries));
    } finally {
      await server.close();
    }
  });

  it('refuses a write with 503 before it runs when its attempt cannot be stored', async () => {
    const store = memoryAuditStore();
    let ran = 0;
    const server = await serve(
      {
        ...store,
        attempt: async () => {
          throw new Error('down');
        },
      },
      () => ran++,
    );
    try {
      const answer = await fetch(`${server.url}/keys/k1/revoke`, { method: 'POST' });
      expect(answer.status).toBe(503);
      expect(answer.headers.get('retry-after')).toBe('5');
      expect(((await answer.json()) as { error: { code: string } }).error.code).toBe('service_unavailable');
      expect(ran).toBe(0);
      expect((await fetch(`${server.url}/audit`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('keeps the attempt, as unknown, when its outcome cannot be written', async () => {
    const store = memoryAuditStore();
    const warnings: unknown[] = [];
    const trail = auditTrail({
      store: { ...store, conclude: async () => Promise.reject(new Error('gone')) },
      onConclusionError: (error) => warnings.push(error),
    });
    const app = express();
    app.use(trail.record);
    app.post('/x', (_req, res) => void res.json({}));
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/x`, { method: 'POST' });
      const { entries } = await trail.list({ limit: 10 });
      expect(entries).toEqual([expect.objectContaining({ action: 'write.post', target: '/x', outcome: 'unknown' })]);
      expect(warnings).toHaveLength(1);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
