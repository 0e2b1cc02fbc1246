// Budgets that stack within a tenant: each team's, and each member's within its team (a template, overrides, exemptions).
import { bind, invalid, isRecord, periodPart, resolveLimits } from './budget-limits.js';
import type { LimitDefaults, ResolvedBudget, ResolvedLimit } from './budget-limits.js';
import type { BudgetLimits } from './types.js';

/** A member's own entry: a budget of its own in place of the template, or no member budget at all. */
export type TeamMemberConfig = { budget: BudgetLimits } | { exempt: true };

/** One team of a tenant: its own budget, and its members'. */
export interface TeamConfig {
  /** The team's budget: every member's spend together. @default none */
  budget?: BudgetLimits;
  /**
   * Its members' budgets: `each` is the template every member gets on its own (members first seen later too); an entry
   * named by member id (`user:<id>` an end user, `key:<id>` a key, a bare id either) overrides it, or exempts the
   * member from it with `{ "exempt": true }` (its spend still counts against the team and the tenant).
   * @default none
   */
  members?: Record<string, TeamMemberConfig>;
}

/** The team-budget options of `budgetGuard()`. */
export interface TeamBudgetOptions {
  /**
   * Teams by tenant id, then team id: `{ "acme": { "research": { "budget": { "usd": 100 }, "members": { "each":
   * { "budget": { "usd": 20 } } } } } }`. A call of a team (`identity.team`) reserves on its member, its team and its
   * tenant at once; a call without a team is charged its tenant only.
   * @default none
   */
  teamBudgets?: Record<string, Record<string, TeamConfig>>;
}

/** What a call's member is: its end user when it has one, else its key. */
type MemberKind = 'user' | 'key';

const NONE: readonly ResolvedBudget[] = [];
/** Bound member budgets kept at most: members met through a template are unbounded in number. */
const MAX_BOUND = 10_000;
const TEAM_FIELDS = ['budget', 'members'];
const KINDS: readonly MemberKind[] = ['user', 'key'];

/** A member's budgets as configured: limits of its own (the template's or an override), or exempt (`undefined`). */
type MemberLimits = ResolvedLimit[] | undefined;

interface ResolvedTeam {
  budgets: readonly ResolvedBudget[];
  each: MemberLimits;
  /** Entries named `user:<id>` / `key:<id>`, by that name. */
  named: Map<string, MemberLimits>;
  /** Entries named by a bare id: a user or a key of that id. */
  bare: Map<string, MemberLimits>;
}

/**
 * The member a call is, within its team: its end user (`user:<id>`) when it has one, else its key (`key:<id>`); none
 * without either.
 */
export function memberIdOf(userId: string | undefined, keyId: string): string | undefined {
  if (userId !== undefined) return `user:${userId}`;
  return keyId === '' ? undefined : `key:${keyId}`;
}

/** `user:bob` → ['user', 'bob']; undefined when it names no kind. */
function parseMemberId(memberId: string): [MemberKind, string] | undefined {
  const at = memberId.indexOf(':');
  const kind = memberId.slice(0, at) as MemberKind;
  if (at < 0 || !KINDS.includes(kind) || at === memberId.length - 1) return undefined;
  return [kind, memberId.slice(at + 1)];
}

function resolveMember(entry: unknown, where: string, defaults: LimitDefaults, template: boolean): MemberLimits {
  if (!isRecord(entry)) throw invalid(where, 'a member is { "budget": ... } or { "exempt": true }');
  const names = Object.keys(entry);
  if (!template && names.length === 1 && entry.exempt === true) return undefined;
  if (names.length !== 1 || names[0] !== 'budget')
    throw invalid(
      where,
      template ? 'the template is { "budget": ... }' : 'a member is { "budget": ... } or { "exempt": true }',
    );
  return resolveLimits(entry.budget, `${where}.budget`, defaults);
}

function resolveTeam(tenant: string, team: string, config: unknown, defaults: LimitDefaults): ResolvedTeam {
  const where = `teamBudgets.${tenant}.${team}`;
  if (!isRecord(config)) throw invalid(where, 'a team is { "budget"?: ..., "members"?: { ... } }');
  for (const name of Object.keys(config))
    if (!TEAM_FIELDS.includes(name))
      throw invalid(where, `unknown field "${name}"; known fields: ${TEAM_FIELDS.join(', ')}`);
  const budgets =
    config.budget === undefined
      ? NONE
      : resolveLimits(config.budget, `${where}.budget`, defaults).map((limit) => bind(limit, 'team', team, tenant));
  const resolved: ResolvedTeam = { budgets, each: undefined, named: new Map(), bare: new Map() };
  if (config.members === undefined) return resolved;
  if (!isRecord(config.members)) throw invalid(`${where}.members`, 'must map member ids (and "each") to members');
  for (const [id, entry] of Object.entries(config.members)) {
    const at = `${where}.members.${id}`;
    if (id === 'each') resolved.each = resolveMember(entry, at, defaults, true);
    else (parseMemberId(id) ? resolved.named : resolved.bare).set(id, resolveMember(entry, at, defaults, false));
  }
  return resolved;
}

/** `limit` charged to member `memberId` (`user:bob`) of `team` of `tenant`: in the tenant's slot, beside its budgets. */
function bindMember(limit: ResolvedLimit, tenant: string, team: string, memberId: string): ResolvedBudget {
  const [kind, id] = parseMemberId(memberId)!;
  const teamPart = `tenant:${encodeURIComponent(tenant)}:team:${encodeURIComponent(team)}`;
  return {
    ...bind(limit, 'member', memberId, tenant),
    teamId: team,
    label: `member ${memberId} of team ${team} of tenant ${tenant}`,
    // The kind is its own part: user `bob` and key `bob` are two members.
    base: `budget:${teamPart}:member:${kind}:${encodeURIComponent(id)}:${periodPart(limit)}`,
  };
}

export class TeamBudgets {
  /** By tenant, then team. */
  readonly #teams = new Map<string, Map<string, ResolvedTeam>>();
  readonly #bound = new Map<string, readonly ResolvedBudget[]>();

  constructor(options: TeamBudgetOptions, defaults: LimitDefaults) {
    const tenants = options.teamBudgets;
    if (tenants === undefined) return;
    if (!isRecord(tenants))
      throw invalid('budgetGuard() option teamBudgets', 'must map tenant ids to { "<team>": { ... } }');
    for (const [tenant, teams] of Object.entries(tenants)) {
      if (!isRecord(teams)) throw invalid(`teamBudgets.${tenant}`, 'must map team ids to teams');
      const resolved = new Map<string, ResolvedTeam>();
      for (const [team, config] of Object.entries(teams))
        resolved.set(team, resolveTeam(tenant, team, config, defaults));
      this.#teams.set(tenant, resolved);
    }
  }

  /** True when some tenant has a team. */
  get any(): boolean {
    return this.#teams.size > 0;
  }

  /** True when `team` is a team of `tenant`. */
  has(tenant: string | undefined, team: string): boolean {
    return tenant !== undefined && this.#teams.get(tenant)?.has(team) === true;
  }

  /** Every limit configured. */
  *limits(): Iterable<ResolvedLimit> {
    for (const teams of this.#teams.values())
      for (const team of teams.values()) {
        yield* team.budgets;
        for (const limits of [team.each, ...team.named.values(), ...team.bare.values()]) if (limits) yield* limits;
      }
  }

  /** The budgets of `team` of `tenant`. */
  forTeam(tenant: string, team: string): readonly ResolvedBudget[] {
    return this.#teams.get(tenant)?.get(team)?.budgets ?? NONE;
  }

  /** The budgets of member `memberId` (`user:<id>` or `key:<id>`) within `team` of `tenant`: its entry, else `each`. */
  forMember(tenant: string, team: string, memberId: string): readonly ResolvedBudget[] {
    const config = this.#teams.get(tenant)?.get(team);
    const parsed = parseMemberId(memberId);
    if (!config || !parsed) return NONE;
    const cacheKey = `${encodeURIComponent(tenant)}:${encodeURIComponent(team)}:${memberId}`;
    const cached = this.#bound.get(cacheKey);
    if (cached) return cached;
    // An exempt entry holds `undefined`: `has`, not `get`, says whether there is one.
    let found = config.each;
    if (config.named.has(memberId)) found = config.named.get(memberId);
    else if (config.bare.has(parsed[1])) found = config.bare.get(parsed[1]);
    if (this.#bound.size >= MAX_BOUND) this.#bound.clear();
    const made = (found ?? []).map((limit) => bindMember(limit, tenant, team, memberId));
    this.#bound.set(cacheKey, made);
    return made;
  }

  /** The budgets with a fixed id: every team's, and members named with their kind. */
  configured(): ResolvedBudget[] {
    const out: ResolvedBudget[] = [];
    for (const [tenant, teams] of this.#teams)
      for (const [team, config] of teams) {
        out.push(...config.budgets);
        for (const memberId of config.named.keys()) out.push(...this.forMember(tenant, team, memberId));
      }
    return out;
  }
}
