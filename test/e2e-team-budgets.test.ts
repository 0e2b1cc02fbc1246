// Budgets that stack (a tenant's teams and their members) through the gateway, on memory and Redis stores: a team
// refuses once its members together spent it while each is under their own, a member's template refuses one member
// while the others go on, an exempt member passes where the template would refuse, a key made at run time gets the
// template; a budget outside its validity window is not enforced; the ledger records each call's team.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import pg from 'pg';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { memoryAndRedisStores, newApiKey, sentUntilAnswered, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import type { OwnedStores, RunningProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const db = new pg.Pool({ connectionString: POSTGRES_URL, max: 1 });
afterAll(() => db.end());
const teamKey = newApiKey();
const openKey = newApiKey();
const pastKey = newApiKey();
const futureKey = newApiKey();
const nowKey = newApiKey();
const adminKey = newApiKey();
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-team-budgets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Each member of a team may spend $0.002 a day; research all together $0.003, less than two members' worth. */
const MEMBER_USD = 0.002;
const TEAM_USD = 0.003;
/** Far below one call: a budget that would refuse the first call if it were enforced. */
const TINY = { usd: 0.000001, period: 'day' as const };
const HOUR = 3_600_000;
const MAX_CALLS = 200;
const BLOCKS_BACK_MS = 1_300;

/** Tokens of an identity provider naming tenant, user (`sub`) and team: signed here, checked by the gateway's JWKS. */
let signingKey: CryptoKey;
let publicJwk: JWK;
beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  signingKey = pair.privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
});
function token(subject: string, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setSubject(subject)
    .setIssuer('https://idp.example')
    .setAudience('tollgate')
    .setExpirationTime('5m')
    .sign(signingKey);
}

function configOf(table: string): GatewayConfig {
  const at = (ms: number) => new Date(Date.now() + ms).toISOString();
  const each = { budget: { usd: MEMBER_USD, period: 'day' as const } };
  return {
    postgresUrl: POSTGRES_URL,
    postgresTable: table,
    spool: path.join(dir, `${table}-spool`),
    adminKeySha256: sha256Hex(adminKey),
    jwt: {
      issuer: 'https://idp.example',
      audience: 'tollgate',
      jwks: { keys: [publicJwk as Record<string, unknown>] },
      tenantClaim: 'org_id',
      teamClaim: 'team',
    },
    tiers: { pro: { requestsPerMinute: 10_000, models: ['*'] } },
    tenants: {
      acme: {
        tier: 'pro',
        budget: { usd: 100, period: 'day' },
        teams: {
          research: { budget: { usd: TEAM_USD, period: 'day' }, members: { each } },
          ops: { members: { each, 'user:vip': { exempt: true } } },
        },
      },
      past: { tier: 'pro', budget: { ...TINY, validUntil: at(-HOUR) } },
      future: { tier: 'pro', budget: { ...TINY, validFrom: at(HOUR) } },
      now: { tier: 'pro', budget: { ...TINY, validFrom: at(-HOUR), validUntil: at(HOUR) } },
    },
    keys: [
      { id: 'team-key', sha256: sha256Hex(teamKey), tenant: 'acme', team: 'research' },
      { id: 'open-key', sha256: sha256Hex(openKey), tenant: 'acme' },
      { id: 'past-key', sha256: sha256Hex(pastKey), tenant: 'past' },
      { id: 'future-key', sha256: sha256Hex(futureKey), tenant: 'future' },
      { id: 'now-key', sha256: sha256Hex(nowKey), tenant: 'now' },
    ],
  };
}

interface Answer {
  status: number;
  error?: { message: string; type: string; code: string; param: string | null };
  retry: boolean;
  costUsd: number;
}

interface BudgetView {
  scope: string;
  id: string | null;
  teamId?: string;
  spentNanoUsd: number;
  remainingNanoUsd: number;
}

describe.each(memoryAndRedisStores('team-budgets'))('team budgets on %s stores', (kind, storesFor) => {
  let owned: OwnedStores;
  let proxy: RunningProxy;
  const table = `tg_teams_${kind.toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const run = randomBytes(4).toString('hex');

  /** One chat completion of `key` with `headers`; its answer, or its refusal with its error. */
  async function chat(key: string, headers: Record<string, string> = {}): Promise<Answer> {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 64, messages: [{ role: 'user', content: 'Hi.' }] }),
    });
    const body = (await response.json()) as { error?: Answer['error'] };
    return {
      status: response.status,
      ...(body.error ? { error: body.error } : {}),
      retry: response.headers.get('x-should-retry') === 'true',
      costUsd: Number(response.headers.get('x-tollgate-cost-usd') ?? 0),
    };
  }

  /** Calls until a refusal that is not money held in flight (a Redis block, waited out): what was served and it. */
  async function untilRefused(key: string, headers: Record<string, string> = {}) {
    let served = 0;
    for (let n = 0; n < MAX_CALLS; n++) {
      const answer = await chat(key, headers);
      if (answer.status === 200) served++;
      else if (answer.status === 429 && answer.retry) await new Promise((r) => setTimeout(r, BLOCKS_BACK_MS));
      else return { served, refusal: answer };
    }
    throw new Error(`never refused in ${MAX_CALLS} calls`);
  }

  async function admin(route: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${proxy.url}/admin${route}`, {
      ...init,
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    });
  }

  async function budget(route: string): Promise<BudgetView> {
    const { budgets } = (await (await admin(`/budgets/${route}`)).json()) as { budgets: BudgetView[] };
    return budgets[0]!;
  }

  beforeAll(async () => {
    owned = storesFor();
    proxy = await startProxy(configOf(table), { stores: owned.stores });
    // Budgets answer once their spend is rebuilt from the SQL ledger at start (503 until then).
    await sentUntilAnswered(async () => {
      if ((await chat(openKey)).status === 503) throw new Error('not rebuilt yet');
    });
  });

  afterAll(async () => {
    await proxy.close();
    await owned.release();
    await db.query(
      `DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily", "${table}_credits"`,
    );
  });

  it("refuses one member at the template's end, then the team once its members together spent it", async () => {
    const alice = { 'x-tollgate-team': 'research', 'x-tollgate-user': `alice-${run}` };
    const first = await untilRefused(openKey, alice);
    expect(first.served).toBeGreaterThan(1);
    expect(first.refusal).toMatchObject({ status: 429, error: { code: 'insufficient_quota' } });
    expect(first.refusal.error!.message).toContain(`member user:alice-${run} of team research of tenant acme`);
    // The team's key, calling without an end user, is its own member: the team's remaining money, not alice's, limits it.
    const second = await untilRefused(teamKey);
    expect(second.served).toBeGreaterThan(0);
    expect(second.refusal.error!.message).toContain('team research of tenant acme');
    const member = await budget('member/key:team-key?tenant=acme&team=research');
    expect(member.remainingNanoUsd).toBeGreaterThan(0);
    const team = await budget('team/research?tenant=acme');
    expect(team.remainingNanoUsd).toBeLessThan(member.remainingNanoUsd);
    // The tenant's other team goes on.
    expect((await chat(openKey, { 'x-tollgate-team': 'ops' })).status).toBe(200);
  });

  it('serves an exempt member past what the template would allow; its spend still counts on the tenant', async () => {
    const before = (await budget('tenant/acme')).spentNanoUsd;
    let spentUsd = 0;
    for (let n = 0; spentUsd <= MEMBER_USD * 1.5; n++) {
      expect(n).toBeLessThan(MAX_CALLS);
      const answer = await chat(openKey, { 'x-tollgate-team': 'ops', 'x-tollgate-user': 'vip' });
      expect(answer.status).toBe(200);
      spentUsd += answer.costUsd;
    }
    const member = await admin('/budgets/member/user:vip?tenant=acme&team=ops');
    expect(member.status).toBe(404);
    expect((await budget('tenant/acme')).spentNanoUsd).toBeGreaterThan(before);
  });

  it('gives a key made at run time with a team the template', async () => {
    const made = await admin('/keys', {
      method: 'POST',
      body: JSON.stringify({ id: `late-${run}`, tenant: 'acme', team: 'ops', scopes: [] }),
    });
    expect(made.status).toBe(201);
    const { key, record } = (await made.json()) as { key: string; record: { team?: string } };
    expect(record.team).toBe('ops');
    const { served, refusal } = await untilRefused(key);
    expect(served).toBeGreaterThan(1);
    expect(refusal.error!.message).toContain(`member key:late-${run} of team ops of tenant acme`);
    // A team its tenant does not have is refused when the key is made.
    const unknown = await admin('/keys', { method: 'POST', body: JSON.stringify({ tenant: 'acme', team: 'sales' }) });
    expect([unknown.status, ((await unknown.json()) as Answer).error?.param]).toEqual([400, 'team']);
  });

  it('refuses a header naming another team than the key has (403), or a team the tenant lacks (400)', async () => {
    const other = await chat(teamKey, { 'x-tollgate-team': 'ops' });
    expect([other.status, other.error?.code, other.error?.param]).toEqual([
      403,
      'insufficient_scope',
      'x-tollgate-team',
    ]);
    const unknown = await chat(openKey, { 'x-tollgate-team': 'sales' });
    expect([unknown.status, unknown.error?.code, unknown.error?.param]).toEqual([
      400,
      'invalid_request',
      'x-tollgate-team',
    ]);
  });

  it("charges a token's team (the jwt's teamClaim) and its user as the member; refuses a team its tenant lacks", async () => {
    const carol = `carol-${run}`;
    const jwt = await token(carol, { org_id: 'acme', team: 'ops' });
    expect((await chat(jwt)).status).toBe(200);
    // The call settles once its answer has gone out: its spend shows on the member a moment later.
    const member = await waitFor(async () => {
      const view = await budget(`member/user:${carol}?tenant=acme&team=ops`);
      return view.spentNanoUsd > 0 ? view : undefined;
    }, "carol's settled spend");
    expect(member).toMatchObject({ scope: 'member', teamId: 'ops' });
    // The header may repeat the token's team, not name another.
    expect((await chat(jwt, { 'x-tollgate-team': 'research' })).status).toBe(403);
    for (const claims of [{ org_id: 'acme', team: 'sales' }, { org_id: 'past', team: 'ops' }, { team: 'ops' }]) {
      const refused = await chat(await token(carol, claims));
      expect([refused.status, refused.error?.code]).toEqual([403, 'insufficient_scope']);
    }
  });

  it('enforces a budget only within its validity window', async () => {
    expect((await chat(pastKey)).status).toBe(200);
    expect((await chat(futureKey)).status).toBe(200);
    const within = await chat(nowKey);
    expect([within.status, within.error?.code]).toEqual([429, 'insufficient_quota']);
  });

  it("records each call's team in the ledger, as the team budget counted it", async () => {
    const team = await budget('team/research?tenant=acme');
    const ledger = async () => {
      const { rows } = await db.query<{ spent: string }>(
        `SELECT coalesce(sum(cost_nano_usd), 0) AS spent FROM "${table}" WHERE tenant_id = 'acme' AND team = 'research'`,
      );
      return Number(rows[0]!.spent);
    };
    await sentUntilAnswered(async () => {
      if ((await ledger()) !== team.spentNanoUsd) throw new Error('the ledger is not in yet');
    });
    expect(team.spentNanoUsd).toBeGreaterThan(0);
  });
});
