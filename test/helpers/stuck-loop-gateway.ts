// A gateway process whose event loop a test can make stuck: on SIGUSR2 it busy-waits STALL_MS (a synchronous loop, as
// a runaway computation would), so that /livez is seen failing from outside.
import { createGatewayApp } from '../../packages/gateway/src/app.js';

const stallMs = Number(process.env.STALL_MS ?? 7000);
const app = createGatewayApp({ upstreams: { mock: { kind: 'mock' } } }, { log: () => undefined });
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(
    `stuck-loop gateway listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
  );
});
process.on('SIGUSR2', () => {
  console.log('stalling');
  const until = Date.now() + stallMs;
  while (Date.now() < until) {
    // Nothing else runs: no timer, no socket, no request.
  }
  console.log('stall over');
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void app.close().finally(() => process.exit(0));
});
