// @tollgate/gateway: the whole chain in its one order, from the proxy's JSON config, as an Express router or app and a
// server process; what the operator's command line (@tollgate/cli) asks of the config and its budgets.
export { createGateway, createGatewayApp } from './app.js';
export { tollgate } from './compose.js';
export type {
  TollgateBatchParts,
  TollgateGuardParts,
  TollgateMadeParts,
  TollgateMcpParts,
  TollgateParts,
  TollgateRouter,
} from './tollgate-parts.js';
export { partsFromConfig } from './config-parts.js';
export {
  ConfigError,
  configJsonSchemaText,
  keyNamesOf,
  keyReferenceProblems,
  parseConfig,
  reconcileBudgets,
  validateConfig,
} from './config/index.js';
export type { GatewayConfig } from './config/index.js';
export { serveGateway } from './serve.js';
