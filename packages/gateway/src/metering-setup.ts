// Metering: the estimate before the call, usage after it, the sinks (usage log, Prometheus, PostgreSQL) and the
// spool before them.
import type { Request, RequestHandler, Response } from 'express';
import { jsonlSink, meter, openUsageSpool, realtimeMeter, toolMeter, usageDeliverer } from '@tollgate/metering';
import { openEmbeddedLedger, postgresSink } from '@tollgate/metering/postgres';
import { prometheusSink } from '@tollgate/metering/prometheus';
import { stripeMeterSink } from '@tollgate/metering/stripe';
import type {
  MeteredRealtimeResponse,
  MeteredToolCall,
  PricedToolCall,
  RealtimeResponseAsk,
  Queryable,
  SpoolReplay,
  UsageSink,
} from '@tollgate/metering';
import type { Tracer } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import type { Pricing, UsageRecord } from '@tollgate/core';

/** Where usage records go: the usage log, a ledger (PostgreSQL or embedded), Stripe; the spool before them. */
export interface MeteringOptions {
  /** The JSONL usage log. */
  usageLog?: string | undefined;
  /** The PostgreSQL usage ledger. */
  postgres?: { connectionString: string; schema?: string | undefined; table?: string | undefined } | undefined;
  /** The embedded ledger (PGlite) when there is no PostgreSQL one: in memory, or in a directory. */
  embeddedLedger?: string | undefined;
  /** The usage spool's directory (calls sent and records not yet stored, kept through a crash). */
  spool?: string | undefined;
  /** Stripe meter events (their journal in the spool's directory). */
  stripe?: Parameters<typeof stripeMeterSink>[0] | undefined;
  /** Characters of prompt text whose exact token counts the meter keeps (meter's `countCacheChars`). */
  countCacheChars?: number | undefined;
  /** How long the ledger (PostgreSQL or embedded) keeps raw usage rows, in ms (`usageRetention`; the sink's `retentionMs`). */
  retentionMs?: number | undefined;
}

export interface GatewayMetering {
  meter: RequestHandler[];
  /** Meters an MCP tool call at its price: its record goes to the same sinks and usage feed as the meter's. */
  chargeToolCall(req: Request, res: Response, call: PricedToolCall): MeteredToolCall;
  /** Meters a Realtime response at its worst case, then its `response.done` usage (docs/realtime.md). */
  chargeRealtimeResponse(req: Request, res: Response, ask: RealtimeResponseAsk): MeteredRealtimeResponse;
  /** Writes a record made outside a request's meter (a Batch job's lines) to the same sinks (or spool). */
  deliverRecord(record: UsageRecord): void;
  /** `GET /metrics`; undefined with metrics off. */
  metricsHandler: RequestHandler | undefined;
  /** The Prometheus registry the usage metrics are in, for the proxy's own; undefined with metrics off. */
  registry: Registry | undefined;
  /** The SQL usage ledger (PostgreSQL or the embedded one) for readers: the dashboard, the spend rebuild. */
  ledger: Queryable | undefined;
  /** The embedded ledger (PGlite), when the ledger is one. */
  embedded: ReturnType<typeof openEmbeddedLedger> | undefined;
  /** What the spool found left by a proxy that died, once written to the sinks; undefined without a spool. */
  replay(): Promise<SpoolReplay | undefined>;
  /** Resolves once the settles waiting for a provider's count of a cut answer are done (meter's `settlesDone`). */
  settled(): Promise<void>;
  /** Writes out what the sinks hold (the usage log is batched), once the settles waiting for a count are done. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * `metrics: false` leaves out the Prometheus sink (and so `/metrics`); `tenants` (the config's) are the tenants its
 * `tenant` label names, as the refusals' does; `tracer` is the meter's (see MeterOptions).
 */
export function createMetering(
  usage: MeteringOptions,
  pricing: Pricing,
  options: {
    metrics?: boolean;
    tenants?: readonly string[];
    tracer?: Tracer | false;
    onUsage?: (record: UsageRecord, req: Request) => void;
  } = {},
): GatewayMetering {
  const prometheus =
    options.metrics === false ? undefined : prometheusSink(options.tenants ? { tenants: options.tenants } : {});
  const sinks: UsageSink[] = prometheus ? [prometheus] : [];
  // The usage log is written often enough to tail; the batch still keeps writes off the request path.
  if (usage.usageLog) sinks.push(jsonlSink({ path: usage.usageLog, flushIntervalMs: 200 }));
  const retention = usage.retentionMs === undefined ? {} : { retentionMs: usage.retentionMs };
  let ledger: Queryable | undefined;
  let embedded: GatewayMetering['embedded'];
  if (usage.postgres) {
    const sink = postgresSink({ ...usage.postgres, ...retention });
    sinks.push(sink);
    ledger = sink.pool;
  } else if (usage.embeddedLedger !== undefined) {
    const location = usage.embeddedLedger === 'memory' ? undefined : usage.embeddedLedger;
    embedded = openEmbeddedLedger(location, 'The embedded usage ledger (embeddedLedger, dataDir)');
    ledger = embedded;
    sinks.push(postgresSink({ db: embedded, ...retention }));
  }
  const directory = usage.spool;
  if (usage.stripe) sinks.push(stripeMeterSink(usage.stripe));
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
  const usageMeter = meter({
    pricing,
    ...destination,
    ...(usage.countCacheChars === undefined ? {} : { countCacheChars: usage.countCacheChars }),
    ...(options.tracer === undefined ? {} : { tracer: options.tracer }),
    ...(options.onUsage ? { onUsage: options.onUsage } : {}),
  });
  return {
    chargeToolCall: toolMeter({ ...destination, ...(options.onUsage ? { onUsage: options.onUsage } : {}) }),
    chargeRealtimeResponse: realtimeMeter(pricing, {
      ...destination,
      ...(options.onUsage ? { onUsage: options.onUsage } : {}),
    }),
    deliverRecord: usageDeliverer(spool, sinks),
    meter: [usageMeter],
    metricsHandler: prometheus?.handler,
    registry: prometheus?.registry,
    ledger,
    embedded,
    replay: async () => replayed,
    settled: () => usageMeter.settlesDone(),
    flush: async () => {
      await usageMeter.settlesDone();
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
