// Cost per outcome through the proxy: outcomes reported with the caller's own key against its request or conversation ids, on PGlite and PostgreSQL.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import pg from 'pg';
import { costPerOutcome } from '@tollgate/metering';
import type { Queryable } from '@tollgate/metering';
import { newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const aliceKey = newApiKey();
const bobKey = newApiKey();
const adminKey = newApiKey();

function baseConfig() {
  return {
    adminKeySha256: sha256Hex(adminKey),
    tenants: { acme: {}, globex: {} },
    keys: [
      {
        id: 'alice-key',
        sha256: sha256Hex(aliceKey),
        tenant: 'acme',
        user: 'alice',
        feature: 'support-bot',
        scopes: ['chat'],
      },
      { id: 'bob-key', sha256: sha256Hex(bobKey), tenant: 'globex', user: 'bob', feature: 'sales', scopes: ['chat'] },
    ],
  };
}

interface Ledger {
  config: Record<string, unknown>;
  /** The ledger read from outside, to check the dashboard against; the embedded one lives inside the proxy only. */
  db?: Queryable;
  location: { table?: string };
  drop(): Promise<void>;
}

function embedded(): Ledger {
  return {
    config: { ...baseConfig(), embeddedLedger: true },
    location: {},
    drop: async () => undefined,
  };
}

function postgres(): Ledger {
  const table = `tg_e2e_outcomes_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  return {
    config: { ...baseConfig(), postgresUrl: POSTGRES_URL, postgresTable: table, spool: false },
    db: pool,
    location: { table },
    async drop() {
      await pool.query(`DROP TABLE IF EXISTS "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
      await pool.query(`DROP TABLE IF EXISTS "${table}"`);
      await pool.end();
    },
  };
}

async function chat(client: OpenAI, content: string, conversationId?: string): Promise<string> {
  const { response } = await client.chat.completions
    .create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content }], max_tokens: 10 },
      conversationId ? { headers: { 'x-conversation-id': conversationId } } : {},
    )
    .withResponse();
  const requestId = response.headers.get('x-request-id');
  expect(requestId).toBeTruthy();
  return requestId!;
}

describe.each([
  ['the embedded ledger (PGlite)', embedded],
  ['PostgreSQL', postgres],
])('outcomes on %s', (_name, open) => {
  let ledger: Ledger;
  let proxy: RunningProxy;
  let alice: OpenAI;
  let bob: OpenAI;
  const report = (key: string, body: unknown) =>
    fetch(`${proxy.url}/v1/outcomes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const overview = async () => {
    const answer = await fetch(`${proxy.url}/dashboard/api/overview`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(answer.status).toBe(200);
    return (await answer.json()) as {
      outcomes: { tenants: Record<string, unknown>[]; features: Record<string, unknown>[] };
      tenants: { id: string; ledgerSpentNanoUsd: number }[];
    };
  };

  beforeAll(async () => {
    ledger = open();
    proxy = await startProxy(ledger.config as never);
    alice = new OpenAI({ apiKey: aliceKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    bob = new OpenAI({ apiKey: bobKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  });

  afterAll(async () => {
    await proxy.close();
    await ledger.drop();
  });

  it('attaches an outcome to a request by the x-request-id the proxy returned, right after it, once', async () => {
    const requestId = await chat(alice, 'one');
    // No flush first: a record still waiting in the sink's batch is found all the same.
    const first = await report(aliceKey, { request_id: requestId, kind: 'resolved', value_usd: 2.5 });
    expect(first.status).toBe(201);
    const body = (await first.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      object: 'outcome',
      kind: 'resolved',
      request_id: requestId,
      value_usd: 2.5,
      created: true,
      requests: 1,
    });
    expect(body.cost_usd).toBeGreaterThan(0);
    const again = await report(aliceKey, { request_id: requestId, kind: 'resolved', value_usd: 99 });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ id: body.id, created: false, value_usd: 2.5 });
  });

  it('attaches an outcome to a conversation: the requests that sent its x-conversation-id', async () => {
    const conversation = `conv-${randomUUID()}`;
    await chat(alice, 'two', conversation);
    await chat(alice, 'three', conversation);
    // Bob's requests in a conversation of the same name are another tenant's: never counted for acme.
    await chat(bob, 'four', conversation);
    const answer = await report(aliceKey, { conversation_id: conversation, kind: 'converted', value_usd: 40 });
    expect(answer.status).toBe(201);
    expect(await answer.json()).toMatchObject({
      conversation_id: conversation,
      kind: 'converted',
      requests: 2,
      created: true,
    });
  });

  it("never reaches another tenant's requests, and says so with a 404", async () => {
    const alicesRequest = await chat(alice, 'five');
    const answer = await report(bobKey, { request_id: alicesRequest, kind: 'resolved' });
    expect(answer.status).toBe(404);
    expect(await answer.json()).toEqual({
      error: expect.objectContaining({
        code: 'not_found',
        message: expect.stringContaining(`No recorded request ${alicesRequest} for this tenant`),
      }),
    });
    expect((await report(aliceKey, { conversation_id: 'never-sent', kind: 'resolved' })).status).toBe(404);
  });

  it('answers bad input with a 400 naming the field, and no key with a 401', async () => {
    const cases: [unknown, string][] = [
      [{ request_id: 'r1' }, 'kind'],
      [{ request_id: 'r1', conversation_id: 'c1', kind: 'resolved' }, 'request_id'],
      [{ kind: 'resolved' }, 'request_id'],
      [{ request_id: 'r 1', kind: 'resolved' }, 'request_id'],
      [{ request_id: 'r1', kind: 'Resolved!' }, 'kind'],
      [{ request_id: 'r1', kind: 'resolved', value_usd: -1 }, 'value_usd'],
      [{ request_id: 'r1', kind: 'resolved', value_usd: '3' }, 'value_usd'],
      [{ request_id: 'r1', kind: 'resolved', revenue: 3 }, 'revenue'],
      [['resolved'], 'body'],
    ];
    for (const [body, param] of cases) {
      const answer = await report(aliceKey, body);
      expect(answer.status).toBe(400);
      expect(await answer.json()).toEqual({ error: expect.objectContaining({ code: 'invalid_request', param }) });
    }
    const anonymous = await fetch(`${proxy.url}/v1/outcomes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"request_id":"r1","kind":"resolved"}',
    });
    expect(anonymous.status).toBe(401);
  });

  it("shows cost per outcome per tenant and feature on the dashboard, equal to the ledger's", async () => {
    await proxy.app.flushUsage();
    const data = await overview();
    const resolved = data.outcomes.tenants.find((row) => row.group === 'acme' && row.kind === 'resolved');
    const converted = data.outcomes.tenants.find((row) => row.group === 'acme' && row.kind === 'converted');
    expect(resolved).toMatchObject({ outcomes: 1, requests: 1, valueNanoUsd: 2_500_000_000 });
    expect(converted).toMatchObject({ outcomes: 1, requests: 2, valueNanoUsd: 40_000_000_000 });
    expect(data.outcomes.tenants.some((row) => row.group === 'globex')).toBe(false);
    expect(data.outcomes.features).toEqual(
      expect.arrayContaining([expect.objectContaining({ group: 'support-bot', kind: 'converted', outcomes: 1 })]),
    );
    if (ledger.db) {
      // On PostgreSQL the same numbers straight from the ledger.
      const rows = await costPerOutcome(ledger.db, {
        ...ledger.location,
        by: 'tenant',
        since: new Date(Date.now() - 3_600_000),
      });
      expect(data.outcomes.tenants).toEqual(rows);
    }
    // Cost per outcome is the requests' cost over the outcomes, to the nano-dollar.
    for (const row of data.outcomes.tenants)
      expect(row.costPerOutcomeNanoUsd).toBe(Math.ceil((row.costNanoUsd as number) / (row.outcomes as number)));
  });
});
