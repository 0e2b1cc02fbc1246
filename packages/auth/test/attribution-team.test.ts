// The team a request is charged to: the key's, which the team header may only repeat, else a team of its tenant.
import { describe, expect, it } from '@jest/globals';
import type { RequestHandler } from 'express';
import request from 'supertest';
import { apiKeyAuth, attribution } from '../src/index.js';
import { createServer, makeKey } from './helpers.js';

const research = makeKey({ team: 'research' });
const teamless = makeKey({ userId: undefined });
const loner = makeKey({ tenantId: undefined, userId: undefined });
const keys = [research.record, teamless.record, loner.record];
const TEAMS: Record<string, readonly string[]> = { acme: ['research', 'ops'] };
const isTeam = (tenantId: string, team: string) => TEAMS[tenantId]?.includes(team) === true;

function send(key: string, options: Parameters<typeof attribution>[0] = { isTeam }) {
  const app = createServer(apiKeyAuth({ keys }) as RequestHandler, attribution(options) as RequestHandler);
  return request(app).post('/v').set('x-api-key', key);
}

describe('attribution: the team', () => {
  it("keeps the key's team, with or without a header repeating it", async () => {
    expect((await send(research.key).send({})).body.identity.team).toBe('research');
    const same = await send(research.key).set('x-tollgate-team', 'research').send({});
    expect([same.status, same.body.identity.team]).toEqual([200, 'research']);
  });

  it("refuses a header naming another team than the key's with 403 insufficient_scope naming the header", async () => {
    const res = await send(research.key).set('x-tollgate-team', 'ops').send({});
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'insufficient_scope', type: 'permission_error' });
    expect(res.body.error.param).toBe('x-tollgate-team');
    expect(res.body.error.message).toContain('"research"');
  });

  it('takes a team of the tenant from the header for a key without one', async () => {
    const res = await send(teamless.key).set('x-tollgate-team', 'ops').send({});
    expect([res.status, res.body.identity.team]).toEqual([200, 'ops']);
    expect((await send(teamless.key).send({})).body.identity.team).toBeUndefined();
  });

  it('refuses a team the tenant does not have, or any for a key without a tenant, with 400 naming the header', async () => {
    for (const [key, team] of [
      [teamless.key, 'sales'],
      [loner.key, 'research'],
    ] as const) {
      const res = await send(key).set('x-tollgate-team', team).send({});
      expect([res.status, res.body.error.code, res.body.error.param]).toEqual([
        400,
        'invalid_request',
        'x-tollgate-team',
      ]);
    }
    // Without isTeam no team is known: refused, never charged to a team nothing checked.
    const unchecked = await send(teamless.key, {}).set('x-tollgate-team', 'research').send({});
    expect(unchecked.status).toBe(400);
  });

  it('reads the header configured, or none; a team header sent twice is refused', async () => {
    const own = await send(teamless.key, { isTeam, teamHeader: 'x-team' }).set('x-team', 'ops').send({});
    expect(own.body.identity.team).toBe('ops');
    const off = await send(teamless.key, { isTeam, teamHeader: false }).set('x-tollgate-team', 'sales').send({});
    expect([off.status, off.body.identity.team]).toEqual([200, undefined]);
    const twice = await send(teamless.key)
      .set('x-tollgate-team', ['ops', 'research'] as unknown as string)
      .send({});
    expect([twice.status, twice.body.error.param]).toEqual([400, 'x-tollgate-team']);
    expect(() => attribution({ teamHeader: 'x-tollgate-user' })).toThrow(/must differ/);
    expect(() => attribution({ isTeam: 'research' as never })).toThrow(/isTeam/);
  });
});
