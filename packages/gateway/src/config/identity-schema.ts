// Who is calling, in the config: API keys, JWTs, and the attribution of each request (end user, feature, tags, session).
import { z } from 'zod';
import { choice, fields, nonEmptyString, OBJECT, sha256Hex, stringList, trueOrFalse, url } from './rules.js';
import { budgetsSchema, sessionBudgetSchema } from './budget-limit-schema.js';
import { toolPatterns } from './tier-schema.js';

const isoDateTime = nonEmptyString().refine((text) => !Number.isNaN(Date.parse(text)), 'must be an ISO 8601 date-time');
export const keySchema = fields({
  id: nonEmptyString().describe("The key's name in logs, usage records and /admin/keys."),
  sha256: sha256Hex.describe('SHA-256 hex of the whole key string.'),
  tenant: nonEmptyString().optional().describe('The tenant the key belongs to (a key of `tenants`).'),
  user: nonEmptyString().optional().describe("The user the key's usage is recorded under."),
  feature: nonEmptyString().optional().describe("The feature the key's usage is recorded under."),
  team: nonEmptyString()
    .optional()
    .describe(
      "The team of the key's tenant its calls are charged to (a key of the tenant's `teams`): member, team and tenant budgets at once.",
    ),
  tags: stringList
    .optional()
    .describe("Tags every request of the key carries in its usage record, besides those of the request's tags header."),
  tier: nonEmptyString()
    .optional()
    .describe("The key's tier (a key of `tiers`). Default: its tenant's tier, else `defaultTier`."),
  scopes: stringList.optional().describe('Scopes the key holds (see `requiredScope`).'),
  models: stringList.optional().describe("The key's own model allowlist, besides its tier's."),
  tools: toolPatterns.optional().describe("MCP tools the key may call, besides its tier's and its tenant's."),
  budget: budgetsSchema.optional(),
  sessionBudget: sessionBudgetSchema.optional(),
  budgetOf: nonEmptyString()
    .optional()
    .describe("The key whose budget this one continues, its spend counted under that key's id (set by a rotation)."),
  createdAt: isoDateTime.optional().describe('ISO 8601 (written by `pnpm tollgate keys create`).'),
  expiresAt: isoDateTime.optional().describe('ISO 8601; the key stops working then.'),
  disabled: trueOrFalse.optional().describe('true refuses the key.'),
});

export const jwtSchema = fields({
  issuer: nonEmptyString().optional().describe('The `iss` a token must carry.'),
  audience: nonEmptyString().optional().describe('The `aud` a token must carry.'),
  jwks: z
    .object(
      {
        keys: z
          .array(z.looseObject({}, 'must be a JWK object'), 'must be an array of JWK objects')
          .min(1, 'must hold at least one public key'),
      },
      OBJECT,
    )
    .optional()
    .describe('A static JWKS (`{ "keys": [...] }`).'),
  jwksUrl: url(['https:', 'http:']).optional().describe('A remote JWKS URL (fetched and cached).'),
  tenantClaim: nonEmptyString().optional().describe('The claim naming the tenant.'),
  tierClaim: nonEmptyString().optional().describe('The claim naming the tier.'),
  scopeClaim: nonEmptyString().optional().describe('The claim holding the scopes.'),
  userClaim: nonEmptyString().optional().describe('The claim naming the user.'),
  teamClaim: nonEmptyString()
    .optional()
    .describe('The claim naming the team of its tenant a token is charged to; a team the tenant lacks is 403.'),
  algorithms: stringList.optional().describe('Signature algorithms accepted.'),
})
  .refine((jwt) => jwt.jwks !== undefined || jwt.jwksUrl !== undefined, 'needs "jwks" or "jwksUrl"')
  .describe('Bearer JWTs accepted besides API keys; needs `jwks` or `jwksUrl`.');

const HEADER_NAME = 'must be a header name (letters, digits, -) or false';
const attributionHeader = z
  .union([z.literal(false, HEADER_NAME), z.string(HEADER_NAME).regex(/^[A-Za-z0-9-]+$/, HEADER_NAME)], HEADER_NAME)
  .optional();
const ATTRIBUTION_FIELD = 'must be "user", "feature" or "tags"';
// Checked by the auth package's own rules too (attribution(): the headers differ).
export const attributionSchema = fields({
  userHeader: attributionHeader.describe(
    'The header naming the end user a request is for, when its key names none; false reads none. Default: "x-tollgate-user".',
  ),
  featureHeader: attributionHeader.describe(
    'The header naming the feature a request is for, when its key names none; false reads none. Default: "x-tollgate-feature".',
  ),
  tagsHeader: attributionHeader.describe(
    'The header holding a request\'s tags, comma-separated; false reads none. Default: "x-tollgate-tags".',
  ),
  teamHeader: attributionHeader.describe(
    'The header naming the team of its tenant a request is charged to, when its key names none: a team the tenant does not have is 400, another than the key\'s 403; false reads none. Default: "x-tollgate-team".',
  ),
  bodyUser: trueOrFalse
    .optional()
    .describe(
      "Whether the end user may also come from the body (OpenAI's `user`, Anthropic's `metadata.user_id`) when neither the key nor the header names one. Default: true.",
    ),
  require: z
    .array(choice(['user', 'feature', 'tags'], ATTRIBUTION_FIELD), 'must be an array of "user", "feature", "tags"')
    .optional()
    .describe(
      'Fields every provider request must end up with (from the key, a header or the body): without one it is refused with 400 attribution_required before any limit, reservation or upstream call. Default: none.',
    ),
  maxLength: z
    .int('must be an integer from 1 to 1024')
    .min(1, 'must be an integer from 1 to 1024')
    .max(1024, 'must be an integer from 1 to 1024')
    .optional()
    .describe('The most characters of an end user, a feature or one tag; longer is 400 invalid_request. Default: 128.'),
  maxTags: z
    .int('must be an integer from 1 to 256')
    .min(1, 'must be an integer from 1 to 256')
    .max(256, 'must be an integer from 1 to 256')
    .optional()
    .describe('The most tags of one request; more is 400 invalid_request. Default: 16.'),
}).describe(
  'Who each request is for, beyond its key: the end user, feature and tags, recorded on the usage record (`userId`, `feature`, `tags`). A value the key fixes is kept. Default: the headers below read, nothing required.',
);

const SESSION_HEADERS = 'must be a list of header names (letters, digits, -), or false';
export const sessionsSchema = fields({
  headers: z
    .union(
      [
        z.literal(false, SESSION_HEADERS),
        z.array(z.string(SESSION_HEADERS).regex(/^[A-Za-z0-9-]+$/, SESSION_HEADERS), SESSION_HEADERS),
      ],
      SESSION_HEADERS,
    )
    .optional()
    .describe(
      'The headers a session id is read from, the first one sent winning; without one, the `session_id` of the JSON Claude Code sends as `metadata.user_id`. A session id is 1 to 128 letters, digits or `. : @ - _`; a header holding anything else is 400 invalid_request. false reads none. Default: ["x-claude-code-session-id", "session-id"].',
    ),
}).describe(
  'Agent sessions (Claude Code, Codex): the session id lands on the usage record (`session`) and is the scope of `sessionBudget`.',
);
