// The example proxy: the gateway served from the environment (TOLLGATE_CONFIG, PORT, REDIS_URL, OTEL_*), as
// `pnpm start` runs it; with no TOLLGATE_CONFIG, the embedded demo default.
import { serveGateway } from '@tollgate/gateway';

await serveGateway(process.env);
