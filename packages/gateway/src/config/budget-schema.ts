// The config's budgets and who holds them: tenants, features and the global ceilings.
import { z } from 'zod';
import { fields, nonEmptyString, positiveInteger, recordOf } from './rules.js';
import { budgetsSchema, sessionBudgetSchema, teamsSchema } from './budget-limit-schema.js';
import { shadow, toolPatterns } from './tier-schema.js';

export { budgetsSchema } from './budget-limit-schema.js';

export const tenantSchema = fields({
  tier: nonEmptyString().optional().describe("The tier of the tenant's keys that name none (a key of `tiers`)."),
  budget: budgetsSchema.optional(),
  userBudget: budgetsSchema
    .optional()
    .describe(
      "A budget for every end user of the tenant (the key's `user`), each user on their own: the same user id in another tenant has another.",
    ),
  sessionBudget: sessionBudgetSchema.optional(),
  teams: teamsSchema.optional(),
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
