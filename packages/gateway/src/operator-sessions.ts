// Operator sessions after an OIDC sign-in: a short-lived signed JWT in a cookie, refused once revoked (docs/operators.md).
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { ApiError } from '@tollgate/core';
import type { AuditRole } from '@tollgate/core/audit';

/** jose, loaded at the first session read or made: a gateway nobody signs in to never loads it (lean-start test). */
let joseModule: Promise<typeof import('jose')> | undefined;
const jose = () => (joseModule ??= import('jose'));

/** Who signed in, as a session carries it. */
export interface OperatorSession {
  /** The session's own id (the JWT's `jti`): what signing out and revocation name. */
  id: string;
  /** The issuer's `sub`. */
  subject: string;
  email?: string;
  /** The issuer that signed the operator in. */
  issuer: string;
  role: AuditRole;
  /** The tenants the operator may see; absent: every tenant. */
  tenants?: string[];
  /** Epoch ms the session was opened and ends. */
  openedAt: number;
  expiresAt: number;
}

/** Revoked sessions and subjects, kept until the sessions they refuse would have ended anyway. */
interface SessionRevocations {
  revokeSession(id: string, until: number): Promise<void>;
  /** Every session of `subject` opened at or before `at` is refused. */
  revokeSubject(subject: string, at: number, until: number): Promise<void>;
  isRevoked(session: Pick<OperatorSession, 'id' | 'subject' | 'openedAt'>): Promise<boolean>;
}

/** Revocations in this process's memory: one process, or sticky sessions (docs/operators.md). */
export function memorySessionRevocations(now: () => number = Date.now): SessionRevocations {
  const sessions = new Map<string, number>();
  const subjects = new Map<string, { at: number; until: number }>();
  const sweep = () => {
    const time = now();
    for (const [id, until] of sessions) if (until <= time) sessions.delete(id);
    for (const [subject, entry] of subjects) if (entry.until <= time) subjects.delete(subject);
  };
  return {
    async revokeSession(id, until) {
      sweep();
      sessions.set(id, until);
    },
    async revokeSubject(subject, at, until) {
      sweep();
      const kept = subjects.get(subject);
      subjects.set(subject, { at: Math.max(at, kept?.at ?? 0), until: Math.max(until, kept?.until ?? 0) });
    },
    async isRevoked(session) {
      if (sessions.has(session.id)) return true;
      const subject = subjects.get(session.subject);
      return subject !== undefined && session.openedAt <= subject.at;
    },
  };
}

/** What revocations on Redis need of the stores (`RedisStores` of @tollgate/redis has it). */
export interface RevocationRedis {
  readonly prefix: string;
  sendCommand(args: string[]): Promise<unknown>;
}

/**
 * Revocations in the stores' Redis, shared by every process: each a key that expires when the sessions it refuses
 * would have. Both kinds share one hash tag, so one MGET reads them on Redis Cluster too.
 */
export function redisSessionRevocations(redis: RevocationRedis): SessionRevocations {
  const key = (kind: 'session' | 'subject', id: string) => `${redis.prefix}{operator-sessions}:${kind}:${id}`;
  return {
    async revokeSession(id, until) {
      await redis.sendCommand(['SET', key('session', id), '1', 'PXAT', String(Math.ceil(until))]);
    },
    async revokeSubject(subject, at, until) {
      // A later revocation is the one kept: its time refuses every session the earlier one did.
      await redis.sendCommand(['SET', key('subject', subject), String(at), 'PXAT', String(Math.ceil(until))]);
    },
    async isRevoked(session) {
      const reply = await redis.sendCommand(['MGET', key('session', session.id), key('subject', session.subject)]);
      const [revoked, subjectAt] = Array.isArray(reply) ? reply : [];
      if (revoked !== null && revoked !== undefined) return true;
      return subjectAt !== null && subjectAt !== undefined && session.openedAt <= Number(subjectAt);
    },
  };
}

const AUDIENCE = 'tollgate-operator';
const ISSUER = 'tollgate';
const ROLES: readonly AuditRole[] = ['viewer', 'operator', 'admin'];

interface OperatorSessionsOptions {
  /** The signing secret (32 bytes or more). */
  secret: Uint8Array;
  ttlMs: number;
  revocations: SessionRevocations;
  now?: () => number;
}

/** Opens, reads and ends operator sessions; also seals the short state of a sign-in under way. */
export class OperatorSessions {
  readonly ttlMs: number;
  readonly #secret: Uint8Array;
  readonly #revocations: SessionRevocations;
  readonly #now: () => number;

  constructor(options: OperatorSessionsOptions) {
    if (options.secret.length < 32) throw new Error('operator sessions need a secret of 32 bytes or more');
    this.#secret = options.secret;
    this.ttlMs = options.ttlMs;
    this.#revocations = options.revocations;
    this.#now = options.now ?? Date.now;
  }

  /** A random secret for one process. */
  static randomSecret(): Uint8Array {
    return randomBytes(32);
  }

  /** A new session for a signed-in operator; returns the cookie's value. */
  async open(
    who: Omit<OperatorSession, 'id' | 'openedAt' | 'expiresAt'>,
  ): Promise<{ token: string; session: OperatorSession }> {
    const openedAt = this.#now();
    const session: OperatorSession = { ...who, id: randomUUID(), openedAt, expiresAt: openedAt + this.ttlMs };
    const { SignJWT } = await jose();
    const token = await new SignJWT({
      role: session.role,
      idp: session.issuer,
      opened: openedAt,
      ...(session.email ? { email: session.email } : {}),
      ...(session.tenants ? { tenants: session.tenants } : {}),
    })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(session.subject)
      .setJti(session.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(Math.floor(openedAt / 1000))
      .setExpirationTime(Math.floor(session.expiresAt / 1000))
      .sign(this.#secret);
    return { token, session };
  }

  /** The live session a cookie holds: undefined when it is forged, altered, expired or revoked. */
  async read(token: string | undefined): Promise<OperatorSession | undefined> {
    if (token === undefined || token.length === 0 || token.length > 8192) return undefined;
    const { jwtVerify } = await jose();
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.#secret, {
        algorithms: ['HS256'],
        issuer: ISSUER,
        audience: AUDIENCE,
        requiredClaims: ['sub', 'jti', 'exp', 'role'],
        currentDate: new Date(this.#now()),
      }));
    } catch {
      return undefined;
    }
    const { sub, jti, exp, role, idp, opened, email, tenants } = payload as Record<string, unknown>;
    if (typeof sub !== 'string' || typeof jti !== 'string' || typeof exp !== 'number') return undefined;
    if (!ROLES.includes(role as AuditRole) || typeof idp !== 'string' || typeof opened !== 'number') return undefined;
    if (tenants !== undefined && !(Array.isArray(tenants) && tenants.every((t) => typeof t === 'string')))
      return undefined;
    const session: OperatorSession = {
      id: jti,
      subject: sub,
      issuer: idp,
      role: role as AuditRole,
      openedAt: opened,
      expiresAt: exp * 1000,
      ...(typeof email === 'string' ? { email } : {}),
      ...(tenants ? { tenants: tenants as string[] } : {}),
    };
    let revoked: boolean;
    try {
      revoked = await this.#revocations.isRevoked(session);
    } catch (error) {
      // A revocation that cannot be read may be one that was made: the session waits until it can be read.
      throw new ApiError('service_unavailable', 'Operator sessions cannot be checked now: try again shortly.', {
        cause: error,
        headers: { 'retry-after': '5' },
      });
    }
    return revoked ? undefined : session;
  }

  /** Signing out: the session is refused from now on, even if its cookie is kept. */
  async close(session: OperatorSession): Promise<void> {
    await this.#revocations.revokeSession(session.id, session.expiresAt);
  }

  /** Every session a subject holds now is refused (a new sign-in opens a new one). */
  async revokeSubject(subject: string): Promise<void> {
    const now = this.#now();
    await this.#revocations.revokeSubject(subject, now, now + this.ttlMs);
  }

  /** The session's CSRF token: derived from its id, so no server state holds it. */
  csrfToken(session: OperatorSession): string {
    return createHmac('sha256', this.#secret).update(`csrf:${session.id}`).digest('base64url');
  }

  /** Seals a sign-in under way (state, nonce, PKCE verifier, where to go) for a cookie of `ttlMs`. */
  async seal(value: Record<string, string>, ttlMs: number): Promise<string> {
    const now = this.#now();
    const { SignJWT } = await jose();
    return new SignJWT({ ...value })
      .setProtectedHeader({ alg: 'HS256' })
      .setAudience(`${AUDIENCE}:sign-in`)
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(Math.floor((now + ttlMs) / 1000))
      .sign(this.#secret);
  }

  async unseal(token: string | undefined): Promise<Record<string, unknown> | undefined> {
    if (token === undefined || token.length > 8192) return undefined;
    const { jwtVerify } = await jose();
    try {
      const { payload } = await jwtVerify(token, this.#secret, {
        algorithms: ['HS256'],
        audience: `${AUDIENCE}:sign-in`,
        currentDate: new Date(this.#now()),
      });
      return payload as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }
}
