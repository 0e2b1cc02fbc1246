// @tollgate/redis: the core store interfaces on Redis (Lua scripts by SHA, bundled per turn, Cluster hash tags, deadlines).
export { createRedisStores, keyCacheClientName, type RedisStores, type RedisStoresOptions } from './redis-stores.js';
export { RedisWindowCounter } from './window-counter.js';
export { RedisFixedWindow } from './fixed-window.js';
export { RedisReservationLedger, type ScopeBirth } from './reservation-ledger.js';
export { ShardedReservationLedger } from './sharded-ledger.js';
export { RedisKeyStore } from './key-store.js';
export type { ClusterNodeLike, RedisClientLike, RedisClusterLike } from './connection.js';
export { slotTag } from './hash-slot.js';
export { LuaScript, normaliseLua, type SendCommand } from './lua.js';
export { SCRIPTS } from './scripts.js';
export { BundledScriptError, ScriptBundle } from './script-bundle.js';
export { KeyCache, type KeyCacheOptions, type SubscriberLike } from './key-cache.js';
export { keyChangesChannel } from './key-store.js';
