// The gateway's config: its schema by section, its validation, and the translators from it to each part's options.
export { ConfigError } from './error.js';
export { servableConfig, validateConfig } from './validate.js';
export { configJsonSchemaText, configTextProblems, parseConfig } from './json-text.js';
export { configSummary, servingInWords } from './summary.js';
export { keyNamesOf, keyReferenceProblems } from './key-names.js';
export { defaultUpstreamKind } from './upstream-schema.js';
export type * from './schema.js';
export { gatewayOptions } from './gateway-options.js';
export { spoolDirectory } from './metering-options.js';
export { checkBeforeStart, parsePort, reachabilityProblems } from './start-checks.js';
export { keysFromChangedConfig, reloadedKeyProblems, toConfigKey } from './reload.js';
export type { ConfigFileReload } from './reload.js';
export { reconcileBudgets } from './reconcile.js';
