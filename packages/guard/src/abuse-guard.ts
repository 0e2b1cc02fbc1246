// The abuse checks in the chain: each request's traits recorded at its end, and the model's throttles and blocks
// enforced before authentication (addresses) and after it (keys, tenants), from this process's copy (no I/O).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, getContext, type ErrorRenderer, type Identity } from '@tollgate/core';
import { shadowsRefusal } from '@tollgate/core/checks';
import type { ProviderAdapter } from '@tollgate/providers';
import { promptTraits, type AbuseSubject, type PromptTraits } from './abuse-features.js';
import { isAbuseMitigation, registrySubject } from './abuse-actions.js';
import type { AbuseWatch } from './abuse-watch.js';
import { credentialDigest } from './auth-failure-guard.js';
import { clientAddress } from './client-address.js';
import type { MitigationRegistry } from './mitigation-registry.js';
import type { Mitigation } from './types.js';

type Middleware = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;

/** The prompt texts of the request's declared call, through its adapter (no copy: the visitor returns each text). */
function promptOf(req: IncomingMessage, res: ServerResponse): PromptTraits | undefined {
  const call = getContext(req, res).call;
  const mapPromptText = call && (call.adapter as ProviderAdapter).mapPromptText;
  if (!call || !mapPromptText) return undefined;
  const texts: string[] = [];
  mapPromptText(call.body, (text) => {
    texts.push(text);
    return text;
  });
  return promptTraits(texts);
}

const WHO: Record<string, string> = { key: 'API key', address: 'address', tenant: 'organization' };

function abuseRefusal(mitigation: Mitigation, subject: AbuseSubject, now: number): ApiError {
  const who = WHO[subject.slice(0, subject.indexOf(':'))] ?? 'subject';
  const seconds = Math.max(1, Math.ceil(((mitigation.until ?? now) - now) / 1000));
  if (mitigation.kind === 'block')
    return new ApiError(
      'abuse_blocked',
      `Requests from this ${who} are blocked for ${seconds}s: ${mitigation.reason}. An operator can clear it.`,
    );
  const retry = Math.max(1, Math.ceil(1 / (mitigation.scale ?? 1)));
  return new ApiError(
    'abuse_throttled',
    `Requests from this ${who} are slowed for ${seconds}s: ${mitigation.reason}. An operator can clear it.`,
    { headers: { 'Retry-After': retry } },
  );
}

/** Counters of the requests of throttled subjects in this process: one in 1/scale is let through. */
const MAX_PACED = 10_000;

interface AbuseGuard {
  /** Before authentication: a blocked or throttled address is refused; every request is recorded at its end. */
  beforeAuth: Middleware;
  /** After authentication: a blocked or throttled key or tenant is refused; the caller's score goes on the record. */
  afterAuth: Middleware;
}

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The client address the abuse guard read before authentication. */
    'guard.abuseAddress': string;
  }
}

export function abuseGuard(watch: AbuseWatch, registry: MitigationRegistry, renderError: ErrorRenderer): AbuseGuard {
  const paced = new Map<string, number>();
  /** Each request's client address, read once before authentication and kept on its context (not in a WeakMap keyed by the request: see docs/performance.md). */
  const addressOf = (req: IncomingMessage, res: ServerResponse) =>
    getContext(req, res).get('guard.abuseAddress') ?? clientAddress(req);

  /** The model's action on `subject` that refuses this request, if any (a throttle lets one in 1/scale through). */
  function refusing(subject: AbuseSubject, now: number): Mitigation | undefined {
    const target = registrySubject(subject);
    const block = registry.none('block') ? undefined : registry.get('block', target, now);
    if (block && isAbuseMitigation(block)) return block;
    const throttle = registry.none('throttle') ? undefined : registry.get('throttle', target, now);
    if (!throttle || !isAbuseMitigation(throttle)) return undefined;
    const id = `${subject}@${throttle.at}`;
    const count = paced.get(id) ?? 0;
    if (paced.size >= MAX_PACED) paced.clear();
    paced.set(id, count + 1);
    return count % Math.max(1, Math.round(1 / (throttle.scale ?? 1))) === 0 ? undefined : throttle;
  }

  /** Refuses with the first subject's action (a shadow of the chain's `shadowMode` serves it), else false. */
  function refuse(req: IncomingMessage, res: ServerResponse, subjects: readonly AbuseSubject[]): boolean {
    if (registry.none('block') && registry.none('throttle')) return false;
    const now = Date.now();
    for (const subject of subjects) {
      const mitigation = refusing(subject, now);
      if (!mitigation) continue;
      const error = abuseRefusal(mitigation, subject, now);
      if (shadowsRefusal(req, res, error.code)) return false;
      renderError(error, req, res);
      return true;
    }
    return false;
  }

  function noteScore(req: IncomingMessage, res: ServerResponse, subjects: readonly AbuseSubject[]): void {
    let highest: number | undefined;
    for (const subject of subjects) {
      const score = watch.scoreOf(subject);
      if (score !== undefined && (highest === undefined || score > highest)) highest = score;
    }
    if (highest !== undefined) getContext(req, res).abuseScore = highest;
  }

  // One shared listener (no closure per request): `this` is the response.
  function recordAtEnd(this: ServerResponse): void {
    const req = this.req;
    const ctx = getContext(req, this);
    // Provider calls and failed authentications: an operator's or a health check's own requests are not traffic.
    if (!ctx.call && this.statusCode !== 401) return;
    const agent = req.headers['user-agent'];
    watch.record(
      req,
      addressOf(req, this),
      {
        at: Date.now(),
        status: this.statusCode,
        refusedBy: ctx.refusal?.layer,
        prompt: promptOf(req, this),
        model: ctx.call?.requestedModel,
        route: req.url === undefined ? '' : req.url.split('?', 1)[0]!.slice(0, 100),
        agent: typeof agent === 'string' ? agent.slice(0, 100) : '',
      },
      ctx.identity?.keyId ?? credentialDigest(req, this),
    );
  }

  return {
    beforeAuth: function tollgateAbuseBeforeAuth(req, res, next) {
      res.on('finish', recordAtEnd);
      const address = clientAddress(req);
      getContext(req, res).set('guard.abuseAddress', address);
      const subjects = watch.subjectsOf(address, undefined, undefined);
      if (refuse(req, res, subjects)) return;
      noteScore(req, res, subjects);
      next();
    },
    afterAuth: function tollgateAbuseAfterAuth(req, res, next) {
      const identity = (req as IncomingMessage & { tollgate?: { identity?: Identity } }).tollgate?.identity;
      const subjects = watch.subjectsOf(addressOf(req, res), identity?.keyId, identity?.tenantId);
      // The address was judged before authentication.
      if (
        refuse(
          req,
          res,
          subjects.filter((subject) => !subject.startsWith('address:')),
        )
      )
        return;
      noteScore(req, res, subjects);
      next();
    },
  };
}
