// Reading the dashboard's sources (ledger, budgets, keys, limits) so that one that fails costs its section, not the page.
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import type { DashboardAlert } from './options.js';

type SourceName = 'ledger' | 'budgets' | 'keys' | 'limits' | 'alerts';

/** Collects what failed while a page was read; each failure becomes an alert on the page. */
export class SourceProblems {
  readonly list: { source: SourceName; message: string }[] = [];

  /** Runs `read`; on failure notes it and returns `fallback`. */
  async read<T>(source: SourceName, fallback: T, read: () => Promise<T> | T): Promise<T> {
    try {
      return await read();
    } catch (error) {
      // The class and message only: a driver's error object may hold a connection string.
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      this.list.push({ source, message: message.slice(0, 300) });
      return fallback;
    }
  }

  alerts(): DashboardAlert[] {
    return this.list.map(({ source, message }) => ({
      level: 'critical',
      message: `Could not read the ${SOURCE_WORDS[source]}: ${message}`,
    }));
  }
}

const SOURCE_WORDS: Record<SourceName, string> = {
  ledger: 'usage ledger',
  budgets: 'budgets',
  keys: 'key store',
  limits: 'request and token limits',
  alerts: "app's alerts",
};

export type KeyState = 'active' | 'expired' | 'revoked';

export function keyState(record: ApiKeyRecord, now: number): KeyState {
  if (record.disabled === true) return 'revoked';
  if (record.expiresAt !== undefined && !(Date.parse(record.expiresAt) > now)) return 'expired';
  return 'active';
}

/** A key as operators see it: everything but the hash, with its state and where it lives. */
export interface ListedKey extends Omit<ApiKeyRecord, 'sha256' | 'createdAt'> {
  /** ISO 8601; null when the record has no creation date. */
  createdAt: string | null;
  state: KeyState;
  source: 'store' | 'config';
}

/**
 * The record's creation time, or null when it has none: absent, unreadable, or the epoch that
 * `keyRecordsFromConfig` (@tollgate/auth) gives a config entry without one. No key was made in 1970.
 */
function knownCreationTime(createdAt: string | undefined): string | null {
  return typeof createdAt === 'string' && Date.parse(createdAt) > 0 ? createdAt : null;
}

export function listedKey(record: ApiKeyRecord, source: 'store' | 'config', now: number): ListedKey {
  const { sha256: _sha256, ...rest } = record;
  return { ...rest, createdAt: knownCreationTime(record.createdAt), state: keyState(record, now), source };
}
