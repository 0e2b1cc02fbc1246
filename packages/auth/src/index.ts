// @tollgate/auth: who is calling. API keys, passport bearer, JWTs, scopes, model allowlists, key management.
export { apiKeyAuth } from './api-key-auth.js';
export type { ApiKeyAuthOptions } from './api-key-auth.js';
export { bearerAuth, createBearerStrategy, BEARER_STRATEGY_NAME, KeyStoreUnavailableError } from './bearer-auth.js';
export type { BearerAuthOptions, BearerStrategyOptions, PassportLike } from './bearer-auth.js';
export { jwtAuth } from './jwt-auth.js';
export type { JwtAuthOptions, JwtVerifyOptions } from './jwt-auth.js';
export { requireScope } from './require-scope.js';
export type { RequireScopeOptions } from './require-scope.js';
export { modelAllowlist } from './model-allowlist.js';
export type { ModelAllowlistOptions } from './model-allowlist.js';
export { generateApiKey, hashApiKey, isApiKeyFormat, API_KEY_PATTERN, API_KEY_PREFIX } from './api-keys.js';
export { readCredential } from './credentials.js';
export type { Credential } from './credentials.js';
export type { KeyLookup, KeySource } from './key-source.js';
export { keyRecordsFromConfig, configKeyFromRecord, adminKeyRecord, isValidKeyId } from './config-keys.js';
export type { ConfigKeyEntry } from './config-keys.js';
export { runKeysCommand } from './keys-command.js';
export type { KeysCommandIo } from './keys-command.js';
