// Top-up credit kept durably beside the usage ledger: written before the store is credited, restored after a loss.
import { randomUUID } from 'node:crypto';
import { ApiError } from '@tollgate/core';
import { withTimeout } from '@tollgate/core/store-contracts';
import type { LedgerScope, ReservationLedger } from '@tollgate/core/store-contracts';

/** A budget scope of one period (or rolling bucket) as the journal keeps it: the store's scope key and its slot. */
interface CreditScope {
  key: string;
  slot?: string;
  /** Epoch ms when the scope's period ends (its credit ends with it). */
  expiresAt: number;
}

/** What one operator action gives a scope. */
interface CreditEntry extends CreditScope {
  nanoUsd: number;
}

/**
 * One operator action on credit. A top-up adds its amount to each scope; `carried` records a credit the store held
 * before any was journaled for the scope (given before a journal existed); a reset starts the scope's credit over.
 */
export interface CreditOperation {
  /** Unique per action: an operation recorded again under the same id is stored once (a retried write counts once). */
  id: string;
  kind: 'top-up' | 'carried' | 'reset';
  /** Epoch ms of the action. */
  at: number;
  entries: readonly CreditEntry[];
}

/** A scope's credit as the journal holds it: its top-ups (and carried credit) since its last reset. */
export interface ScopeCredit extends CreditScope {
  creditNanoUsd: number;
  /** When the scope's last reset was made (epoch ms), if it had one: its spend counts from there (see rebuildSpend). */
  resetAt?: number;
}

/**
 * Where top-ups and resets are recorded durably (`postgresCreditJournal` from @tollgate/metering keeps them in the SQL
 * usage ledger's database). With one, a top-up is journaled before the store is credited, and the store's credit is
 * raised to the journal's (never added to it), so a rebuild after a loss gives back each credit once; a reset is
 * journaled before the store forgets, so a rebuild counts the scope's spend from it, not from the period's start.
 */
export interface CreditJournal {
  /** Stores the operation; resolves once it is durable. */
  record(operation: CreditOperation): Promise<void>;
  /** Takes back an operation the store could not be given: a top-up that failed is given nowhere. */
  withdraw(id: string): Promise<void>;
  /** Each journaled scope with a period ending after `now` (only those of `keys` when given), with its last reset. */
  credits(now: number, keys?: readonly string[]): Promise<ScopeCredit[]>;
}

/** What the journal's calls need of a guard's book (budget-status's BudgetBook): its ledger, deadline and clock. */
interface CreditBook {
  ledger: ReservationLedger;
  storeTimeoutMs: number;
  now: () => number;
}

/** Raised to a journal's figure: what a store does with credit when a journal keeps it. */
type CreditRaiser = (scope: CreditScope, credit: number) => Promise<boolean>;

function raiserOf(book: CreditBook): CreditRaiser {
  const { ledger } = book;
  if (typeof ledger.restoreCredit !== 'function')
    throw new TypeError(
      'a credit journal needs a ledger that can raise credit (restoreCredit): the memory or Redis one',
    );
  return (scope, credit) =>
    withTimeout(ledger.restoreCredit!(scope, credit, scope.expiresAt), book.storeTimeoutMs, 'ledger.restoreCredit');
}

function keysOf(scopes: readonly LedgerScope[]): string[] {
  return scopes.map((scope) => scope.key);
}

function scopeOf(scope: LedgerScope | CreditScope): CreditScope {
  return { key: scope.key, ...(scope.slot === undefined ? {} : { slot: scope.slot }), expiresAt: scope.expiresAt };
}

/**
 * Credit the store holds for scopes the journal has never seen (given before it kept them): recorded first, under one
 * id per scope, so the journal's figure includes it and two processes carrying it at once record it once.
 */
async function carryUnjournaled(
  book: CreditBook,
  journal: CreditJournal,
  scopes: readonly LedgerScope[],
  now: number,
): Promise<void> {
  const known = await journal.credits(now, keysOf(scopes));
  const journaled = new Set(known.map((credit) => credit.key));
  const fresh = scopes.filter((scope) => !journaled.has(scope.key));
  if (fresh.length === 0) return;
  const held = await withTimeout(book.ledger.usage(fresh), book.storeTimeoutMs, 'ledger.usage');
  const entries = fresh.flatMap((scope, i) => {
    const credit = held[i]?.credit ?? 0;
    return credit > 0 ? [{ ...scopeOf(scope), nanoUsd: credit }] : [];
  });
  if (entries.length > 0) await journal.record({ id: 'carried', kind: 'carried', at: now, entries });
}

/** Raises each scope's credit in the store to the journal's figure; true when every raise was answered. */
async function raiseToJournal(raise: CreditRaiser, journal: CreditJournal, keys: readonly string[], now: number) {
  const credits = await journal.credits(now, keys);
  const answered = await Promise.allSettled(credits.map((credit) => raise(credit, credit.creditNanoUsd)));
  return answered.every((result) => result.status === 'fulfilled');
}

/**
 * A top-up with a journal: recorded durably first (a failure there gives nothing anywhere), then each scope's credit in
 * the store is raised to the journal's sum, asked again once if the store did not answer (raising is idempotent). A
 * store that still does not answer: the top-up is withdrawn from the journal and the call fails, so it is given
 * nowhere (unless the store applied a raise whose answer was lost: then the store holds it, as it shows).
 */
export async function giveJournaledCredit(
  book: CreditBook,
  journal: CreditJournal,
  scopes: readonly LedgerScope[],
  amount: number,
): Promise<void> {
  const now = book.now();
  const raise = raiserOf(book);
  const id = randomUUID();
  const entries = scopes.map((scope) => ({ ...scopeOf(scope), nanoUsd: amount }));
  try {
    await carryUnjournaled(book, journal, scopes, now);
    await journal.record({ id, kind: 'top-up', at: now, entries });
  } catch (error) {
    throw unavailable(`The top-up was not given: the credit journal did not record it (${messageOf(error)}).`, error);
  }
  const keys = keysOf(scopes);
  if ((await raiseToJournal(raise, journal, keys, now)) || (await raiseToJournal(raise, journal, keys, now))) return;
  const withdrawn = await journal.withdraw(id).then(
    () => 'it was withdrawn from the credit journal',
    (error: unknown) => `it stays in the credit journal (${messageOf(error)}) and is given by the next rebuild`,
  );
  throw unavailable(`The top-up could not be given in the budget store; ${withdrawn}.`);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A top-up or reset that could not be made durable: 503, with nothing given (see giveJournaledCredit). */
function unavailable(message: string, cause?: unknown): ApiError {
  return new ApiError('service_unavailable', message, { headers: { 'retry-after': '1' }, cause });
}

/**
 * A reset with a journal: recorded first, so a rebuild after it neither gives back the credit the reset forgot nor
 * counts the spend it forgot (a rebuild counts the calls that finished from the reset's time on).
 */
export async function journalReset(book: CreditBook, journal: CreditJournal, scopes: readonly LedgerScope[]) {
  const entries = scopes.map((scope) => ({ ...scopeOf(scope), nanoUsd: 0 }));
  try {
    await journal.record({ id: randomUUID(), kind: 'reset', at: book.now(), entries });
  } catch (error) {
    throw unavailable(`The reset was not made: the credit journal did not record it (${messageOf(error)}).`, error);
  }
}

/**
 * After a store lost its data (or a memory store started): each journaled scope's credit in a current period (as
 * `journal.credits(now)` read it) raised to the journal's. Raised to, never added: a credit the store still holds is
 * not counted twice. Resolves with the scopes raised.
 */
export async function restoreCredits(book: CreditBook, credits: readonly ScopeCredit[]): Promise<ScopeCredit[]> {
  const raise = raiserOf(book);
  const restored: ScopeCredit[] = [];
  for (const credit of credits) {
    if (credit.creditNanoUsd > 0 && (await raise(credit, credit.creditNanoUsd))) restored.push(credit);
  }
  return restored;
}
