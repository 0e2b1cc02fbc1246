// What the operator routes (admin API, dashboard, sign-in, metrics) read of the config.
import type { AuditRole } from '@tollgate/core/audit';
import type { OidcSignInOptions } from './oidc-sign-in.js';

/** What the operator routes read of the config. */
export interface OperatorOptions {
  /** The admin key's SHA-256: without it, no admin API and no dashboard (and `/metrics` only when public). */
  adminKeySha256?: string;
  /** `/metrics` without the admin key. */
  metricsPublic: boolean;
  /** The config's tenants and tiers, by name (the dashboard's lists, the metrics' tenant labels). */
  tenants: string[];
  tiers: string[];
  timezone?: string;
  /** Where the dashboard reads the ledger. @default the ledger's default table */
  ledgerTable?: { table?: string; schema?: string };
  /** The admin key's role (`operators.keyRole`). @default 'admin' */
  keyRole: AuditRole;
  /** Operator sign-in with OIDC (`operators.oidc`), its secrets read. @default none */
  oidc?: OidcSignInOptions & {
    sessionTtlMs: number;
    /** Signs sessions; @default a random secret per process */
    sessionSecret?: Uint8Array;
  };
}
