// One budget or a list of them, as every holder in the config (key, tenant, tier, feature, global) writes it.
import { z } from 'zod';
import { MAX_USD } from '@tollgate/core/options';
import type { CalendarPeriod } from '@tollgate/core/options';
import { choice, fields, fraction, recordOf } from './rules.js';

const PERIOD = 'must be "hour", "day", "week", "month" or "quarter"';
const SOFT_LIMIT = 'must be a fraction greater than 0 and at most 1';
const INSTANT = 'must be an ISO 8601 date-time with its zone, like "2026-01-01T00:00:00Z"';
const instant = z
  .string(INSTANT)
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/, INSTANT)
  .refine((text) => Number.isFinite(Date.parse(text)), INSTANT);
const budgetSchema = fields({
  usd: z
    .number(`must be a positive number of USD (at most ${MAX_USD.toLocaleString('en-US')})`)
    .gt(0, `must be a positive number of USD (at most ${MAX_USD.toLocaleString('en-US')})`)
    .max(
      MAX_USD,
      `must be a positive number of USD (at most ${MAX_USD.toLocaleString('en-US')}: amounts are counted in exact nano-USD)`,
    )
    .describe('The most that may be spent per period, in USD.'),
  period: choice(['hour', 'day', 'week', 'month', 'quarter'] as const satisfies readonly CalendarPeriod[], PERIOD)
    .default('month')
    .describe(
      'The calendar period the budget resets on, at local boundaries in `timezone`: "week" starts on Monday (ISO weeks), ' +
        '"quarter" on January, April, July and October 1st. Default: "month".',
    ),
  softLimit: z
    .union(
      [fraction(SOFT_LIMIT), z.array(fraction(SOFT_LIMIT), 'must be a list of fractions').min(1, 'must not be empty')],
      `${SOFT_LIMIT}, or a list of them`,
    )
    .optional()
    .describe(
      'Fraction of `usd` (0..1], or a list (`[0.5, 0.8, 0.95]`): each alerts `budget.threshold` once per period; downgrades start at the lowest.',
    ),
  validFrom: instant
    .optional()
    .describe('ISO 8601 instant the budget holds from: before it, it is neither enforced nor reserved against.'),
  validUntil: instant
    .optional()
    .describe(
      'ISO 8601 instant the budget holds until (exclusive): from it on, it is neither enforced nor reserved against.',
    ),
})
  .refine(
    (budget) =>
      budget.validFrom === undefined ||
      budget.validUntil === undefined ||
      Date.parse(budget.validFrom) < Date.parse(budget.validUntil),
    { message: 'must be before validUntil', path: ['validFrom'] },
  )
  .describe('A budget: `{ "usd": 5, "period": "day", "softLimit": 0.8 }`.');

/** One budget or a list of them, every entry holding at once; a period at most once in a list. */
export const budgetsSchema = z
  .union(
    [
      budgetSchema,
      z
        .array(budgetSchema, 'must be a budget or a list of budgets')
        .min(1, 'must hold at least one budget')
        .superRefine((list, context) => {
          const seen = new Set<string>();
          list.forEach((budget, i) => {
            if (seen.has(budget.period))
              context.addIssue({
                code: 'custom',
                path: [i, 'period'],
                message: `repeats period "${budget.period}": give each period once in a list`,
              });
            seen.add(budget.period);
          });
        }),
    ],
    'must be a budget `{ "usd": 5, "period": "day" }` or a list of them',
  )
  .describe(
    'One budget, or a list of budgets that all hold at once (`[{ "usd": 10, "period": "day" }, { "usd": 200 }]`).',
  );

/** A budget for every agent session of the key, tenant or tier that names it, each session on its own. */
export const sessionBudgetSchema = budgetsSchema.describe(
  'A budget for each agent session (the session id of `sessions`), every session on its own: ' +
    '`{ "usd": 5, "period": "day" }`. A key\'s wins over its tenant\'s, a tenant\'s over its tier\'s; ' +
    'calls without a session id are not capped by it.',
);

/** A member of a team: a budget of its own, or exempt from the team's template. */
const teamMemberSchema = z.union(
  [fields({ budget: budgetsSchema }), fields({ exempt: z.literal(true, 'must be true') })],
  'must be { "budget": ... } or { "exempt": true }',
);

/** One team of a tenant: its budget, and its members' (`each`: the template every member gets). */
const teamSchema = fields({
  budget: budgetsSchema.optional().describe("The team's budget: its members' spend together."),
  members: recordOf(teamMemberSchema)
    .superRefine((members, context) => {
      if (members.each !== undefined && !('budget' in members.each))
        context.addIssue({ code: 'custom', path: ['each'], message: 'is the template: it takes a "budget"' });
    })
    .optional()
    .describe(
      'Budgets of its members (an end user `user:<id>`, else a key `key:<id>`; a bare id names either): `each` is the ' +
        'template every member gets on its own, members first seen later too; a named entry overrides it, or ' +
        '`{ "exempt": true }` exempts that member (its spend still counts against the team and the tenant).',
    ),
});

/** A tenant's teams by id: a call of a team reserves on its member, its team and its tenant at once. */
export const teamsSchema = recordOf(teamSchema).describe(
  'Teams of the tenant (`{ "research": { "budget": {...}, "members": { "each": { "budget": {...} } } } }`): a key ' +
    'joins one by its `team`, a request of a key without one by the attribution team header; each call reserves on ' +
    'its member, its team and the tenant at once.',
);
