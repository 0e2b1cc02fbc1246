// Sampling decided before a span is made: an unsampled call costs one sampler call, not the SDK's span machinery.
import { randomFillSync } from 'node:crypto';
import { context as contextApi, ROOT_CONTEXT, SpanKind, trace, TraceFlags } from '@opentelemetry/api';
import type { Context, Span, SpanOptions, Tracer, TracerOptions, TracerProvider } from '@opentelemetry/api';
import type * as Sdk from '@opentelemetry/sdk-trace-base';

type Sampler = Sdk.Sampler;
type SamplingResult = Sdk.SamplingResult;

/** SamplingDecision.NOT_RECORD (a const enum of the SDK's). */
const NOT_RECORD = 0;

/**
 * The standard samplers `OTEL_TRACES_SAMPLER` names (the OpenTelemetry specification's values, default
 * `parentbased_always_on`), made from the SDK's own classes; `OTEL_TRACES_SAMPLER_ARG` is the ratio (default 1).
 * A value the specification does not list, or a ratio outside 0..1, is an error: the SDK would log and sample all.
 */
export function samplerFromEnv(env: NodeJS.ProcessEnv, sdk: typeof Sdk): Sampler {
  const name = (env.OTEL_TRACES_SAMPLER ?? '').trim().toLowerCase() || 'parentbased_always_on';
  const ratio = () => {
    const arg = (env.OTEL_TRACES_SAMPLER_ARG ?? '').trim();
    const value = arg === '' ? 1 : Number(arg);
    if (!(value >= 0 && value <= 1))
      throw new Error(`OTEL_TRACES_SAMPLER_ARG=${arg} is not a ratio: give a number from 0 to 1`);
    return value;
  };
  const parentBased = (root: Sampler) => new sdk.ParentBasedSampler({ root });
  switch (name) {
    case 'always_on':
      return new sdk.AlwaysOnSampler();
    case 'always_off':
      return new sdk.AlwaysOffSampler();
    case 'traceidratio':
      return new sdk.TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_on':
      return parentBased(new sdk.AlwaysOnSampler());
    case 'parentbased_always_off':
      return parentBased(new sdk.AlwaysOffSampler());
    case 'parentbased_traceidratio':
      return parentBased(new sdk.TraceIdRatioBasedSampler(ratio()));
    default:
      throw new Error(
        `OTEL_TRACES_SAMPLER=${name} is not supported by the proxy: use always_on, always_off, traceidratio, ` +
          'parentbased_always_on, parentbased_always_off or parentbased_traceidratio',
      );
  }
}

/** Random ids as hex, cut from a string of 8 KiB of random hex made 4 KiB of random bytes at a time. */
const POOL_BYTES = 4096;
const poolBytes = Buffer.alloc(POOL_BYTES);
let poolHex = '';
let poolAt = 0;
function randomHex(bytes: number): string {
  const chars = bytes * 2;
  if (poolAt + chars > poolHex.length) {
    randomFillSync(poolBytes);
    poolHex = poolBytes.toString('hex');
    poolAt = 0;
  }
  const hex = poolHex.slice(poolAt, poolAt + chars);
  poolAt += chars;
  return hex;
}

/**
 * The decision a SampleFirstTracer hands to the SDK's `startSpan` it is calling: the SDK asks its sampler inside that
 * call, synchronously, so the decision is read there and cleared (no context made per span to carry it).
 */
let handedOver: SamplingResult | undefined;

/** The provider's sampler: the decision made before the span when there is one, else `sampler`'s own. */
function decidedSampler(sampler: Sampler): Sampler {
  return {
    shouldSample(context, traceId, spanName, spanKind, attributes, links) {
      const decided = handedOver;
      handedOver = undefined;
      return decided ?? sampler.shouldSample(context, traceId, spanName, spanKind, attributes, links);
    },
    toString: () => `DecidedBefore{${sampler.toString()}}`,
  };
}

/**
 * A tracer that asks `sampler` first. Sampled, the span is the SDK's (its provider's sampler, decidedSampler, takes
 * the decision as made); unsampled, it is a non-recording span made here: the parent's trace id (so a context
 * propagated from it says "not sampled" downstream, as the SDK's would) or none at all for a root. The sampler sees
 * what the SDK's would (the parent context, a random trace id for a root, the name, kind, attributes and links), so
 * the standard samplers keep their meaning; only the trace id a root was decided on is not the span's.
 */
class SampleFirstTracer implements Tracer {
  readonly #inner: Tracer;
  readonly #sampler: Sampler;
  readonly #roots: RootDecisions | undefined;

  constructor(inner: Tracer, sampler: Sampler, roots: RootDecisions | undefined) {
    this.#inner = inner;
    this.#sampler = sampler;
    this.#roots = roots;
  }

  startSpan(name: string, options: SpanOptions = {}, context: Context = contextApi.active()): Span {
    const parentContext = options.root ? trace.deleteSpan(context) : context;
    const parent = trace.getSpanContext(parentContext);
    const child = parent !== undefined && trace.isSpanContextValid(parent);
    const result =
      !child && this.#roots
        ? this.#roots.next()
        : this.#sampler.shouldSample(
            parentContext,
            child ? parent.traceId : randomHex(16),
            name,
            options.kind ?? SpanKind.INTERNAL,
            options.attributes ?? {},
            options.links ?? [],
          );
    if (result.decision === NOT_RECORD) {
      if (!child) return UNSAMPLED_ROOT;
      return trace.wrapSpanContext({
        traceId: parent.traceId,
        spanId: randomHex(8),
        traceFlags: TraceFlags.NONE,
        ...(parent.traceState ? { traceState: parent.traceState } : {}),
      });
    }
    handedOver = result;
    try {
      return this.#inner.startSpan(name, options, parentContext);
    } finally {
      handedOver = undefined;
    }
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: unknown[]): ReturnType<F> {
    const fn = rest[rest.length - 1] as F;
    const options = (rest.length > 1 ? rest[0] : undefined) as SpanOptions | undefined;
    const context = (rest.length > 2 ? rest[1] : undefined) as Context | undefined;
    const parent = context ?? contextApi.active();
    const span = this.startSpan(name, options, parent);
    return contextApi.with(trace.setSpan(parent, span), () => fn(span)) as ReturnType<F>;
  }
}

/**
 * The sampler's decisions for roots, made ahead, 256 at a time: a standard sampler decides a root by its trace id alone
 * (not its name, kind, attributes or links), so a batch of random trace ids decided in one warm loop is each root's
 * decision as the sampler makes it, and an unsampled call costs an array read instead of an id and a sampler call.
 */
class RootDecisions {
  readonly #sampler: Sampler;
  readonly #decided: SamplingResult[] = [];
  #at = 0;

  constructor(sampler: Sampler) {
    this.#sampler = sampler;
  }

  next(): SamplingResult {
    if (this.#at === this.#decided.length) {
      for (let i = 0; i < ROOTS_AHEAD; i++)
        this.#decided[i] = this.#sampler.shouldSample(ROOT_CONTEXT, randomHex(16), '', SpanKind.INTERNAL, {}, []);
      this.#at = 0;
    }
    return this.#decided[this.#at++]!;
  }
}

const ROOTS_AHEAD = 256;

/** The span of an unsampled root: no trace at all, so one shared span does for every call. */
const UNSAMPLED_ROOT = trace.wrapSpanContext({
  traceId: '00000000000000000000000000000000',
  spanId: '0000000000000000',
  traceFlags: TraceFlags.NONE,
});

/**
 * `provider`'s tracers, deciding sampling first with `sampler` (`standardSampler`: one of samplerFromEnv's, whose root
 * decisions may be made ahead). Make `provider` with `sampler: decidedSampler(sampler)`
 * (sampleFirstProvider does both).
 */
function sampleFirstTracers(
  provider: TracerProvider,
  sampler: Sampler,
  options: { standardSampler?: boolean } = {},
): TracerProvider {
  // Only a standard sampler (samplerFromEnv's) is known to decide a root by its trace id alone.
  const roots = options.standardSampler ? new RootDecisions(sampler) : undefined;
  return {
    getTracer(name: string, version?: string, tracerOptions?: TracerOptions) {
      return new SampleFirstTracer(provider.getTracer(name, version, tracerOptions), sampler, roots);
    },
  };
}

/**
 * A BasicTracerProvider whose sampler is `OTEL_TRACES_SAMPLER`'s (samplerFromEnv), decided before each span is made
 * (sampleFirstTracers): what `pnpm start` registers, and what the observability bench measures.
 */
export function sampleFirstProvider(
  sdk: typeof Sdk,
  env: NodeJS.ProcessEnv,
  config: Omit<Sdk.TracerConfig, 'sampler'>,
): { tracers: TracerProvider; provider: Sdk.BasicTracerProvider } {
  const sampler = samplerFromEnv(env, sdk);
  const provider = new sdk.BasicTracerProvider({ ...config, sampler: decidedSampler(sampler) });
  return { tracers: sampleFirstTracers(provider, sampler, { standardSampler: true }), provider };
}
