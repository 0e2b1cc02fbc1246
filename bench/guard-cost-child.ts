// A child of the guard's cost benchmark: builds one chain (with or without the guard) on memory stores and drives it when asked.
import { buildChain, driveCpu, type Chain } from './guard-cost-chain.js';

let chain: Chain | undefined;

process.on(
  'message',
  (message: { id: number; type: string; withGuard?: boolean; requests?: number; offset?: number }) => {
    const reply = (value: unknown) => process.send!({ id: message.id, ok: true, value });
    const fail = (error: unknown) =>
      process.send!({
        id: message.id,
        ok: false,
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
    void (async () => {
      switch (message.type) {
        case 'build': {
          const { createMemoryStores } = await import('@tollgate/core');
          const stores = createMemoryStores();
          chain = await buildChain(stores, message.withGuard ? 3 : 0);
          // The guard's maps hold something, as during an attack: lookups take their real path.
          if (chain.guard) {
            await chain.guard.suspend('key:someone-else', 'bench');
            await chain.guard.throttle('tenant:someone-else', { scale: 0.5, durationMs: 3_600_000 });
          }
          return reply(true);
        }
        case 'drive':
          return reply(await driveCpu(chain!.app, message.requests!, message.offset!));
        case 'exit':
          await chain?.close();
          process.exit(0);
      }
    })().catch(fail);
  },
);
