// @tollgate/redis: the core store interfaces on Redis (Lua scripts by SHA, bundled per turn, Cluster hash tags, deadlines).
export { createRedisStores, type RedisStores } from './redis-stores.js';
export { slotTag } from './hash-slot.js';
export type { SubscriberLike } from './key-cache.js';
