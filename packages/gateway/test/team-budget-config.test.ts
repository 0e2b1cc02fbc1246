// The config's tenant `teams` and a key's `team`, as budgetGuard and attribution take them; every mistake named by its
// field, all at once; a budget's validity window checked.
import { describe, expect, it } from '@jest/globals';
import { validateConfig } from '../src/config/index.js';
import { authOptions } from '../src/config/auth-options.js';
import { budgetOptions } from '../src/config/budget-options.js';
import { tenantOptions } from '../src/config/tenant-options.js';
import { rejection } from './helpers/config-rejection.js';
import { WITH_MOCK } from './helpers/mock-upstream.js';

const HASH = 'a'.repeat(64);
const day = (usd: number) => ({ usd, period: 'day' as const });
const TEAMS = {
  research: {
    budget: day(100),
    members: { each: { budget: day(20) }, 'user:alice': { exempt: true }, 'key:bot': { budget: day(5) } },
  },
  ops: { members: { each: { budget: day(2) } } },
};

describe('proxy config: teams', () => {
  it("hands a tenant's teams to budgetGuard, and its team names to attribution", () => {
    const config = validateConfig({
      ...WITH_MOCK,
      tenants: { acme: { budget: day(500), teams: TEAMS }, beta: {} },
      keys: [{ id: 'bot', sha256: HASH, tenant: 'acme', team: 'research' }],
    });
    expect(budgetOptions(config).teamBudgets).toEqual({
      acme: {
        research: {
          budget: { usd: 100, period: 'day' },
          members: {
            each: { budget: { usd: 20, period: 'day' } },
            'user:alice': { exempt: true },
            'key:bot': { budget: { usd: 5, period: 'day' } },
          },
        },
        ops: { members: { each: { budget: { usd: 2, period: 'day' } } } },
      },
    });
    const { isTeam } = authOptions(config).attribution;
    expect([isTeam!('acme', 'ops'), isTeam!('acme', 'sales'), isTeam!('beta', 'ops'), isTeam!('x', 'ops')]).toEqual([
      true,
      false,
      false,
      false,
    ]);
    expect(isTeam!('acme', 'constructor')).toBe(false);
  });

  it('refuses a key naming a team its tenant does not have, or a team without a tenant, with every problem at once', () => {
    const message = rejection({
      tenants: { acme: { teams: TEAMS } },
      keys: [
        { id: 'k1', sha256: HASH, tenant: 'acme', team: 'reserch' },
        { id: 'k2', sha256: 'b'.repeat(64), team: 'ops' },
        { id: 'k3', sha256: 'c'.repeat(64), tier: 'platinum' },
      ],
    });
    expect(message).toContain('keys[0].team names an unknown team "reserch" of tenant "acme"');
    expect(message).toContain('did you mean "research"');
    expect(message).toContain('(known: research, ops)');
    expect(message).toContain('keys[1].team names team "ops", but the key has no tenant');
    expect(message).toContain('keys[2].tier names an unknown tier "platinum"');
  });

  it('takes an exempt member, and refuses an exempt template or a member of neither form', () => {
    expect(() =>
      validateConfig({ ...WITH_MOCK, tenants: { acme: { teams: { t: { members: { bob: { exempt: true } } } } } } }),
    ).not.toThrow();
    expect(rejection({ tenants: { acme: { teams: { t: { members: { each: { exempt: true } } } } } } })).toContain(
      'tenants.acme.teams.t.members.each is the template: it takes a "budget"',
    );
    expect(rejection({ tenants: { acme: { teams: { t: { members: { bob: { exempt: false } } } } } } })).toContain(
      'tenants.acme.teams.t.members.bob',
    );
    expect(rejection({ tenants: { acme: { teams: { t: { budgets: day(1) } } } } })).toContain('has no field "budgets"');
  });

  it('refuses teams on a tenant kept as data, naming the field', () => {
    const config = validateConfig({ ...WITH_MOCK, tiers: { pro: {} } });
    const { problems } = tenantOptions(config, undefined).problems('acme', { tier: 'pro', teams: TEAMS });
    expect(problems).toEqual([expect.objectContaining({ param: 'teams' })]);
  });
});

describe('proxy config: a budget valid from, until', () => {
  it('passes the window on to budgetGuard', () => {
    const window = { validFrom: '2026-01-01T00:00:00Z', validUntil: '2026-02-01T00:00:00+01:00' };
    const config = validateConfig({ ...WITH_MOCK, tenants: { acme: { budget: { ...day(5), ...window } } } });
    expect(budgetOptions(config).tenants).toEqual({ acme: { usd: 5, period: 'day', ...window } });
  });

  it('refuses a window that is not two ISO 8601 instants in order', () => {
    expect(rejection({ global: { budget: { ...day(5), validFrom: 'next monday' } } })).toContain(
      'global.budget.validFrom must be an ISO 8601 date-time',
    );
    expect(rejection({ tenants: { acme: { budget: { ...day(5), validUntil: '2026-13-45T00:00:00Z' } } } })).toContain(
      'tenants.acme.budget.validUntil',
    );
    expect(
      rejection({
        features: {
          bot: { budget: { ...day(5), validFrom: '2026-02-01T00:00:00Z', validUntil: '2026-01-01T00:00:00Z' } },
        },
      }),
    ).toContain('features.bot.budget.validFrom must be before validUntil');
  });
});
