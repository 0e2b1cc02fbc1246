// The gateway's config: its schema by section, its validation, and the translators from it to each part's options.
export { ConfigError } from './error.js';
export { configProblems, servableConfig, validateConfig } from './validate.js';
export type { ValidateOptions } from './validate.js';
export { configJsonSchemaText, parseConfig } from './json-text.js';
export { keyNamesOf, keyReferenceProblems } from './key-names.js';
export type { KeyNames, KeyReferences } from './key-names.js';
export { defaultUpstreamKind, UPSTREAM_KINDS } from './upstream-schema.js';
export type { UpstreamKind } from './upstream-schema.js';
export { LOG_LEVELS } from './store-schema.js';
export type { LogLevel } from './store-schema.js';
export type * from './schema.js';
export { gatewayOptions } from './gateway-options.js';
export { defaultTierOf } from './auth-options.js';
export { spoolDirectory } from './metering-options.js';
export { checkBeforeStart, parsePort } from './start-checks.js';
export { keysFromChangedConfig } from './reload.js';
export type { ConfigFileReload } from './reload.js';
export { reconcileBudgets } from './reconcile.js';
