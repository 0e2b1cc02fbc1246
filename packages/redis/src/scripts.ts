// Every atomic store operation as one Lua script. Time comes from Redis TIME, never from the app.
import { LuaScript } from './lua.js';

// Numbers go back and forth as strings: a Lua number returned as-is is truncated to an integer,
// and tostring() keeps only 14 digits. '%.17g' round-trips every double exactly.
const PRELUDE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function fmt(n) return string.format('%.17g', n) end
`;

// Window hash fields: s = start of the current fixed window, c = its count, p = the previous window's count.
const WINDOW_STATE = `
local size = tonumber(ARGV[2])
local start = now - (now % size)
local state = redis.call('HMGET', KEYS[1], 's', 'c', 'p')
local s = tonumber(state[1])
local count = tonumber(state[2]) or 0
local previous = tonumber(state[3]) or 0
local rolled = false
if s == nil then
  count = 0
  previous = 0
elseif s > start then
  -- TIME went back (failover to a replica with a slower clock): stay in the stored window.
  start = s
elseif s < start then
  if s + size == start then previous = count else previous = 0 end
  count = 0
  rolled = true
end
`;

const SAVE_WINDOW = `
redis.call('HSET', KEYS[1], 's', fmt(start), 'c', fmt(count), 'p', fmt(previous))
redis.call('PEXPIREAT', KEYS[1], fmt(start + 2 * size))
`;

/** KEYS: window hash. ARGV: units, windowMs, limit. Returns {allowed, remaining, resetAt, retryAfterMs, windowStart}. */
export const consumeWindow = new LuaScript(
  'consumeWindow',
  `${PRELUDE}${WINDOW_STATE}
  local units = tonumber(ARGV[1])
  local limit = tonumber(ARGV[3])
  local reset = start + size
  local weighted = previous * ((reset - now) / size)
  local used = weighted + count
  local allowed = used + units <= limit
  local retry = 0
  if allowed then
    count = count + units
  else
    -- Same formula as the memory store: the previous window fades first, then the current one.
    local excess = used + units - limit
    if units > limit then
      retry = reset - now
    elseif previous > 0 and excess <= weighted then
      retry = math.max(1, math.ceil(excess * size / previous))
    else
      retry = reset - now + math.max(1, math.ceil(size * (1 - (limit - units) / count)))
    end
  end
  if allowed or (rolled and s ~= nil) then
    ${SAVE_WINDOW}
  end
  local remaining = limit - used
  if allowed then remaining = remaining - units end
  if remaining < 0 then remaining = 0 end
  return {allowed and 1 or 0, fmt(math.floor(remaining)), fmt(reset), fmt(retry), fmt(start)}
  `,
);

/** KEYS: window hash. ARGV: delta, windowMs, windowStart. Adjusts the identified window if it still exists. */
export const adjustWindow = new LuaScript(
  'adjustWindow',
  `${PRELUDE}${WINDOW_STATE}
  if s == nil then return 0 end
  local delta = tonumber(ARGV[1])
  local target = tonumber(ARGV[3])
  if target == start then
    count = math.max(0, count + delta)
  elseif target == start - size then
    previous = math.max(0, previous + delta)
  else
    return 0
  end
  ${SAVE_WINDOW}
  return 1
  `,
);

/** KEYS: window hash. ARGV: (unused), windowMs. Returns the weighted count now. */
export const peekWindow = new LuaScript(
  'peekWindow',
  `${PRELUDE}${WINDOW_STATE}
  return fmt(previous * ((start + size - now) / size) + count)
  `,
);

// Ledger scope = a hash (spent, reserved, and r:<id> = amount per live reservation) plus a ZSET
// of reservation ids scored by expiry. Every script that touches a scope purges it first, so an
// unsettled reservation frees its amount once its TTL has passed, with no background job.
const LEDGER_HELPERS = `
local function purge(scope, holds)
  local ids = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #ids == 0 then return end
  local freed = 0
  for _, id in ipairs(ids) do
    local held = redis.call('HGET', scope, 'r:' .. id)
    if held then
      freed = freed + tonumber(held)
      redis.call('HDEL', scope, 'r:' .. id)
    end
  end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  if freed > 0 then
    local reserved = (tonumber(redis.call('HGET', scope, 'reserved')) or 0) - freed
    redis.call('HSET', scope, 'reserved', fmt(math.max(0, reserved)))
  end
end
local function extend(key, at)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or (ttl >= 0 and now + ttl < at) then redis.call('PEXPIREAT', key, fmt(at)) end
end
`;

/**
 * KEYS: reservation record, then (scope hash, scope holds) per scope.
 * ARGV: amount, minAmount, ttlMs, id, then (limit, expiresAt) per scope.
 * Returns {1, granted, then (spent, reserved) per scope after the reserve} ({1, granted} alone
 * for a live id reserved again), or {0, index of the refusing scope (1-based), its remaining}.
 */
export const reserve = new LuaScript(
  'reserve',
  `${PRELUDE}${LEDGER_HELPERS}
  local existing = redis.call('GET', KEYS[1])
  if existing then
    local record = cjson.decode(existing)
    if tonumber(record.e) > now then return {1, record.a} end
  end
  local amount = tonumber(ARGV[1])
  local least = tonumber(ARGV[2])
  local ttl = tonumber(ARGV[3])
  local id = ARGV[4]
  local n = (#KEYS - 1) / 2
  local grant = amount
  local reserved = {}
  local spent = {}
  for i = 1, n do
    local scope = KEYS[2 * i]
    purge(scope, KEYS[2 * i + 1])
    local values = redis.call('HMGET', scope, 'spent', 'reserved')
    reserved[i] = tonumber(values[2]) or 0
    spent[i] = tonumber(values[1]) or 0
    local remaining = math.max(0, tonumber(ARGV[3 + 2 * i]) - spent[i] - reserved[i])
    if remaining < least then return {0, i, fmt(remaining)} end
    if remaining < grant then grant = remaining end
  end
  local expires = now + ttl
  local scopes = {}
  local out = {1, fmt(grant)}
  for i = 1, n do
    local scope = KEYS[2 * i]
    local holds = KEYS[2 * i + 1]
    local scopeExpires = tonumber(ARGV[4 + 2 * i])
    redis.call('HSET', scope, 'reserved', fmt(reserved[i] + grant), 'r:' .. id, fmt(grant))
    redis.call('ZADD', holds, expires, id)
    local keep = math.max(scopeExpires, expires)
    extend(scope, keep)
    extend(holds, keep)
    scopes[i] = {scope, holds, fmt(scopeExpires)}
    out[#out + 1] = fmt(spent[i])
    out[#out + 1] = fmt(reserved[i] + grant)
  end
  redis.call('SET', KEYS[1], cjson.encode({a = fmt(grant), e = fmt(expires), s = scopes}), 'PX', ttl)
  return out
  `,
);

/**
 * KEYS: reservation record. ARGV: actual amount, id. Returns {1, reserved, then (scope hash key,
 * spent, reserved) per scope after the settle} once, then {0, '0'}.
 * The scope keys come from the record, not from KEYS: settle knows only the id. They share the
 * record's {hash tag}, so the script stays on one Cluster slot.
 */
export const settle = new LuaScript(
  'settle',
  `${PRELUDE}${LEDGER_HELPERS}
  local existing = redis.call('GET', KEYS[1])
  if not existing then return {0, '0'} end
  redis.call('DEL', KEYS[1])
  local record = cjson.decode(existing)
  local live = tonumber(record.e) > now
  local amount = tonumber(record.a)
  local actual = math.max(0, tonumber(ARGV[1]))
  local id = ARGV[2]
  local out = {1, record.a}
  for _, entry in ipairs(record.s) do
    local scope = entry[1]
    local holds = entry[2]
    local scopeExpires = tonumber(entry[3])
    purge(scope, holds)
    if redis.call('HDEL', scope, 'r:' .. id) == 1 then
      local reserved = (tonumber(redis.call('HGET', scope, 'reserved')) or 0) - amount
      redis.call('HSET', scope, 'reserved', fmt(math.max(0, reserved)))
      redis.call('ZREM', holds, id)
    end
    -- A scope whose period ended meanwhile is not charged: its counters are over.
    if live and actual > 0 and scopeExpires > now then
      local spent = (tonumber(redis.call('HGET', scope, 'spent')) or 0) + actual
      redis.call('HSET', scope, 'spent', fmt(spent))
      extend(scope, scopeExpires)
    end
    local values = redis.call('HMGET', scope, 'spent', 'reserved')
    out[#out + 1] = scope
    out[#out + 1] = values[1] or '0'
    out[#out + 1] = values[2] or '0'
  end
  if not live then return {0, '0'} end
  return out
  `,
);

/** KEYS: (scope hash, scope holds) per scope. Returns spent, reserved per scope. */
export const ledgerUsage = new LuaScript(
  'ledgerUsage',
  `${PRELUDE}${LEDGER_HELPERS}
  local out = {}
  for i = 1, #KEYS / 2 do
    local scope = KEYS[2 * i - 1]
    purge(scope, KEYS[2 * i])
    local values = redis.call('HMGET', scope, 'spent', 'reserved')
    out[2 * i - 1] = values[1] or '0'
    out[2 * i] = values[2] or '0'
  end
  return out
  `,
);

/** KEYS: scope hash, scope holds. ARGV: delta, expiresAt. */
export const adjustSpent = new LuaScript(
  'adjustSpent',
  `${PRELUDE}${LEDGER_HELPERS}
  purge(KEYS[1], KEYS[2])
  local at = tonumber(ARGV[2])
  if at <= now then return 0 end
  local spent = (tonumber(redis.call('HGET', KEYS[1], 'spent')) or 0) + tonumber(ARGV[1])
  redis.call('HSET', KEYS[1], 'spent', fmt(math.max(0, spent)))
  extend(KEYS[1], at)
  return 1
  `,
);

/** KEYS: scope hash, scope holds. Forgets the spend; live reservations stay. */
export const resetScope = new LuaScript(
  'resetScope',
  `${PRELUDE}${LEDGER_HELPERS}
  purge(KEYS[1], KEYS[2])
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  redis.call('HSET', KEYS[1], 'spent', '0')
  return 1
  `,
);

// Key store: a hash per key id (record JSON, sha256, disabled flag), a hash index sha256 -> id,
// and a set of ids for listing. The flag lives outside the JSON so disable needs no JSON rewrite.

// Every change publishes {id, sha, from} on the channel in ARGV, in the same script as the write,
// so processes caching records (key-cache.ts) hear of it whichever process or tool made it.
// `from` names the writing cache, which has already dropped what the change made stale.

/** KEYS: key hash, index, ids. ARGV: id, sha256, record JSON, disabled ('1' or '0'), channel, from. */
export const putKey = new LuaScript(
  'putKey',
  `
  local id = ARGV[1]
  local sha = ARGV[2]
  local old = redis.call('HGET', KEYS[1], 'sha256')
  if old and old ~= sha and redis.call('HGET', KEYS[2], old) == id then redis.call('HDEL', KEYS[2], old) end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'record', ARGV[3], 'sha256', sha, 'disabled', ARGV[4])
  redis.call('HSET', KEYS[2], sha, id)
  redis.call('SADD', KEYS[3], id)
  redis.call('PUBLISH', ARGV[5], cjson.encode({id = id, sha = sha, from = ARGV[6]}))
  if old and old ~= sha then redis.call('PUBLISH', ARGV[5], cjson.encode({id = id, sha = old, from = ARGV[6]})) end
  return 1
  `,
);

/** KEYS: index. ARGV: sha256, key hash prefix. Returns {record JSON, disabled} or nil. */
export const findKeyByHash = new LuaScript(
  'findKeyByHash',
  `
  local id = redis.call('HGET', KEYS[1], ARGV[1])
  if not id then return false end
  local values = redis.call('HMGET', ARGV[2] .. id, 'record', 'disabled')
  if not values[1] then return false end
  return {values[1], values[2] or '0'}
  `,
);

/** KEYS: key hash. ARGV: id, channel, from. Returns 1 when the key existed. */
export const disableKey = new LuaScript(
  'disableKey',
  `
  local sha = redis.call('HGET', KEYS[1], 'sha256')
  if not sha then return 0 end
  redis.call('HSET', KEYS[1], 'disabled', '1')
  redis.call('PUBLISH', ARGV[2], cjson.encode({id = ARGV[1], sha = sha, from = ARGV[3]}))
  return 1
  `,
);

/** KEYS: key hash, index, ids. ARGV: id, channel, from. Returns 1 when the key existed. */
export const deleteKey = new LuaScript(
  'deleteKey',
  `
  local sha = redis.call('HGET', KEYS[1], 'sha256')
  if not sha then return 0 end
  redis.call('DEL', KEYS[1])
  if redis.call('HGET', KEYS[2], sha) == ARGV[1] then redis.call('HDEL', KEYS[2], sha) end
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('PUBLISH', ARGV[2], cjson.encode({id = ARGV[1], sha = sha, from = ARGV[3]}))
  return 1
  `,
);

/** KEYS: ids. ARGV: key hash prefix. Returns record JSON, disabled, ... for every key. */
export const listKeys = new LuaScript(
  'listKeys',
  `
  local out = {}
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local values = redis.call('HMGET', ARGV[1] .. id, 'record', 'disabled')
    if values[1] then
      out[#out + 1] = values[1]
      out[#out + 1] = values[2] or '0'
    end
  end
  return out
  `,
);

/** Every script, by name: the SHA1 pin test walks this. */
export const SCRIPTS = {
  consumeWindow,
  adjustWindow,
  peekWindow,
  reserve,
  settle,
  ledgerUsage,
  adjustSpent,
  resetScope,
  putKey,
  findKeyByHash,
  disableKey,
  deleteKey,
  listKeys,
} as const;
