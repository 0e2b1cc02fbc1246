// Reservation ledger on Redis: all-or-nothing reserve across scopes, settle once, expiry purged in-script.
import { assertStoreNumber, assertReserveNumbers } from '@tollgate/core';
import type { LedgerScope, ReservationLedger, ReserveRequest, ReserveResult, ScopeUsage, SettleResult } from '@tollgate/core';
import type { Connection } from './connection.js';
import * as scripts from './scripts.js';

/**
 * Every ledger key carries the same `{ledger}` hash tag, so the whole ledger sits in one Cluster
 * slot. That is what makes a reserve across key, tenant, feature and global scopes one atomic
 * script on Cluster, and lets settle reach the scopes named in the reservation record. It costs
 * nothing in spread: every reserve touches the global scope anyway, so they would meet on one
 * node regardless.
 */
export class RedisReservationLedger implements ReservationLedger {
  readonly #base: string;
  /** One ZSET of live reservation ids by expiry, for the whole ledger. */
  readonly #holds: string;

  constructor(
    private readonly connection: Connection,
    prefix: string,
  ) {
    this.#base = `${prefix}{ledger}:`;
    this.#holds = `${this.#base}holds`;
  }

  #send = (args: string[]) => this.connection.send(args, 'ledger');

  #scopeKey(key: string): string {
    return `${this.#base}scope:${key}`;
  }

  #record(id: string): string {
    return `${this.#base}res:${id}`;
  }

  async reserve(request: ReserveRequest): Promise<ReserveResult> {
    // Lua reads "NaN" as a number: refused here, before it reaches a scope.
    assertReserveNumbers(request);
    // A scope named twice would be charged twice and released once.
    const scopes = [...new Map(request.scopes.map((scope) => [scope.key, scope] as const)).values()];
    const keys = [this.#record(request.id), this.#holds, ...scopes.map((scope) => this.#scopeKey(scope.key))];
    const amount = Math.max(0, request.amount);
    const least = Math.min(amount, Math.max(0, request.minAmount ?? amount));
    const args: (string | number)[] = [amount, least, Math.max(1, Math.ceil(request.ttlMs)), request.id];
    for (const scope of scopes) args.push(scope.limit, Math.ceil(scope.expiresAt));
    const reply = (await scripts.reserve.run(this.#send, keys, args)) as unknown[];
    if (reply[0] === 1) {
      const granted: ReserveResult = { ok: true, id: request.id, amount: Number(reply[1]) };
      // A live id reserved again answers with its grant only.
      if (reply.length > 2) granted.scopes = scopes.map((scope, i) => ({ key: scope.key, limit: scope.limit, spent: Number(reply[2 + 2 * i]), reserved: Number(reply[3 + 2 * i]) }));
      return granted;
    }
    const refused = scopes[Number(reply[1]) - 1] as LedgerScope;
    return { ok: false, scope: refused.key, limit: refused.limit, remaining: Number(reply[2]), resetAt: refused.expiresAt };
  }

  async settle(id: string, actualAmount: number): Promise<SettleResult> {
    assertStoreNumber('ledger.settle', 'actualAmount', actualAmount);
    const reply = (await scripts.settle.run(this.#send, [this.#record(id), this.#holds], [actualAmount, id])) as unknown[];
    if (reply[0] !== 1) return { settled: false, reserved: 0 };
    const scopes: ScopeUsage[] = [];
    // The script names each scope by its hash key; callers know scopes by their ledger key.
    const hashPrefix = `${this.#base}scope:`;
    for (let i = 2; i + 2 < reply.length; i += 3) {
      scopes.push({ key: String(reply[i]).slice(hashPrefix.length), spent: Number(reply[i + 1]), reserved: Number(reply[i + 2]) });
    }
    return { settled: true, reserved: Number(reply[1]), scopes };
  }

  release(id: string): Promise<SettleResult> {
    return this.settle(id, 0);
  }

  async usage(keys: string[]): Promise<ScopeUsage[]> {
    if (keys.length === 0) return [];
    const reply = (await scripts.ledgerUsage.run(this.#send, [this.#holds, ...keys.map((key) => this.#scopeKey(key))], [])) as unknown[];
    return keys.map((key, i) => ({ key, spent: Number(reply[2 * i]), reserved: Number(reply[2 * i + 1]) }));
  }

  async adjustSpent(key: string, delta: number, expiresAt: number): Promise<void> {
    assertStoreNumber('ledger.adjustSpent', 'delta', delta);
    assertStoreNumber('ledger.adjustSpent', 'expiresAt', expiresAt);
    await scripts.adjustSpent.run(this.#send, [this.#holds, this.#scopeKey(key)], [delta, Math.ceil(expiresAt)]);
  }

  async resetScope(key: string): Promise<void> {
    await scripts.resetScope.run(this.#send, [this.#scopeKey(key)], []);
  }
}
