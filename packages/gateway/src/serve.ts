// serveGateway: the gateway as a server process (the `tollgate-gateway` bin, the example proxy's main).
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Stats } from 'node:fs';
import { forgetKeyFileReader, noteKeyFileTaken } from '@tollgate/auth';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { TollgateStores } from '@tollgate/core';
import { preloadTokenizers } from '@tollgate/providers';
import { startTracing } from '@tollgate/metering/tracing';
import { createGatewayApp } from './app.js';
import { ConfigError, parseConfig } from './config/index.js';
import type { GatewayConfig } from './config/index.js';
import { createDemoConfig, demoBanner } from './config/demo.js';
import type { DemoKey } from './config/demo.js';
import { servingInWords, spoolDirectory } from './config/index.js';
import { checkBeforeStart, parsePort } from './config/index.js';
import { createStores } from './stores.js';
import { shutdownTimes, stopOnSignals } from './shutdown.js';
import { applyServerV8Flags } from './v8-flags.js';

const DEFAULT_PORT = 8787;

interface StartPlan {
  config: GatewayConfig;
  configPath?: string;
  port: number;
  redisUrl?: string;
  demoKeys: DemoKey[];
}

function planStart(env: NodeJS.ProcessEnv): StartPlan {
  let config: GatewayConfig;
  let demoKeys: DemoKey[] = [];
  const path = env.TOLLGATE_CONFIG;
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read TOLLGATE_CONFIG=${path}: ${(error as Error).message}`);
    }
    config = parseConfig(text, `TOLLGATE_CONFIG (${path})`, { env });
  } else {
    ({ config, keys: demoKeys } = createDemoConfig(env.TOLLGATE_DATA_DIR || undefined));
  }
  // TOLLGATE_DATA_DIR (the bin's --data-dir) names the data directory, over the config's `dataDir`.
  if (env.TOLLGATE_DATA_DIR) config = { ...config, dataDir: env.TOLLGATE_DATA_DIR };
  let port = config.port ?? DEFAULT_PORT;
  if (env.PORT !== undefined && env.PORT !== '') {
    port = parsePort(env.PORT);
  }
  const redisUrl = env.REDIS_URL || config.redisUrl;
  return { config, port, demoKeys, ...(redisUrl ? { redisUrl } : {}), ...(path ? { configPath: path } : {}) };
}

/**
 * Runs the gateway as a server, the way `tollgate-gateway` and the example proxy's `main` do: the config file
 * `env.TOLLGATE_CONFIG` names (the embedded demo without one), on `env.PORT` (else the config's `port`, else 8787),
 * on Redis when `env.REDIS_URL` or the config's `redisUrl` says so; listens once the encodings, the usage spool and
 * budget spend are ready, and closes cleanly on SIGTERM or SIGINT. A config or a start that fails exits with 1.
 */
export async function serveGateway(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  applyServerV8Flags();
  let plan: StartPlan;
  try {
    plan = planStart(env);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  }
  const { config, configPath } = plan;
  const { tracing, stores, app } = await openGateway(plan, env);
  await readyToServe(app);
  const server = listenOn(app, plan, env);
  const unwatch = configPath ? watchConfigKeys(configPath, config, app) : undefined;

  stopOnSignals(
    server,
    {
      drain: () => app.drain(),
      // The spans of the last calls are exported after the calls ended, before the process does.
      closeAll: () =>
        app
          .close()
          .then(() => stores.close())
          .then(() => tracing?.shutdown()),
      unwatch,
    },
    shutdownTimes(config),
  );
}

/** The config checked, tracing started, the stores opened and the app made on them; any of these failing exits 1. */
async function openGateway(plan: StartPlan, env: NodeJS.ProcessEnv) {
  const { config, redisUrl } = plan;
  try {
    await checkBeforeStart(config);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  }

  // Before anything makes spans: the SDK is loaded only when the OTEL_* variables ask for traces.
  let tracing: Awaited<ReturnType<typeof startTracing>>;
  try {
    tracing = await startTracing(env);
  } catch (error) {
    console.error(
      `tollgate proxy: cannot start OpenTelemetry: ${error instanceof Error ? error.message : String(error)}`,
    );
    process.exit(1);
  }

  let stores: TollgateStores;
  try {
    // Budget settles that cannot reach Redis at shutdown wait next to the usage spool (or in .tollgate/settles).
    const settleSpool = join(spoolDirectory(config) ?? '.tollgate', 'settles');
    stores = await createStores({
      redisUrl,
      redisCluster: config.redis?.cluster,
      redisPrefix: config.redisPrefix,
      settleSpool,
    });
  } catch (error) {
    console.error(`tollgate proxy: cannot open the stores: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }

  let app: ReturnType<typeof createGatewayApp>;
  try {
    app = createGatewayApp(config, { stores, env });
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    await stores.close();
    process.exit(1);
  }
  return { tracing, stores, app };
}

/** Waits for what must be in before traffic: the current encoding, the usage spool's replay and budget spend. */
async function readyToServe(app: ReturnType<typeof createGatewayApp>): Promise<void> {
  // Until the encoding of current models is loaded, estimates fall back to a byte bound several times too high and
  // refuse requests budgets could pay for: take traffic only once it is in (about half a second). Older models'
  // encoding (cl100k_base: GPT-4, GPT-3.5) loads when one is first asked for, 14 MiB left unused until then.
  await preloadTokenizers(['o200k_base']);
  // What a proxy that died left in the usage spool is written before new traffic.
  const replay = await app.replayUsage();
  if (replay && replay.processes > 0) {
    console.log(
      `tollgate proxy: the usage spool held what ${replay.processes} stopped process(es) left: ${replay.records} record(s) written again, ${replay.recovered} call(s) sent but never answered recorded at their reservation's bound`,
    );
  }
  // Budget spend Redis lost is back before the first request is admitted.
  try {
    await app.spendReady();
  } catch (error) {
    // An optional peer the config needs and the install lacks (ERR_TG_PROXY_MISSING_PEER) stops the start, named.
    console.error(error instanceof Error ? error.message : String(error));
    await app.close();
    process.exit(1);
  }
}

/**
 * The server, listening on the plan's port: not app.listen(port, callback), as Express 5 calls that callback on an
 * error too, so "listening" would be printed before EADDRINUSE.
 */
function listenOn(app: ReturnType<typeof createGatewayApp>, plan: StartPlan, env: NodeJS.ProcessEnv): Server {
  const { config, configPath, port, demoKeys } = plan;
  const server: Server = createServer(app);
  app.attachResponsesSocket(server);
  server.listen(port);
  server.once('listening', () => {
    const address = server.address();
    const actualPort = typeof address === 'object' && address ? address.port : port;
    // What it counts on, keeps usage in and sends calls to: the demo's choices read as the warnings they are.
    const listening = `tollgate proxy listening on http://localhost:${actualPort} (${servingInWords(config, env, !configPath)})`;
    // One write, so whoever waits for the "listening" line has the demo keys too.
    console.log(configPath ? listening : `${demoBanner(demoKeys, actualPort, config.dataDir)}\n${listening}`);
  });
  server.on('error', (error) => {
    console.error(`tollgate proxy: cannot listen on port ${port}: ${error.message}`);
    process.exit(1);
  });
  return server;
}

/**
 * Keys added, rotated or revoked in the config file (`tollgate keys ... --config`) count while the gateway runs, within
 * a second (other changes need a restart); a file that does not validate still revokes (reloadConfigFile). What was
 * taken is noted beside the file, for `tollgate keys` to say whether this process took its change. Polling survives
 * the command's atomic rename.
 */
function watchConfigKeys(path: string, started: GatewayConfig, app: ReturnType<typeof createGatewayApp>): () => void {
  const withoutKeys = (config: unknown) => JSON.stringify({ ...(config as object), keys: undefined });
  const take = (text: string) => {
    const reload = app.reloadConfigFile(text, path);
    if (reload.status === 'unreadable') return;
    noteKeyFileTaken(path, text, reload.status === 'valid' ? 'whole' : 'removals');
    if (!reload.config) return;
    console.log(`tollgate proxy: reloaded ${reload.keys.length} keys from ${path}`);
    if (withoutKeys(reload.config) !== withoutKeys(started))
      console.log('tollgate proxy: the config changed beyond "keys"; restart to apply that');
  };
  const read = () => {
    try {
      return readFileSync(path, 'utf8');
    } catch (error) {
      console.error(`tollgate proxy: cannot read ${path}; the keys read before stay: ${(error as Error).message}`);
      return undefined;
    }
  };
  // The file as the start read it: known to /healthz and the metric, and to `tollgate keys` as read by this process.
  const first = read();
  if (first !== undefined) {
    app.reloadConfigFile(first, path);
    noteKeyFileTaken(path, first, 'whole');
  }
  const onChange = (current: Stats, previous: Stats) => {
    if (current.mtimeMs === previous.mtimeMs && current.size === previous.size) return;
    const text = read();
    if (text !== undefined) take(text);
  };
  watchFile(path, { interval: 1000, persistent: false }, onChange);
  return () => {
    unwatchFile(path, onChange);
    forgetKeyFileReader(path);
  };
}
