// OpenTelemetry for `pnpm start`: the meter's GenAI spans exported over OTLP when the standard OTEL_* variables ask for it; no SDK loaded otherwise.
import { sampleFirstProvider } from './head-sampling.js';
import { importOptionalPeer } from '../optional-peer.js';

/** What a started SDK gives back to the process that stops. */
interface Tracing {
  /** Exports the spans still queued, then stops. */
  shutdown(): Promise<void>;
}

/** The exporters `OTEL_TRACES_EXPORTER` names (comma-separated, as the spec has it). */
function namedExporters(env: NodeJS.ProcessEnv): string[] {
  return (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name.length > 0);
}

/**
 * True when the environment asks for traces: an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or an exporter named in `OTEL_TRACES_EXPORTER`, unless
 * `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
 */
export function tracingRequested(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = namedExporters(env);
  if (exporters.includes('none')) return false;
  return exporters.length > 0 || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/**
 * Nothing (no SDK loaded) when the environment asks for no traces (see tracingRequested). Otherwise
 * registers a tracer provider with a batch span processor per exporter (`otlp`, the default, over
 * `http/protobuf` or `http/json` as `OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL` says; `console`) and the
 * W3C trace-context propagator, so a caller's `traceparent` parents the spans. The SDK reads the rest
 * of the standard variables itself: endpoint, headers, timeout, `OTEL_SERVICE_NAME` (default
 * `tollgate-proxy`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`; `OTEL_TRACES_SAMPLER` (and `_ARG`) name
 * one of the standard samplers, asked before each span is made (an unknown one stops the start).
 *
 * No context manager is registered: nothing in the proxy needs spans to follow async calls, and the
 * one Node 20 offers (AsyncLocalStorage on async hooks) costs on every promise (docs/performance.md).
 */
export async function startTracing(env: NodeJS.ProcessEnv = process.env): Promise<Tracing | undefined> {
  if (!tracingRequested(env)) return undefined;
  const protocol = (
    env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ??
    env.OTEL_EXPORTER_OTLP_PROTOCOL ??
    'http/protobuf'
  ).trim();
  if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
    throw new Error(
      `OTEL_EXPORTER_OTLP_PROTOCOL=${protocol} is not supported by the proxy: use http/protobuf (the default) or http/json`,
    );
  }
  const exporterNames = namedExporters(env);
  for (const name of exporterNames) {
    if (name !== 'otlp' && name !== 'console')
      throw new Error(`OTEL_TRACES_EXPORTER=${name} is not supported by the proxy: use otlp, console or none`);
  }
  // OpenTelemetry's SDK is an optional peer: installed by those who trace, named here to those who did not.
  const feature = 'Tracing (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT)';
  const [api, core, resources, sdk] = await Promise.all([
    import('@opentelemetry/api'),
    importOptionalPeer('@opentelemetry/core', feature, () => import('@opentelemetry/core')),
    importOptionalPeer('@opentelemetry/resources', feature, () => import('@opentelemetry/resources')),
    importOptionalPeer('@opentelemetry/sdk-trace-base', feature, () => import('@opentelemetry/sdk-trace-base')),
  ]);
  const spanProcessors = [];
  if (exporterNames.length === 0 || exporterNames.includes('otlp')) {
    const { OTLPTraceExporter } =
      protocol === 'http/json'
        ? await importOptionalPeer(
            '@opentelemetry/exporter-trace-otlp-http',
            feature,
            () => import('@opentelemetry/exporter-trace-otlp-http'),
          )
        : await importOptionalPeer(
            '@opentelemetry/exporter-trace-otlp-proto',
            feature,
            () => import('@opentelemetry/exporter-trace-otlp-proto'),
          );
    spanProcessors.push(new sdk.BatchSpanProcessor(new OTLPTraceExporter()));
  }
  if (exporterNames.includes('console'))
    spanProcessors.push(new sdk.SimpleSpanProcessor(new sdk.ConsoleSpanExporter()));
  const resource = resources
    .defaultResource()
    .merge(resources.resourceFromAttributes({ 'service.name': 'tollgate-proxy' }))
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  // Sampling is decided before a span is made: an unsampled call costs one sampler call (head-sampling.ts).
  const { tracers, provider } = sampleFirstProvider(sdk, env, { resource, spanProcessors });
  api.trace.setGlobalTracerProvider(tracers);
  api.propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
  return {
    async shutdown() {
      await provider.shutdown();
      api.trace.disable();
      api.propagation.disable();
    },
  };
}
