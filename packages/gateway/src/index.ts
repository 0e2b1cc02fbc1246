// @tollgate/gateway: the whole chain in its one order, from the proxy's JSON config, as an Express router or app and a
// server process; what the operator's command line (@tollgate/cli) asks of the config and its budgets.
export { createGateway, createProxyApp } from './app.js';
export type { Gateway, GatewayControls, ProxyApp, ProxyDeps } from './app.js';
export {
  ConfigError,
  configJsonSchemaText,
  keyNamesOf,
  keyReferenceProblems,
  parseConfig,
  validateConfig,
} from './config.js';
export type { KeyConfig, ProxyConfig } from './config.js';
export { createMockProvider } from './mock-provider.js';
export type { MockProvider } from './mock-provider.js';
export { serveGateway } from './serve.js';
export { reconcileBudgets } from './spend-rebuild.js';
