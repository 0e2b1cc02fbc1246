// @tollgate/metering/prometheus: the Prometheus sink and series, and the proxy chain's own metrics, apart so that only their users need `prom-client` (an optional peer).
export { prometheusSink, metricsHandler, BoundedLabel } from './prometheus-sink.js';
export type { PrometheusSink, PrometheusSinkOptions } from './prometheus-sink.js';
export { CounterSeries, HistogramSeries, SeriesCounter, SeriesHistogram } from './prometheus-series.js';
export { createGatewayMetrics } from './observe/proxy-metrics.js';
export type { GatewayMetrics } from './observe/proxy-metrics.js';
