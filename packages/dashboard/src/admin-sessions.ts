// Browser sessions of the admin: random ids kept in this process's memory, each with its CSRF token and expiry.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuditActor } from '@tollgate/core/audit';

export interface AdminSession {
  /** The token every write from this session's pages must carry. */
  readonly csrfToken: string;
  readonly expiresAt: number;
  /**
   * Who opened the session, as the audit trail names them: an OIDC sign-in sets its subject and role here.
   * @default the admin key's holder
   */
  readonly actor?: AuditActor;
  /** A message for the next page only (a new key, shown once; "credited $10"). */
  flash?: { kind: 'key-created'; id: string; key: string; note?: string } | { kind: 'notice'; message: string };
}

/** 32 random bytes, base64url: unguessable, so the cookie needs no signature. */
export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The session's CSRF token as a page carries it: XORed with fresh random bytes each time, so no
 * two pages hold the same text and a compressed page cannot be probed for it (BREACH).
 */
export function maskToken(token: string): string {
  const raw = Buffer.from(token, 'base64url');
  const mask = randomBytes(raw.length);
  const masked = Buffer.alloc(raw.length);
  for (let i = 0; i < raw.length; i++) masked[i] = raw[i]! ^ mask[i]!;
  return Buffer.concat([mask, masked]).toString('base64url');
}

/** True when `presented` is a masking of `token` (compared in constant time). */
export function isMaskedToken(presented: string, token: string): boolean {
  const raw = Buffer.from(token, 'base64url');
  const both = Buffer.from(presented, 'base64url');
  if (both.length !== raw.length * 2) return false;
  const unmasked = Buffer.alloc(raw.length);
  for (let i = 0; i < raw.length; i++) unmasked[i] = both[i]! ^ both[i + raw.length]!;
  return timingSafeEqual(unmasked, raw);
}

/** Compares two tokens in constant time (on their digests, so lengths leak nothing either). */
export function tokensEqual(a: string, b: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(a), digest(b));
}

/**
 * Sessions by the SHA-256 of their id: what memory holds cannot be replayed as a cookie. Sessions
 * live in one process; behind several, route a browser to one (sticky sessions) or use Bearer.
 */
export class AdminSessions {
  readonly #sessions = new Map<string, AdminSession>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxSessions: number,
    private readonly now: () => number,
  ) {}

  /** A new session; returns the id for the cookie. */
  open(): { id: string; session: AdminSession } {
    this.#sweep();
    // A Map iterates in insertion order: the first entry is the oldest session.
    while (this.#sessions.size >= this.maxSessions) this.#sessions.delete(this.#sessions.keys().next().value!);
    const id = randomToken();
    const session: AdminSession = { csrfToken: randomToken(), expiresAt: this.now() + this.ttlMs };
    this.#sessions.set(digest(id), session);
    return { id, session };
  }

  /**
   * The session kept here for one the app signed in (OIDC): its flash messages live in this process, its life and its
   * CSRF token are the app's.
   */
  adopt(view: { id: string; csrfToken: string; expiresAt: number; actor: AuditActor }): AdminSession {
    const key = digest(`operator:${view.id}`);
    const kept = this.#sessions.get(key);
    if (kept && kept.csrfToken === view.csrfToken) return kept;
    this.#sweep();
    while (this.#sessions.size >= this.maxSessions) this.#sessions.delete(this.#sessions.keys().next().value!);
    const session: AdminSession = { csrfToken: view.csrfToken, expiresAt: view.expiresAt, actor: view.actor };
    this.#sessions.set(key, session);
    return session;
  }

  /** The live session of a cookie value, if any. */
  find(id: string | undefined): AdminSession | undefined {
    if (id === undefined || id.length === 0 || id.length > 100) return undefined;
    const key = digest(id);
    const session = this.#sessions.get(key);
    if (!session) return undefined;
    if (session.expiresAt <= this.now()) {
      this.#sessions.delete(key);
      return undefined;
    }
    return session;
  }

  close(id: string | undefined): void {
    if (id !== undefined) this.#sessions.delete(digest(id));
  }

  get size(): number {
    return this.#sessions.size;
  }

  #sweep(): void {
    const now = this.now();
    for (const [key, session] of this.#sessions) if (session.expiresAt <= now) this.#sessions.delete(key);
  }
}

function digest(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}
