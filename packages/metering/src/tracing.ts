// @tollgate/metering/tracing: OpenTelemetry for a proxy process (the SDK started from the OTEL_* variables, sampling
// decided before each span), apart so that only its users load the SDK packages (optional peers).
export { startTracing } from './observe/tracing.js';
