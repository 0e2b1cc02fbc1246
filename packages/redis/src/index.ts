// @tollgate/redis: the core store interfaces on Redis (Lua scripts by SHA, Cluster hash tags, deadlines).
export { createRedisStores, keyCacheClientName, type RedisStores, type RedisStoresOptions } from './redis-stores.js';
export { RedisWindowCounter } from './window-counter.js';
export { RedisReservationLedger } from './reservation-ledger.js';
export { RedisKeyStore } from './key-store.js';
export type { RedisClientLike } from './connection.js';
export { LuaScript, normaliseLua, type SendCommand } from './lua.js';
export { SCRIPTS } from './scripts.js';
export { KeyCache, type KeyCacheOptions, type SubscriberLike } from './key-cache.js';
export { keyChangesChannel } from './key-store.js';
