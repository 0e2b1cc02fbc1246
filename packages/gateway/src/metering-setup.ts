// Metering from the config: the estimate before the call, usage after it, the sinks (usage log, Prometheus, PostgreSQL) and the spool before them.
import { join } from 'node:path';
import type { Request, RequestHandler } from 'express';
import { PGlite } from '@electric-sql/pglite';
import { jsonlSink, meter, openUsageSpool } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';
import { prometheusSink } from '@tollgate/metering/prometheus';
import type { Queryable, SpoolReplay, UsageSink } from '@tollgate/metering';
import type { Tracer } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import type { Pricing, UsageRecord } from '@tollgate/core';
import type { ProxyConfig } from './config.js';

export interface ProxyMetering {
  middleware: RequestHandler[];
  /** `GET /metrics`; undefined with metrics off. */
  metricsHandler: RequestHandler | undefined;
  /** The Prometheus registry the usage metrics are in, for the proxy's own; undefined with metrics off. */
  registry: Registry | undefined;
  /** The SQL usage ledger (PostgreSQL or the embedded one) for readers: the dashboard, the spend rebuild. */
  ledger: Queryable | undefined;
  /** What the spool found left by a proxy that died, once written to the sinks; undefined without a spool. */
  replay(): Promise<SpoolReplay | undefined>;
  /** Writes out what the sinks hold (the usage log is batched). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Where the usage spool lives: the config's `spool`, else next to the usage log, else in the working directory when only the ledger is set. */
export function spoolDirectory(config: ProxyConfig): string | undefined {
  if (config.spool === false) return undefined;
  if (config.spool !== undefined) return config.spool;
  if (config.usageLog) return `${config.usageLog}.spool`;
  return config.postgresUrl ? join('.tollgate', 'spool') : undefined;
}

/** `metrics: false` leaves out the Prometheus sink (and so `/metrics`); `tracer` is the meter's (see MeterOptions). */
export function createMetering(
  config: ProxyConfig,
  pricing: Pricing,
  options: { metrics?: boolean; tracer?: Tracer | false; onUsage?: (record: UsageRecord, req: Request) => void } = {},
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
  } else if (config.embeddedLedger) {
    embedded = new PGlite(typeof config.embeddedLedger === 'string' ? config.embeddedLedger : undefined);
    ledger = embedded;
    sinks.push(postgresSink({ db: embedded }));
  }
  const directory = spoolDirectory(config);
  let spool;
  try {
    spool = directory === undefined ? undefined : openUsageSpool({ directory, sinks });
  } catch (error) {
    void Promise.all(sinks.map((sink) => sink.close()));
    throw error;
  }
  // Started now: what a proxy that died left is written while the rest starts up.
  const replayed = spool?.replay();
  return {
    middleware: [
      meter({
        pricing,
        ...(spool ? { spool } : { sinks }),
        ...(config.countCacheChars === undefined ? {} : { countCacheChars: config.countCacheChars }),
        ...(options.tracer === undefined ? {} : { tracer: options.tracer }),
        ...(options.onUsage ? { onUsage: options.onUsage } : {}),
      }) as RequestHandler,
    ],
    metricsHandler: prometheus?.handler as RequestHandler | undefined,
    registry: prometheus?.registry,
    ledger,
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
