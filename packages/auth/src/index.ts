// @tollgate/auth: who is calling. API keys, passport bearer, JWTs, scopes, model allowlists, the key records' files.
export { apiKeyAuth } from './api-key-auth.js';
export type { ApiKeyAuthOptions } from './api-key-auth.js';
export { bearerAuth, createBearerStrategy } from './bearer-auth.js';
export { jwtAuth } from './jwt-auth.js';
export type { JwtVerifyOptions } from './jwt-auth.js';
export { requireScope } from './require-scope.js';
export { modelAllowlist } from './model-allowlist.js';
export { generateApiKey, hashApiKey, API_KEY_PATTERN } from './api-keys.js';
export { identityFromRecord, judgeKeyRecord } from './key-source.js';
export { keyRecordsFromConfig, configKeyFromRecord, adminKeyRecord, isValidKeyId } from './config-keys.js';
export type { ConfigKeyEntry } from './config-keys.js';
export { fileKeyStore } from './file-key-store.js';
export { editConfigKeys, readConfigKeys } from './config-file.js';
export {
  forgetKeyFileReader,
  keysWithRemovals,
  noteKeyFileTaken,
  readersFolder,
  waitForKeyFileReaders,
} from './key-file-readers.js';
export type { ReadersVerdict } from './key-file-readers.js';
export type { FileKeyStore } from './file-key-store.js';
export {
  expiryAfterGrace,
  keyBudgetTerm,
  keyExpiry,
  keyTermOrRefusal,
  predecessorAfterRotation,
  rotationGrace,
  successorRecord,
  KeyTermError,
} from './key-terms.js';
export { rotateApiKey } from './key-rotation.js';
export type { ChangeOneKey, Rotation, RotationTerms } from './key-rotation.js';
export { attribution } from './attribution.js';
export type { AttributionOptions } from './attribution.js';
