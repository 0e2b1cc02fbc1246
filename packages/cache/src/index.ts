// @tollgate/cache: an exact response cache for provider calls, and automatic provider prompt caching.
export { createResponseCache, CACHE_HEADER, type ResponseCache, type ResponseCacheOptions } from './response-cache.js';
export { cacheKey, normaliseBody, scopeOf, IGNORED_BODY_FIELDS, type CacheScope } from './cache-key.js';
export type { CacheStore } from './cache-store.js';
export { MemoryCacheStore, type MemoryCacheStoreOptions } from './memory-cache-store.js';
export { RedisCacheStore, type RedisCacheStoreOptions } from './redis-cache-store.js';
export {
  CACHED_APIS,
  completeJsonAnswer,
  isCachedApi,
  jsonToStream,
  streamToJson,
  type CachedApi,
} from './answer-forms.js';
export {
  addPromptCacheBreakpoints,
  anthropicCacheMinimum,
  anthropicPromptCaching,
  type PromptCachingOptions,
} from './prompt-caching.js';
