// One budget or a list of them, as every holder in the config (key, tenant, tier, feature, global) writes it.
import { z } from 'zod';
import { MAX_USD } from '@tollgate/core/options';
import type { CalendarPeriod } from '@tollgate/core/options';
import { choice, fields, fraction } from './rules.js';

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

/** A budget for every agent session of the key, tenant or tier that names it, each session on its own. */
export const sessionBudgetSchema = budgetsSchema.describe(
  'A budget for each agent session (the session id of `sessions`), every session on its own: ' +
    '`{ "usd": 5, "period": "day" }`. A key\'s wins over its tenant\'s, a tenant\'s over its tier\'s; ' +
    'calls without a session id are not capped by it.',
);
