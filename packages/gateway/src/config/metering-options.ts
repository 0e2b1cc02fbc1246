// The config's usage destinations (usage log, ledger, spool, Stripe export) as the gateway's metering takes them.
import { join } from 'node:path';
import { parseDuration } from '@tollgate/core';
import { dataDirLayout, embeddedLedgerLocation } from '../data-dir.js';
import type { MeteringOptions } from '../metering-setup.js';
import { ConfigError } from './error.js';
import type { GatewayConfig } from './schema.js';

/**
 * Where the usage spool lives: the config's `spool`, else in the `dataDir`, else next to the usage log, else in the
 * working directory when only the ledger is set.
 */
export function spoolDirectory(config: GatewayConfig): string | undefined {
  if (config.spool === false) return undefined;
  if (config.spool !== undefined) return config.spool;
  if (config.dataDir) return dataDirLayout(config.dataDir).spool;
  if (config.usageLog) return `${config.usageLog}.spool`;
  return config.postgresUrl ? join('.tollgate', 'spool') : undefined;
}

/**
 * The config's `export.stripe`: a Stripe meter sink, its key from the environment and its journal (events assigned,
 * ids accepted, totals carried) in the spool's directory. It needs the spool: that is what keeps an event Stripe has
 * not accepted through a crash.
 */
function stripeOptions(
  config: GatewayConfig,
  spool: string | undefined,
  env: NodeJS.ProcessEnv,
): MeteringOptions['stripe'] {
  const stripe = config.export?.stripe;
  if (!stripe) return undefined;
  if (spool === undefined)
    throw new ConfigError(
      'export.stripe needs the usage spool, which keeps events Stripe has not accepted through a crash: set dataDir, usageLog, postgresUrl or spool',
    );
  const apiKey = env[stripe.apiKeyEnv];
  if (!apiKey)
    throw new ConfigError(`export.stripe.apiKeyEnv names ${stripe.apiKeyEnv}, which is not set in the environment`);
  return {
    apiKey,
    eventName: stripe.eventName,
    customers: stripe.customers,
    directory: join(spool, 'stripe'),
    ...(stripe.baseUrl ? { baseUrl: stripe.baseUrl } : {}),
  };
}

/** Where the config sends usage records; Stripe's key is read from `env` (unset, a ConfigError). */
export function meteringOptions(config: GatewayConfig, env: NodeJS.ProcessEnv): MeteringOptions {
  const spool = spoolDirectory(config);
  const stripe = stripeOptions(config, spool, env);
  const embeddedLedger = config.postgresUrl ? undefined : embeddedLedgerLocation(config);
  return {
    ...(config.usageLog ? { usageLog: config.usageLog } : {}),
    ...(config.postgresUrl
      ? {
          postgres: {
            connectionString: config.postgresUrl,
            ...(config.postgresSchema ? { schema: config.postgresSchema } : {}),
            ...(config.postgresTable ? { table: config.postgresTable } : {}),
          },
        }
      : {}),
    ...(embeddedLedger === undefined ? {} : { embeddedLedger }),
    ...(config.usageRetention === undefined ? {} : { retentionMs: parseDuration(config.usageRetention) }),
    ...(spool === undefined ? {} : { spool }),
    ...(stripe ? { stripe } : {}),
    ...(config.countCacheChars === undefined ? {} : { countCacheChars: config.countCacheChars }),
  };
}
