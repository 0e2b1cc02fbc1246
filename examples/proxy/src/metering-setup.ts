// Metering from the config: the estimate before the call, usage after it, and the sinks (usage log, Prometheus, PostgreSQL).
import type { RequestHandler } from 'express';
import { jsonlSink, meter, postgresSink, prometheusSink } from '@tollgate/metering';
import type { UsageSink } from '@tollgate/metering';
import type { Pricing } from '@tollgate/core';
import type { ProxyConfig } from './config.js';

export interface ProxyMetering {
  middleware: RequestHandler[];
  metricsHandler: RequestHandler;
  /** Writes out what the sinks hold (the usage log is batched). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export function createMetering(config: ProxyConfig, pricing: Pricing): ProxyMetering {
  const prometheus = prometheusSink();
  const sinks: UsageSink[] = [prometheus];
  // The usage log is written often enough to tail; the batch still keeps writes off the request path.
  if (config.usageLog) sinks.push(jsonlSink({ path: config.usageLog, flushIntervalMs: 200 }));
  if (config.postgresUrl) {
    sinks.push(postgresSink({
      connectionString: config.postgresUrl,
      ...(config.postgresSchema ? { schema: config.postgresSchema } : {}),
      ...(config.postgresTable ? { table: config.postgresTable } : {}),
    }));
  }
  return {
    middleware: [meter({ pricing, sinks }) as RequestHandler],
    metricsHandler: prometheus.handler as RequestHandler,
    flush: async () => {
      await Promise.all(sinks.map((sink) => sink.flush()));
    },
    close: async () => {
      await Promise.all(sinks.map((sink) => sink.close()));
    },
  };
}
