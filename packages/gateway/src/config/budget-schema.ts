// The config's budgets and who holds them: tenants, features and the global ceilings.
import { z } from 'zod';
import { MAX_USD } from '@tollgate/core/options';
import type { CalendarPeriod } from '@tollgate/core/options';
import { choice, fields, fraction, nonEmptyString, positiveInteger, recordOf } from './rules.js';
import { shadow, toolPatterns } from './tier-schema.js';

const PERIOD = 'must be "hour", "day", "week", "month" or "quarter"';
const SOFT_LIMIT = 'must be a fraction greater than 0 and at most 1';
export const budgetSchema = fields({
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
}).describe('A budget: `{ "usd": 5, "period": "day", "softLimit": 0.8 }`.');

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

export const tenantSchema = fields({
  tier: nonEmptyString().optional().describe("The tier of the tenant's keys that name none (a key of `tiers`)."),
  budget: budgetsSchema.optional(),
  userBudget: budgetsSchema
    .optional()
    .describe(
      "A budget for every end user of the tenant (the key's `user`), each user on their own: the same user id in another tenant has another.",
    ),
  modelBudgets: recordOf(budgetsSchema)
    .optional()
    .describe(
      'Caps on the tenant\'s spend per model (`{ "gpt-4o": { "usd": 50, "period": "month" } }`): once one is spent, `downgrade` for that model applies, else 429; model groups skip a target whose budget is spent.',
    ),
  downgrade: recordOf(nonEmptyString())
    .optional()
    .describe(
      "Model substitutions applied once the tenant passed a budget's soft limit, or once a model's `modelBudgets` entry is spent.",
    ),
  tools: toolPatterns.optional().describe("MCP tools the tenant's keys may call, besides their tier's (`server/*`)."),
  shadow: shadow.optional(),
  metadata: z
    .record(
      z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must be a name of 1 to 64 letters, digits or _ . : -'),
      z.string('must be a string of at most 256 characters').max(256, 'must be a string of at most 256 characters'),
      'must be an object of strings',
    )
    .refine((map) => Object.keys(map).length <= 32, 'must hold at most 32 entries')
    .optional()
    .describe(
      'Notes of the operator on the tenant (`{ "plan": "enterprise" }`): shown by /admin/tenants, used by nothing else.',
    ),
});

export const featureSchema = fields({
  budget: budgetsSchema.optional().describe("The feature's budget, counting every tenant's use of it."),
}).describe('A feature: `{ "budget": { "usd": 30, "period": "month" } }`.');

export const globalSchema = fields({
  requestsPerMinute: positiveInteger.optional().describe('Requests per minute over all traffic.'),
  tokensPerMinute: positiveInteger.optional().describe('Tokens per minute over all traffic.'),
  budget: budgetsSchema.optional(),
  shadow: shadow.optional(),
}).describe('Ceilings over all traffic.');
