// Settles as numbered batches: what a settle carries, how the pending ones sum into one batch, and the spool file
// where batches that could not land before close wait for the next ledger (each lands exactly once).
import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ScopeUsage, SettledRecord } from '@tollgate/core/store-contracts';

/** What this process holds for one live reservation: the settle needs it, Redis keeps no record. */
export interface Held {
  amount: number;
  /** The bucket time the reservation expires with (Redis time, ms). */
  bucket: string;
  scopes: string[];
  /** Each scope's birth when reserved: a settle that finds another knows Redis lost the reservation. */
  births: string[];
  /** Each scope's period end (epoch ms): where a lost scope is charged again. */
  periodEnds: number[];
}

/** One settle waiting for its batch. */
export interface PendingSettle {
  held: Held;
  actual: number;
  /** The usage records `actual` is for: charged without a reservation, only those a rebuild did not count. */
  records?: readonly SettledRecord[] | undefined;
  resolve(scopes: ScopeUsage[]): void;
  reject(error: unknown): void;
}

/** A reserve whose reply never came (the connection broke, or the deadline passed): Redis may have run it. */
export interface InDoubt {
  /** Its receipt's tag, `seq,id`, in field `seq % RECEIPTS`. */
  seq: number;
  id: string;
  scopes: string[];
  periodEnds: number[];
}

/** A batch as sent (and, when it cannot be sent before close, as spooled). */
export interface Batch {
  ledger: string;
  seq: number;
  /** The scope hashes first in `keys`, then the sequence key (and, from 'b3' on, the slot's cut and rebuilt mark). */
  scopes?: number;
  keys: string[];
  args: string[];
}

/** The birth a share is sent with when its reservation held nothing: never a hash's, so charged as lost (checked). */
const HELD_NOTHING = '-';

/**
 * A record as a settle batch carries it: "amount,at,id" (the id last: it is the only part that may hold a comma).
 * Undefined for one that cannot be checked against a rebuild (not an object; an amount or a time that is no finite
 * number, which the script could not compare): the batch goes without it, and where its share lost its reservation the
 * whole amount is charged, never less.
 */
function recordArg(record: SettledRecord): string | undefined {
  if (typeof record !== 'object' || record === null) return undefined;
  try {
    const amount = Number(record.amount);
    const at = Number(record.at);
    if (!Number.isFinite(amount) || !Number.isFinite(at)) return undefined;
    return `${Math.max(0, Math.ceil(amount))},${Math.floor(at)},${String(record.id)}`;
  } catch {
    // A field that cannot be read as a number or a string (a symbol, a throwing getter).
    return undefined;
  }
}

/** The longest wait between two sends of a batch (or two receipt lookups) that failed. */
export const RETRY_MAX_MS = 2_000;

/** One scope's share of a batch: the settles of one bucket and birth, summed. */
interface Share {
  scope: number;
  bucket: string;
  amount: number;
  actual: number;
  birth: string;
  periodEnd: number;
  refs: string;
}

/** The pending settles summed per scope and bucket, with their usage records as sent. */
interface SummedSettles {
  /** The scopes, in the order the batch numbers them (from 1). */
  scopeKeys: string[];
  shares: Share[];
  records: string[];
  /** 'b4': the records in one argument, a line each, and refs as ranges; 'b3' (one argument a record) if an id holds a line break. */
  packed: boolean;
}

/**
 * The pending settles summed per scope and bucket. The usage records of the settles go once each; a share names those
 * of its settles: read only where the share's reservation is lost (or held nothing).
 */
export function sumSettles(pending: readonly PendingSettle[]): SummedSettles {
  const index = new Map<string, number>();
  const shares = new Map<string, Share>();
  const records: string[] = [];
  // Each settle's records as sent, one after another (one that cannot be read is left out: recordArg), and where its
  // own begin and end: a caller in JavaScript may hand anything, and nothing here throws.
  const ends: number[] = [];
  for (const { records: settled } of pending) {
    if (settled)
      for (const record of settled) {
        const arg = recordArg(record);
        if (arg !== undefined) records.push(arg);
      }
    ends.push(records.length);
  }
  const packed = !records.some((arg) => arg.includes('\n'));
  for (let p = 0; p < pending.length; p++) {
    const { held, actual } = pending[p]!;
    const first = (p === 0 ? 0 : ends[p - 1]!) + 1;
    const last = ends[p]!;
    let refs = '';
    if (last >= first) {
      if (packed) refs = `${first}-${last}`;
      else {
        refs = String(first);
        for (let k = first + 1; k <= last; k++) refs += `,${k}`;
      }
    }
    held.scopes.forEach((key, i) => {
      let scope = index.get(key);
      if (scope === undefined) {
        scope = index.size + 1;
        index.set(key, scope);
      }
      // Spend granted elsewhere (a lease's slice, charged under a reservation of 0) is checked as a lost share is.
      const birth = held.amount === 0 && refs !== '' ? HELD_NOTHING : (held.births[i] ?? '');
      const periodEnd = held.periodEnds[i] ?? 0;
      const shareKey = `${scope}\u0000${held.bucket}\u0000${birth}`;
      const share = shares.get(shareKey);
      if (share) {
        share.amount += held.amount;
        share.actual += actual;
        share.periodEnd = Math.max(share.periodEnd, periodEnd);
        if (refs !== '') share.refs = share.refs === '' ? refs : `${share.refs},${refs}`;
      } else {
        shares.set(shareKey, { scope, bucket: held.bucket, amount: held.amount, actual, birth, periodEnd, refs });
      }
    });
  }
  return { scopeKeys: [...index.keys()], shares: [...shares.values()], records, packed };
}

/** The settle script's arguments for batch `seq` of summed settles; `gated` when the slot's rebuilt mark is checked. */
export function batchArgs(seq: number, gated: boolean, { shares, records, packed }: SummedSettles): string[] {
  const args = packed
    ? [String(seq), 'b4', gated ? '1' : '0', records.join('\n')]
    : [String(seq), 'b3', gated ? '1' : '0', String(records.length), ...records];
  for (const share of shares)
    args.push(
      String(share.scope),
      share.bucket,
      String(share.amount),
      String(share.actual),
      share.birth,
      String(share.periodEnd),
      share.refs,
    );
  return args;
}

/** A claimed spool file this old belongs to a ledger that died before it sent it: taken over again (its batches land once). */
const STALE_CLAIM_MS = 5 * 60_000;

/**
 * Takes over the spool files other ledgers left, for ledger `id` (a rename: two starting together never both take
 * one): the files taken and the batches they hold.
 */
export function claimSpool(directory: string, id: string): { claimed: string[]; batches: Batch[] } {
  const claimed: string[] = [];
  const batches: Batch[] = [];
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch {
    return { claimed, batches };
  }
  for (const name of names) {
    const stale =
      name.startsWith('claimed-') &&
      Date.now() - (statSync(join(directory, name), { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > STALE_CLAIM_MS;
    if (!/^settles-[\w-]+\.jsonl$/.test(name) && !stale) continue;
    const file = join(directory, `claimed-${id}-${name.replace(/^claimed-[\w-]+?-(settles-)/, '$1')}`);
    try {
      renameSync(join(directory, name), file);
    } catch {
      continue;
    }
    claimed.push(file);
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      try {
        batches.push(JSON.parse(line) as Batch);
      } catch {
        // A line torn by a crash mid-write never held a whole batch.
      }
    }
  }
  return { claimed, batches };
}

/** Deletes spool files whose batches landed. */
export function dropSpoolFiles(files: readonly string[]): void {
  for (const file of files) rmSync(file, { force: true });
}

/** Writes batches that could not land to ledger `id`'s spool file, for the next ledger to send. */
export function spoolBatches(directory: string, id: string, batches: readonly Batch[]): void {
  mkdirSync(directory, { recursive: true });
  appendFileSync(join(directory, `settles-${id}.jsonl`), batches.map((batch) => `${JSON.stringify(batch)}\n`).join(''));
}
