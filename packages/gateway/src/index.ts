// @tollgate/gateway: the whole chain in its one order, from the proxy's JSON config, as an Express router or app, a
// server process and the operator's command line.
export { createGateway, createProxyApp } from './app.js';
export type { Gateway, GatewayControls, ProxyApp, ProxyDeps } from './app.js';
export { ConfigError, configJsonSchemaText, parseConfig, validateConfig } from './config.js';
export type { KeyConfig, ProxyConfig } from './config.js';
export { serveGateway } from './serve.js';
export { runCli } from './cli.js';
