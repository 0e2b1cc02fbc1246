// @tollgate/gateway: the whole chain in its one order, from the proxy's JSON config, as an Express router or app, a
// server process and the operator's command line.
export { createGateway, createProxyApp } from './app.js';
export { tollgate } from './compose.js';
export type { TollgateParts, TollgateRouter } from './compose.js';
export type { Gateway, GatewayControls, ProxyApp, ProxyDeps } from './app.js';
export { ConfigError, configJsonSchemaText, parseConfig, validateConfig } from './config/index.js';
export type { KeyConfig, ProxyConfig } from './config/index.js';
export { createMockProvider } from './mock-provider.js';
export type { MockProvider } from './mock-provider.js';
export { serveGateway } from './serve.js';
export { runCli } from './cli.js';
