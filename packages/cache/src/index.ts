// @tollgate/cache: an exact response cache for provider calls, and automatic provider prompt caching.
export { createResponseCache, type ResponseCacheOptions } from './response-cache.js';
export type { CacheStore } from './cache-store.js';
export { MemoryCacheStore } from './memory-cache-store.js';
export { RedisCacheStore } from './redis-cache-store.js';
export { anthropicCacheMinimum, anthropicPromptCaching } from './prompt-caching.js';
