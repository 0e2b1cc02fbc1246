// A real Redis Cluster for tests: three masters of our own on free local ports (or REDIS_CLUSTER_URLS), stopped after.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import calculateSlot from 'cluster-key-slot';
import { createClient } from 'redis';

const SLOTS = 16_384;
/** A cluster node talks to the others on its port + 10000 (the cluster bus). */
const BUS_OFFSET = 10_000;

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port whose cluster bus port is free too. */
async function freeNodePort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    if (taken.has(port) || taken.has(port + BUS_OFFSET)) continue;
    if ((await portIsFree(port)) && (await portIsFree(port + BUS_OFFSET))) return port;
  }
}

async function withClient<T>(url: string, use: (client: ReturnType<typeof createClient>) => Promise<T>): Promise<T> {
  const client = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 2000 } });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.close();
  }
}

/** One master as CLUSTER SLOTS lists it: the slot ranges it holds. */
interface Master {
  url: string;
  ranges: [number, number][];
}

/** What a test needs of a cluster, whether it started it or was given one. */
export interface TestCluster {
  /** `redis://127.0.0.1:<port>` of every master. */
  readonly urls: string[];
  /** The master that holds `key`'s hash slot (by its hash tag, when it has one). */
  masterOf(key: string): Promise<string>;
  /** `CLUSTER KEYSLOT key`, as the cluster computes it. */
  keySlot(key: string): Promise<number>;
  /** Every key under `prefix`, per master URL (SCAN on each master). */
  keysByMaster(prefix: string): Promise<Map<string, string[]>>;
  /** Deletes every key under `prefix` on every master (never a flush: a given cluster may be shared). */
  deleteKeys(prefix: string): Promise<void>;
  /** Stops the nodes this helper started (a given cluster is left running). */
  stop(): Promise<void>;
}

async function mastersOf(url: string): Promise<Master[]> {
  const reply = (await withClient(url, (client) => client.sendCommand(['CLUSTER', 'SLOTS']))) as [
    number,
    number,
    [string, number],
  ][];
  const byUrl = new Map<string, Master>();
  for (const [from, to, [host, port]] of reply) {
    const masterUrl = `redis://${host}:${port}`;
    const master = byUrl.get(masterUrl) ?? { url: masterUrl, ranges: [] };
    master.ranges.push([from, to]);
    byUrl.set(masterUrl, master);
  }
  return [...byUrl.values()];
}

function clusterOn(urls: string[], stop: () => Promise<void>): TestCluster {
  let masters: Promise<Master[]> | undefined;
  const known = () => (masters ??= mastersOf(urls[0]!));
  return {
    urls,
    async masterOf(key) {
      const slot = calculateSlot(key);
      const master = (await known()).find((m) => m.ranges.some(([from, to]) => slot >= from && slot <= to));
      if (!master) throw new Error(`no master holds slot ${slot}`);
      return master.url;
    },
    keySlot: (key) =>
      withClient(urls[0]!, async (client) => Number(await client.sendCommand(['CLUSTER', 'KEYSLOT', key]))),
    async keysByMaster(prefix) {
      const found = new Map<string, string[]>();
      for (const master of await known()) {
        const keys: string[] = [];
        await withClient(master.url, async (client) => {
          for await (const batch of client.scanIterator({
            MATCH: `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`,
            COUNT: 500,
          }))
            keys.push(...batch);
        });
        found.set(master.url, keys);
      }
      return found;
    },
    async deleteKeys(prefix) {
      for (const [url, keys] of await this.keysByMaster(prefix)) {
        // One key at a time: a multi-key UNLINK would cross slots.
        if (keys.length > 0)
          await withClient(url, async (client) => void (await Promise.all(keys.map((key) => client.unlink(key)))));
      }
    },
    stop,
  };
}

/** Nodes still running when the test process exits are killed with it. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

async function startNode(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      `nodes-${port}.conf`,
      '--cluster-node-timeout',
      '5000',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(child);
  child.once('exit', () => running.delete(child));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        child.stdout?.off('data', onData);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`redis-server on ${port} exited with ${code}:\n${output}`)));
  });
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

/** Polls until every node says `cluster_state:ok` and knows every master. */
async function waitUntilReady(urls: string[], withinMs = 30_000): Promise<void> {
  const until = Date.now() + withinMs;
  for (;;) {
    const ready = await Promise.all(
      urls.map((url) =>
        withClient(url, async (client) => {
          const info = String(await client.sendCommand(['CLUSTER', 'INFO']));
          return info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${urls.length}`);
        }).catch(() => false),
      ),
    );
    if (ready.every(Boolean)) return;
    if (Date.now() > until)
      throw new Error(`the test cluster on ${urls.join(', ')} did not reach cluster_state:ok in ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * A cluster of `masters` masters without replicas, from the same redis-server binary as the
 * shared Redis: each node gets a slice of the slots (CLUSTER ADDSLOTS) and its own config epoch,
 * the first meets the others, and it is ready once every node says `cluster_state:ok`.
 */
export async function startRedisCluster(masters = 3): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-cluster-'));
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let i = 0; i < masters; i++) {
    const port = await freeNodePort(taken);
    taken.add(port).add(port + BUS_OFFSET);
    ports.push(port);
  }
  const children = await Promise.all(ports.map((port) => startNode(port, dir)));
  const stop = async () => {
    await Promise.all(
      children.map((child) => {
        if (child.exitCode !== null || child.signalCode !== null) return undefined;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        return exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  const urls = ports.map((port) => `redis://127.0.0.1:${port}`);
  try {
    await Promise.all(
      urls.map((url, i) =>
        withClient(url, async (client) => {
          const from = Math.floor((SLOTS * i) / masters);
          const to = Math.floor((SLOTS * (i + 1)) / masters);
          await client.sendCommand([
            'CLUSTER',
            'ADDSLOTS',
            ...Array.from({ length: to - from }, (_, k) => String(from + k)),
          ]);
          await client.sendCommand(['CLUSTER', 'SET-CONFIG-EPOCH', String(i + 1)]);
        }),
      ),
    );
    await withClient(urls[0]!, async (client) => {
      for (const port of ports.slice(1)) await client.sendCommand(['CLUSTER', 'MEET', '127.0.0.1', String(port)]);
    });
    await waitUntilReady(urls);
  } catch (error) {
    await stop();
    throw error;
  }
  return clusterOn(urls, stop);
}

/**
 * The cluster of REDIS_CLUSTER_URLS (comma-separated node URLs, e.g. one CI started) when set,
 * otherwise a cluster of our own started now: `pnpm test` needs nothing running but the shared Redis.
 */
export async function testCluster(): Promise<TestCluster> {
  const given = process.env.REDIS_CLUSTER_URLS?.split(',')
    .map((url) => url.trim())
    .filter(Boolean);
  if (given && given.length > 0) {
    const masters = await mastersOf(given[0]!);
    return clusterOn(
      masters.map((m) => m.url),
      async () => undefined,
    );
  }
  return startRedisCluster();
}
