// Who may use which admin route and dashboard action: one table of the least role each needs, checked in one place.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, contextOf } from '@tollgate/core';
import type { AuditActor, AuditRole } from '@tollgate/core/audit';
import type { OperatorSession } from './operator-sessions.js';

/** Who a request to /admin or the dashboard acts as, once authenticated. */
export interface SignedInOperator {
  actor: AuditActor;
  /** The tenants it may see; absent: every tenant. */
  tenants?: readonly string[];
  /** The OIDC session it signed in with; absent for the admin key. */
  session?: OperatorSession;
}

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** Who the admin request acts as (its admin key or its sign-in). */
    'operator.signedIn': SignedInOperator;
  }
}

/**
 * How a tenant-scoped operator may use a route: `list` (the route shows only its tenants), or the tenant a route
 * reads, from its parameters (undefined: the route reads no one tenant). A route without it is refused to them.
 */
type TenantScope = 'list' | ((params: Record<string, string>) => string | undefined);

interface AccessRule {
  area: 'admin' | 'dashboard';
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Segments; `:name` is a parameter. */
  path: string;
  /** The least role that may use it; `public` for the sign-in routes. */
  role: AuditRole | 'public';
  tenant?: TenantScope;
}

const RANK: Record<AuditRole, number> = { viewer: 1, operator: 2, admin: 3 };

/** How the table's last column reads a route's tenant. */
const TENANT_SCOPES: Record<string, TenantScope> = {
  list: 'list',
  id: (params) => params.id,
  'tenant-budget': (params) => (params.scope === 'tenant' ? params.id : undefined),
};

/**
 * Every admin route and dashboard action: area, method, path, least role, and for a tenant-scoped operator how the
 * route names its tenant (`list`: the route filters; `id`: the `:id` parameter; `tenant-budget`: a tenant's budget).
 * A route not listed is answered 404 to everyone, whatever the role.
 */
const TABLE = `
admin     GET     /login                              public
admin     GET     /callback                           public
admin     POST    /logout                             public
admin     GET     /session                            viewer    list
admin     POST    /sessions/revoke                    admin
admin     GET     /budgets                            viewer
admin     GET     /budgets/global                     viewer
admin     GET     /budgets/:scope/:id                 viewer    tenant-budget
admin     POST    /budgets/global/top-up              operator
admin     POST    /budgets/global/reset               operator
admin     POST    /budgets/:scope/:id/top-up          operator
admin     POST    /budgets/:scope/:id/reset           operator
admin     GET     /budgets/drift                      viewer
admin     GET     /budgets/:scope/:id/drift           viewer    tenant-budget
admin     GET     /budgets/:scope/:id/holds           viewer    tenant-budget
admin     POST    /budgets/global/repair              operator
admin     POST    /budgets/:scope/:id/repair          operator
admin     GET     /keys                               viewer    list
admin     POST    /keys                               operator
admin     PATCH   /keys/:id                           operator
admin     POST    /keys/:id/revoke                    operator
admin     POST    /keys/:id/rotate                    operator
admin     GET     /tenants                            viewer    list
admin     GET     /tenants/:id                        viewer    id
admin     POST    /tenants                            admin
admin     POST    /tenants:import                     admin
admin     PATCH   /tenants/:id                        admin
admin     DELETE  /tenants/:id                        admin
admin     GET     /prices                             admin
admin     GET     /audit                              admin
admin     GET     /guard                              operator
admin     GET     /guard/anomalies                    operator
admin     GET     /guard/mitigations                  operator
admin     POST    /guard/keys/:id/suspend             operator
admin     POST    /guard/tenants/:id/suspend          operator
admin     POST    /guard/keys/:id/lift                operator
admin     POST    /guard/tenants/:id/lift             operator
admin     POST    /guard/addresses/:address/unblock   operator
admin     GET     /guard/abuse                        operator
admin     DELETE  /guard/abuse/:subject               operator
admin     GET     /abuse                              operator
admin     DELETE  /abuse/:subject                     operator
dashboard GET     /login                              public
dashboard POST    /login                              public
dashboard POST    /logout                             public
dashboard GET     /assets/:name                       public
dashboard GET     /                                   viewer
dashboard GET     /overview                           viewer
dashboard GET     /tenants                            viewer
dashboard GET     /tenants/:id                        viewer    id
dashboard GET     /keys                               viewer
dashboard GET     /requests                           viewer
dashboard GET     /providers                          viewer
dashboard GET     /abuse                              operator
dashboard GET     /audit                              admin
dashboard POST    /keys                               operator
dashboard POST    /keys/:id/revoke                    operator
dashboard POST    /keys/:id/rotate                    operator
dashboard POST    /budgets/global/top-up              operator
dashboard POST    /budgets/global/reset               operator
dashboard POST    /budgets/:scope/:id/top-up          operator
dashboard POST    /budgets/:scope/:id/reset           operator
`;

export const OPERATOR_ACCESS: readonly AccessRule[] = TABLE.trim()
  .split('\n')
  .map((line) => {
    const [area, method, path, role, tenant] = line.trim().split(/\s+/);
    const scope = tenant === undefined ? undefined : TENANT_SCOPES[tenant];
    // A typo here must stop the module, never read as a rule that lets anyone in.
    const known =
      ['admin', 'dashboard'].includes(area!) &&
      ['GET', 'POST', 'PATCH', 'DELETE'].includes(method!) &&
      (role === 'public' || Object.hasOwn(RANK, role!)) &&
      (tenant === undefined || scope !== undefined);
    if (!known) throw new Error(`operator access: a row that does not read: ${line.trim()}`);
    return { area, method, path, role, ...(scope ? { tenant: scope } : {}) } as AccessRule;
  });

function segmentsOf(path: string): string[] {
  return path.split('/').filter((segment) => segment.length > 0);
}

const COMPILED = OPERATOR_ACCESS.map((rule) => ({ rule, segments: segmentsOf(rule.path) }));

/** The rule of a request (HEAD reads as GET) and its parameters; undefined when no rule names it. */
export function accessRuleOf(
  area: AccessRule['area'],
  method: string,
  path: string,
): { rule: AccessRule; params: Record<string, string> } | undefined {
  const asked = method === 'HEAD' ? 'GET' : method;
  let segments = segmentsOf(path);
  // The dashboard answers every page in JSON under /api as well.
  if (area === 'dashboard' && segments[0]?.toLowerCase() === 'api') segments = segments.slice(1);
  for (const { rule, segments: pattern } of COMPILED) {
    if (rule.area !== area || rule.method !== asked || pattern.length !== segments.length) continue;
    const params: Record<string, string> = {};
    const matches = pattern.every((part, i) => {
      const segment = segments[i]!;
      if (!part.startsWith(':')) return part === segment.toLowerCase();
      try {
        params[part.slice(1)] = decodeURIComponent(segment);
        return true;
      } catch {
        return false;
      }
    });
    if (matches) return { rule, params };
  }
  return undefined;
}

/**
 * What a signed-in operator gets of a route: let in, refused (403), or told it does not exist (404): a route no rule
 * names is answered 404 whatever the role, so a route added without its rule serves nobody until it has one.
 */
function accessVerdict(
  who: SignedInOperator,
  area: AccessRule['area'],
  method: string,
  path: string,
): 'allow' | 'forbidden' | 'hidden' {
  const found = accessRuleOf(area, method, path);
  if (found === undefined) return 'hidden';
  const { rule, params } = found;
  if (rule.role === 'public') return 'allow';
  if (RANK[who.actor.role] < RANK[rule.role]) return 'forbidden';
  if (who.tenants === undefined || rule.tenant === 'list') return 'allow';
  if (rule.tenant === undefined) return 'forbidden';
  const tenant = rule.tenant(params);
  if (tenant === undefined) return 'forbidden';
  return who.tenants.includes(tenant) ? 'allow' : 'hidden';
}

/** The tenants a request may see (a tenant-scoped sign-in), or undefined for every tenant. */
export function visibleTenants(res: Response): readonly string[] | undefined {
  return contextOf(res)?.get('operator.signedIn')?.tenants;
}

/**
 * Refuses a request its operator's role does not allow, after authentication set who it is. A request nobody signed
 * in for yet passes when `unknown` says so (the dashboard signs its own sessions in after this check).
 */
export function authorizeOperator(
  area: AccessRule['area'],
  whoIsUnknown: (req: Request) => SignedInOperator | undefined,
): RequestHandler {
  return function requireOperatorRole(req: Request, res: Response, next: NextFunction): void {
    const who = contextOf(res)?.get('operator.signedIn') ?? whoIsUnknown(req);
    if (who === undefined) {
      next(new ApiError('insufficient_scope', 'No operator is signed in.', { status: 403 }));
      return;
    }
    const verdict = accessVerdict(who, area, req.method, req.path);
    if (verdict === 'allow') return next();
    if (verdict === 'hidden') return next(new ApiError('not_found', `Not found: ${req.path.slice(0, 200)}.`));
    next(
      new ApiError(
        'insufficient_scope',
        `The ${who.actor.role} role may not ${req.method} ${req.baseUrl}${req.path.slice(0, 200)}.`,
        { status: 403 },
      ),
    );
  };
}
