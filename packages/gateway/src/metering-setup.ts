// Metering from the config: the estimate before the call, usage after it, the sinks (usage log, Prometheus, PostgreSQL) and the spool before them.
import { join } from 'node:path';
import type { Request, RequestHandler, Response } from 'express';
import { PGlite } from '@electric-sql/pglite';
import { jsonlSink, meter, openUsageSpool, toolMeter } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';
import { prometheusSink } from '@tollgate/metering/prometheus';
import { stripeMeterSink } from '@tollgate/metering/stripe';
import type { MeteredToolCall, PricedToolCall, Queryable, SpoolReplay, UsageSink } from '@tollgate/metering';
import type { Tracer } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import type { Pricing, UsageRecord } from '@tollgate/core';
import { ConfigError } from './config/index.js';
import type { ProxyConfig } from './config/index.js';
import { dataDirLayout, embeddedLedgerLocation } from './data-dir.js';

export interface ProxyMetering {
  middleware: RequestHandler[];
  /** Meters an MCP tool call at its price: its record goes to the same sinks and usage feed as the meter's. */
  chargeToolCall(req: Request, res: Response, call: PricedToolCall): MeteredToolCall;
  /** `GET /metrics`; undefined with metrics off. */
  metricsHandler: RequestHandler | undefined;
  /** The Prometheus registry the usage metrics are in, for the proxy's own; undefined with metrics off. */
  registry: Registry | undefined;
  /** The SQL usage ledger (PostgreSQL or the embedded one) for readers: the dashboard, the spend rebuild. */
  ledger: Queryable | undefined;
  /** The embedded ledger (PGlite), when the ledger is one. */
  embedded: PGlite | undefined;
  /** What the spool found left by a proxy that died, once written to the sinks; undefined without a spool. */
  replay(): Promise<SpoolReplay | undefined>;
  /** Writes out what the sinks hold (the usage log is batched). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Where the usage spool lives: the config's `spool`, else in the `dataDir`, else next to the usage log, else in the
 * working directory when only the ledger is set.
 */
export function spoolDirectory(config: ProxyConfig): string | undefined {
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
function stripeSinkOf(config: ProxyConfig, spool: string | undefined, env: NodeJS.ProcessEnv): UsageSink | undefined {
  const stripe = config.export?.stripe;
  if (!stripe) return undefined;
  if (spool === undefined)
    throw new ConfigError(
      'export.stripe needs the usage spool, which keeps events Stripe has not accepted through a crash: set dataDir, usageLog, postgresUrl or spool',
    );
  const apiKey = env[stripe.apiKeyEnv];
  if (!apiKey)
    throw new ConfigError(`export.stripe.apiKeyEnv names ${stripe.apiKeyEnv}, which is not set in the environment`);
  return stripeMeterSink({
    apiKey,
    eventName: stripe.eventName,
    customers: stripe.customers,
    directory: join(spool, 'stripe'),
    ...(stripe.baseUrl ? { baseUrl: stripe.baseUrl } : {}),
  });
}

/** `metrics: false` leaves out the Prometheus sink (and so `/metrics`); `tracer` is the meter's (see MeterOptions). */
export function createMetering(
  config: ProxyConfig,
  pricing: Pricing,
  options: {
    metrics?: boolean;
    tracer?: Tracer | false;
    onUsage?: (record: UsageRecord, req: Request) => void;
    env?: NodeJS.ProcessEnv;
  } = {},
): ProxyMetering {
  const prometheus = options.metrics === false ? undefined : prometheusSink();
  const sinks: UsageSink[] = prometheus ? [prometheus] : [];
  // The usage log is written often enough to tail; the batch still keeps writes off the request path.
  if (config.usageLog) sinks.push(jsonlSink({ path: config.usageLog, flushIntervalMs: 200 }));
  let ledger: Queryable | undefined;
  let embedded: PGlite | undefined;
  if (config.postgresUrl) {
    const sink = postgresSink({
      connectionString: config.postgresUrl,
      ...(config.postgresSchema ? { schema: config.postgresSchema } : {}),
      ...(config.postgresTable ? { table: config.postgresTable } : {}),
    });
    sinks.push(sink);
    ledger = sink.pool;
  } else {
    const location = embeddedLedgerLocation(config);
    if (location !== undefined) {
      embedded = new PGlite(location === 'memory' ? undefined : location);
      ledger = embedded;
      sinks.push(postgresSink({ db: embedded }));
    }
  }
  const directory = spoolDirectory(config);
  const stripe = stripeSinkOf(config, directory, options.env ?? process.env);
  if (stripe) sinks.push(stripe);
  let spool;
  try {
    spool = directory === undefined ? undefined : openUsageSpool({ directory, sinks });
  } catch (error) {
    void Promise.all(sinks.map((sink) => sink.close()));
    throw error;
  }
  // Started now: what a proxy that died left is written while the rest starts up.
  const replayed = spool?.replay();
  const destination = spool ? { spool } : { sinks };
  return {
    chargeToolCall: toolMeter({ ...destination, ...(options.onUsage ? { onUsage: options.onUsage } : {}) }),
    middleware: [
      meter({
        pricing,
        ...destination,
        ...(config.countCacheChars === undefined ? {} : { countCacheChars: config.countCacheChars }),
        ...(options.tracer === undefined ? {} : { tracer: options.tracer }),
        ...(options.onUsage ? { onUsage: options.onUsage } : {}),
      }) as RequestHandler,
    ],
    metricsHandler: prometheus?.handler as RequestHandler | undefined,
    registry: prometheus?.registry,
    ledger,
    embedded,
    replay: async () => replayed,
    flush: async () => {
      if (spool) await spool.flush();
      else await Promise.all(sinks.map((sink) => sink.flush()));
    },
    close: async () => {
      if (spool) await spool.close();
      else await Promise.all(sinks.map((sink) => sink.close()));
      await embedded?.close();
    },
  };
}
