// The config's `operators` section: the admin key's role and operator sign-in with OpenID Connect (docs/operators.md).
import { choice, duration, environmentName, fields, nonEmptyString, recordOf, stringList, url } from './rules.js';

const ROLE = 'must be "viewer", "operator" or "admin"';
const operatorRole = choice(['viewer', 'operator', 'admin'], ROLE);

/** A plain-http issuer is accepted only on this machine (a test provider): anywhere else its tokens could be read. */
function isLoopbackHttp(text: string): boolean {
  const parsed = new URL(text);
  return parsed.protocol === 'https:' || ['localhost', '127.0.0.1', '[::1]'].includes(parsed.hostname);
}
const LOOPBACK_ONLY = 'must use https: (plain http: only for localhost)';

const oidcSchema = fields({
  issuer: url(['https:', 'http:'])
    .refine(isLoopbackHttp, LOOPBACK_ONLY)
    .describe('The issuer URL; its `/.well-known/openid-configuration` is read at the first sign-in.'),
  clientId: nonEmptyString().describe('The client id registered at the issuer.'),
  clientSecretEnv: environmentName
    .optional()
    .describe('Name of the environment variable holding the client secret. Omit for a public client (PKCE alone).'),
  redirectUrl: url(['https:', 'http:'])
    .refine(isLoopbackHttp, LOOPBACK_ONLY)
    .optional()
    .describe('Where the issuer sends the browser back: `<gateway>/admin/callback`. Default: from the request.'),
  scopes: stringList.optional().describe('Scopes asked for. Default: ["openid", "email", "profile"].'),
  rolesClaim: nonEmptyString()
    .optional()
    .describe('The ID token claim holding roles or groups (a dotted path: `realm_access.roles`). Default: "roles".'),
  roleMap: recordOf(operatorRole)
    .optional()
    .describe(
      'Claim value → `viewer`, `operator` or `admin`. Default: the claim values `viewer`, `operator` and `admin` as ' +
        'they are. A sign-in whose claim maps to no role is refused; several roles give the highest.',
    ),
  tenantClaim: nonEmptyString()
    .optional()
    .describe('A claim naming the tenant(s) an operator may see: present, the operator sees only those tenants.'),
  sessionTtl: duration.optional().describe('How long a sign-in lasts. Default: "1h".'),
  sessionSecretEnv: environmentName
    .optional()
    .describe(
      'Name of the environment variable holding the secret sessions are signed with (32+ characters): set it when ' +
        'several processes serve /admin. Default: a random secret per process (sessions end when it restarts).',
    ),
});

export const operatorsSchema = fields({
  keyRole: operatorRole.optional().describe('The role of the admin key (`adminKeySha256`). Default: "admin".'),
  oidc: oidcSchema.optional(),
}).describe('Who may use /admin and the dashboard besides the admin key, and what each role may do.');
