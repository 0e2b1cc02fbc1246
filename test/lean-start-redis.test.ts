// A gateway on Redis stores loads Redis's client with them, and only then (lean-start.test.ts: a memory config never
// does); the start refuses a Redis that does not answer, so no Redis server is needed to see it.
import { describe, expect, it } from '@jest/globals';
import { filesOfPackage, ON_DEMAND, packageOf, REDIS_STORES_PACKAGE, runGateway } from './helpers/loaded-modules.js';

describe('a gateway on Redis stores', () => {
  it("loads Redis's client and the stores with them, and still refuses a Redis that does not answer", async () => {
    // Port 1: nothing listens, the connection is refused at once.
    const config = { upstreams: { mock: { kind: 'mock' } }, log: { level: 'silent' } };
    const run = await runGateway(config, { REDIS_URL: 'redis://127.0.0.1:1' }, async () => {
      throw new Error('the gateway listened without its Redis');
    });
    expect(run.code).toBe(1);
    expect(run.output).toContain(
      'tollgate proxy: cannot open the stores: Redis does not answer at redis://127.0.0.1:1',
    );
    const packages = new Set([...run.modules].map(packageOf));
    expect(ON_DEMAND.filter((name) => packages.has(name))).toEqual(['@redis/client', 'cluster-key-slot']);
    expect(filesOfPackage(run.modules, REDIS_STORES_PACKAGE)).toContain('redis-stores.ts');
  }, 120_000);
});
