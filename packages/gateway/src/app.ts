// createGateway: the whole chain, in its one order, as an Express router built from a validated config; createGatewayApp:
// the same as an Express app of its own (what the example proxy and `tollgate-gateway` serve).
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import express from 'express';
import type { Express, Request, Response, Router } from 'express';
import { keyRecordsFromConfig } from '@tollgate/auth';
import { ApiError, renderApiError } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import type { SpoolReplay } from '@tollgate/metering';
import { CONFIG_FILE_ACTOR } from './audit-setup.js';
import {
  ConfigError,
  keysFromChangedConfig,
  reloadedKeyProblems,
  servableConfig,
  toConfigKey,
} from './config/index.js';
import type { ConfigFileReload, KeyConfig, GatewayConfig } from './config/index.js';
import { presetExpressFields } from './exchange.js';
import type { ExpressHandle } from './exchange.js';
import type { GatewayDeps } from './gateway-parts.js';
import { mountChain } from './chain-mount.js';
import { configDeployment } from './config-parts.js';

export type { GatewayDeps } from './gateway-parts.js';

interface GatewayControls {
  /** The stores the app uses. */
  readonly stores: TollgateStores;
  /**
   * Replaces the config's keys while running (new, rotated, revoked or expired keys count on the
   * next request). Other config changes need a restart. Keys are checked as the start checks the config's: a key
   * naming a tenant, tier or MCP server the running config does not know, or an id or hash used twice, throws a
   * ConfigError listing every problem, and the keys in force stay.
   */
  reloadKeys(keys: readonly KeyConfig[]): void;
  /**
   * Takes the changed text of the config file at `path` (`tollgate-gateway` re-reads it every second): its keys when
   * the whole file validates (other changes need a restart); when it does not, only what it takes away (revocations,
   * expiries, deletions), said at error level, on /healthz (degraded) and by `tollgate_config_file_valid`.
   */
  reloadConfigFile(text: string, path: string): ConfigFileReload;
  /** Writes out what the usage sinks hold (the usage log and the ledger are batched). */
  flushUsage(): Promise<void>;
  /**
   * Resolves once the usage spool (on with a usage log or a ledger) wrote to the sinks what a proxy
   * that died left in it; started when the app is made. `pnpm start` listens only after it.
   */
  replayUsage(): Promise<SpoolReplay | undefined>;
  /**
   * Resolves once budget spend Redis lost (a restart without persistence) was rebuilt from the
   * SQL usage ledger (at once without Redis or a ledger), and the guard's suspensions, throttles
   * and blocks in force are loaded, and @tollgate/mcp with `mcpServers` (rejects, naming the package, when it is not
   * installed). `pnpm start` listens only after it.
   */
  spendReady(): Promise<void>;
  /**
   * Tells the gateway the process is stopping: `/readyz` answers 503 from now on (everything else is served as
   * before), so a load balancer takes this replica out while it drains. `tollgate-gateway` calls it on SIGTERM.
   */
  drain(): void;
  /**
   * Ends the upstream calls still running (after a short grace), then flushes and closes the sinks
   * and releases what the app owns (stores it created, upstream connections, timers).
   */
  close(): Promise<void>;
}

/**
 * The gateway as an Express router: `app.use(createGateway(config))` serves the provider routes, `/healthz`,
 * `/metrics`, `/v1/models`, the admin routes and the dashboard, with the whole chain in its one order. Its routes
 * match case-sensitively and strictly (`/v1/messages/` is not `/v1/messages`). The host app's `trust proxy` setting
 * says which client address the guard sees (createGatewayApp sets it from the config's `trustProxy`).
 */
export interface Gateway extends Router, GatewayControls {
  /**
   * What every exchange gets first (the context, security headers, the end's observer).
   * The router does it itself; an app that calls it before Express swaps the prototypes of `req` and `res` saves
   * V8 a new hidden class per field (createGatewayApp does).
   */
  prepare(req: IncomingMessage, res: ServerResponse): void;
  /**
   * Serves the WebSocket modes on `server`'s upgrades: the Responses API's on `/v1/responses`
   * (docs/responses-websocket.md) and the Realtime API's on `/v1/realtime` (docs/realtime.md). `app` is the request
   * listener the gateway is mounted in, which each `response.create` is sent through.
   */
  attachResponsesSocket(server: Server, app: RequestListener): void;
}

/** The gateway as an Express app of its own. */
export interface GatewayApp extends Express, GatewayControls {
  /** Serves the WebSocket modes (`/v1/responses`, `/v1/realtime`) on `server`'s upgrades (the server must run this app). */
  attachResponsesSocket(server: Server): void;
}

/**
 * Throws a ConfigError listing every problem when `config` would not start `tollgate-gateway --config` (its fields,
 * names across them, each upstream's `apiKeyEnv` set in `deps.env`).
 */
export function createGateway(input: GatewayConfig, deps: GatewayDeps = {}): Gateway {
  // The config's parts as tollgate()'s (partsFromConfig), mounted as tollgate() mounts them, with the operator's routes.
  const { config, built: parts, parts: chainParts } = configDeployment(input, deps);
  // One spelling per route: under Express's defaults (any case, optional trailing slash) `/V1/CHAT/COMPLETIONS`
  // or `/v1/messages/` were the same route under other names. Every variant is a 404 (or 405).
  const router = express.Router({ caseSensitive: true, strict: true }) as unknown as Gateway;
  const { keys, held, mcp, sockets, prepare, close } = mountChain(router, parts, chainParts);
  router.prepare = prepare;
  const { metering, configFiles } = parts;
  Object.defineProperty(router, 'stores', { value: parts.stores, enumerable: true });
  router.flushUsage = () => metering.flush();
  router.replayUsage = () => metering.replay();
  router.spendReady = () =>
    Promise.all([parts.spend?.ready, parts.guarding.ready, parts.ledgerServed, mcp?.ready, parts.tenants.ready()]).then(
      () => undefined,
    );
  router.drain = () => {
    held.draining = true;
    sockets.drain();
  };
  router.attachResponsesSocket = (server, app) => sockets.attach(server, app);
  router.reloadKeys = (next) => {
    // The keys as the start checks them, on the config this gateway serves; refused whole, the keys in force stay.
    const problems = reloadedKeyProblems(config, next);
    if (problems.length > 0) throw new ConfigError(problems);
    keys.replaceConfigKeys(next);
    held.configKeys = keyRecordsFromConfig(next);
  };
  router.reloadConfigFile = (text, path) => {
    const running = held.configKeys;
    let reload = keysFromChangedConfig(text, held.configKeys, config);
    try {
      if (reload.status !== 'unreadable') router.reloadKeys(reload.keys);
    } catch (error) {
      // Not expected (the keys were checked above); if it happens, the keys in force stay and the file is invalid.
      if (!(error instanceof ConfigError)) throw error;
      reload = { status: 'invalid', problems: error.issues, keys: held.configKeys.map(toConfigKey) };
    }
    configFiles.note({ path, status: reload.status, problems: reload.problems });
    // A change of the keys in force is recorded; a read that changes none (the start's, a touched file) is not.
    if (JSON.stringify(held.configKeys) !== JSON.stringify(running))
      void parts.audit.recordChange({
        ...CONFIG_FILE_ACTOR,
        action: 'config.reload',
        target: `file:${path}`,
        source: path,
        outcome: 'done',
        before: { keys: running.map((key) => key.id) },
        after: { status: reload.status, problems: reload.problems, keys: held.configKeys.map((key) => key.id) },
      });
    return reload;
  };
  router.close = close;
  return router;
}

/**
 * The gateway as an Express app of its own: createGateway's router behind the app's settings (no `x-powered-by`, the
 * config's `trustProxy`), each exchange prepared before Express swaps the prototypes of `req` and `res`.
 */
export function createGatewayApp(input: GatewayConfig, deps: GatewayDeps = {}): GatewayApp {
  const config = servableConfig(input, deps.env ?? process.env);
  const gateway = createGateway(config, deps);
  const app = express() as unknown as GatewayApp;
  app.disable('x-powered-by');
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  if (config.trustProxy !== undefined) app.set('trust proxy', config.trustProxy);
  // What every exchange gets first, before Express swaps the prototypes of req and res: a property set on them
  // after that costs V8 a new hidden class each time, before it almost nothing (docs/performance.md); Express's
  // own fields, the context and the response's tap are set here, and helmet's headers.
  const handle = (app as unknown as ExpressHandle).handle.bind(app);
  (app as unknown as ExpressHandle).handle = function prepareExchange(req, res, done) {
    presetExpressFields(req, res);
    gateway.prepare(req, res);
    handle(req, res, done);
  };
  app.use(gateway);
  // The gateway's router leaves paths it does not serve to what comes after it; as an app of its own, they are 404s.
  app.use(function answerNotFound(req: Request, res: Response) {
    renderApiError(new ApiError('not_found', `No route ${req.method} ${req.path.slice(0, 200)}.`), req, res);
  });
  Object.defineProperty(app, 'stores', { value: gateway.stores, enumerable: true });
  app.flushUsage = () => gateway.flushUsage();
  app.replayUsage = () => gateway.replayUsage();
  app.spendReady = () => gateway.spendReady();
  app.reloadKeys = (next) => gateway.reloadKeys(next);
  app.drain = () => gateway.drain();
  app.attachResponsesSocket = (server) => gateway.attachResponsesSocket(server, app as unknown as RequestListener);
  app.reloadConfigFile = (text, path) => gateway.reloadConfigFile(text, path);
  app.close = () => gateway.close();
  return app;
}
