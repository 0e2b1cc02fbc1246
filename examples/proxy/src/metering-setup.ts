// Metering from the config: the estimate before the call, usage after it, and the sinks (usage log, Prometheus, PostgreSQL).
import type { RequestHandler } from 'express';
import type { Pricing } from '@tollgate/core';
import type { ProxyConfig } from './config.js';

export interface ProxyMetering {
  middleware: RequestHandler[];
  metricsHandler?: RequestHandler;
  close(): Promise<void>;
}

/** Not wired yet: @tollgate/metering has not landed. */
export function createMetering(_config: ProxyConfig, _pricing: Pricing, _log: (line: string) => void): ProxyMetering {
  return { middleware: [], close: async () => undefined };
}
