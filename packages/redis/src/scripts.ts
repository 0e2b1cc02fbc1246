// Every atomic store operation as one Lua script. Time comes from Redis TIME, never from the app.
import { LuaScript } from './lua.js';

// Numbers go back and forth as strings: a Lua number returned as-is is truncated to an integer,
// and tostring() keeps only 14 digits. So tostring() only for integers below 1e14, where it is
// exact (and several times cheaper than string.format); '%.17g', which round-trips every double,
// for the rest.
const PRELUDE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function fmt(n)
  if n % 1 == 0 and n < 1e14 and n > -1e14 then return tostring(n) end
  return string.format('%.17g', n)
end
`;

// Window hash fields: s = start of the current fixed window, c = its count, p = the previous window's count.
// `moved` = the stored window is not the current one (none yet, or rolled): saving then writes
// all three fields and the expiry, which depends on the start only; otherwise one field.
const WINDOW_STATE = `
local size = tonumber(ARGV[2])
local start = now - (now % size)
local state = redis.call('HMGET', KEYS[1], 's', 'c', 'p')
local s = tonumber(state[1])
local count = tonumber(state[2]) or 0
local previous = tonumber(state[3]) or 0
local moved = s ~= start
if s == nil then
  count = 0
  previous = 0
elseif s > start then
  -- TIME went back (failover to a replica with a slower clock): stay in the stored window.
  start = s
  moved = false
elseif s < start then
  if s + size == start then previous = count else previous = 0 end
  count = 0
end
local function save(field, value)
  if moved then
    redis.call('HSET', KEYS[1], 's', fmt(start), 'c', fmt(count), 'p', fmt(previous))
    redis.call('PEXPIREAT', KEYS[1], fmt(start + 2 * size))
  else
    redis.call('HSET', KEYS[1], field, fmt(value))
  end
end
`;

/**
 * KEYS: window hash. ARGV: units, windowMs, limit. Returns {allowed, remaining, resetAt, retryAfterMs, windowStart}.
 * A refused consume writes nothing: a roll it would store is derived the same way from the old state next time.
 */
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
    save('c', count)
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
    save('c', count)
  elseif target == start - size then
    previous = math.max(0, previous + delta)
    save('p', previous)
  else
    return 0
  end
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

// Ledger layout (all under one {ledger} hash tag):
// - scope hash: spent, reserved, x = when the hash expires (its PEXPIREAT, kept here so that
//   checking it costs no call). x is at least the scope's period end and every live reservation's
//   expiry, so a scope outlives whatever holds part of its `reserved`.
// - reservation record res:<id>: JSON {a = amount, e = expiry, s = {scope hash, scope period end, ...}},
//   the one place saying what a reservation holds. It outlives the reservation (until a day after
//   its scopes' x) so that a purge can still give its amount back.
// - holds: one ZSET of reservation ids scored by expiry.
// Purge, at the start of every script that reads or creates a scope: give back the amount of each
// reservation whose TTL has passed, in each of its scopes that still exists, so a crashed process's
// hold is released on time with no background job. A scope is only ever created after a purge, so
// an old reservation never gives back into a new scope of the same name.
const LEDGER_HELPERS = `
local MARGIN = 86400000
local function purge(holds)
  local ids = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #ids == 0 then return end
  -- Records sit beside the holds ZSET: <prefix>{ledger}:holds -> <prefix>{ledger}:res:<id>.
  local records = string.sub(holds, 1, -6) .. 'res:'
  for _, id in ipairs(ids) do
    local existing = redis.call('GETDEL', records .. id)
    if existing then
      local record = cjson.decode(existing)
      local amount = tonumber(record.a)
      for i = 1, #record.s, 2 do
        local reserved = redis.call('HGET', record.s[i], 'reserved')
        if reserved then redis.call('HSET', record.s[i], 'reserved', fmt(math.max(0, tonumber(reserved) - amount))) end
      end
    end
  end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
end
`;

/**
 * KEYS: reservation record, holds, then the scope hashes. ARGV: amount, minAmount, ttlMs, id,
 * then (limit, expiresAt) per scope.
 * Returns {1, granted, then (spent, reserved) per scope after the reserve} ({1, granted} alone
 * for a live id reserved again), or {0, index of the refusing scope (1-based), its remaining}.
 */
export const reserve = new LuaScript(
  'reserve',
  `${PRELUDE}${LEDGER_HELPERS}
  purge(KEYS[2])
  local id = ARGV[4]
  local expires = now + tonumber(ARGV[3])
  local expiresText = fmt(expires)
  -- The purge took out every expired id, so a member already there is a live reservation: it
  -- answers with its grant. Otherwise the id is held from here on (and let go if refused).
  if redis.call('ZADD', KEYS[2], 'NX', expiresText, id) == 0 then
    local existing = redis.call('GET', KEYS[1])
    return {1, existing and cjson.decode(existing).a or '0'}
  end
  local least = tonumber(ARGV[2])
  local grant = tonumber(ARGV[1])
  local n = #KEYS - 2
  local values = {}
  local held = {}
  for i = 1, n do
    local v = redis.call('HMGET', KEYS[2 + i], 'spent', 'reserved', 'x')
    local reserved = tonumber(v[2]) or 0
    local remaining = tonumber(ARGV[3 + 2 * i]) - (tonumber(v[1]) or 0) - reserved
    if remaining < 0 then remaining = 0 end
    if remaining < least then
      redis.call('ZREM', KEYS[2], id)
      return {0, i, fmt(remaining)}
    end
    if remaining < grant then grant = remaining end
    values[i] = v
    held[i] = reserved
  end
  local keep = expires
  local scopes = {}
  local out = {1, fmt(grant)}
  for i = 1, n do
    local scope = KEYS[2 + i]
    local v = values[i]
    local reserved = fmt(held[i] + grant)
    local periodEnd = ARGV[4 + 2 * i]
    local x = tonumber(v[3])
    -- The expiry moves for a new scope, a hold outliving it, or a later period end (x is stored
    -- as the caller wrote the period end, so equal text needs no number).
    if x == nil or expires > x or (v[3] ~= periodEnd and tonumber(periodEnd) > x) then
      x = math.max(tonumber(periodEnd), expires)
      redis.call('HSET', scope, 'reserved', reserved, 'x', fmt(x))
      redis.call('PEXPIREAT', scope, fmt(x))
    else
      redis.call('HSET', scope, 'reserved', reserved)
    end
    if x > keep then keep = x end
    scopes[2 * i - 1] = scope
    scopes[2 * i] = periodEnd
    out[2 * i + 1] = v[1] or '0'
    out[2 * i + 2] = reserved
  end
  keep = keep + MARGIN
  redis.call('SET', KEYS[1], cjson.encode({a = out[2], e = expiresText, s = scopes}), 'PXAT', fmt(keep))
  -- The holds must outlive every record they name.
  if redis.call('PTTL', KEYS[2]) < keep - now then redis.call('PEXPIREAT', KEYS[2], fmt(keep)) end
  return out
  `,
);

/**
 * KEYS: reservation record, holds. ARGV: actual amount, id. Returns {1, reserved, then (scope hash
 * key, spent, reserved) per scope after the settle} once, then {0, '0'}.
 * The scope keys come from the record, not from KEYS: settle knows only the id. They share the
 * record's {hash tag}, so the script stays on one Cluster slot.
 */
export const settle = new LuaScript(
  'settle',
  `${PRELUDE}${LEDGER_HELPERS}
  purge(KEYS[2])
  local existing = redis.call('GETDEL', KEYS[1])
  if not existing then return {0, '0'} end
  redis.call('ZREM', KEYS[2], ARGV[2])
  local record = cjson.decode(existing)
  local amount = tonumber(record.a)
  local actual = math.max(0, tonumber(ARGV[1]))
  local out = {1, record.a}
  for i = 1, #record.s, 2 do
    local scope = record.s[i]
    local v = redis.call('HMGET', scope, 'spent', 'reserved')
    local spent = v[1] or '0'
    local reserved = '0'
    -- A scope outlives the live reservations in it: one that is gone (evicted) is not recreated.
    if v[2] then
      reserved = fmt(math.max(0, tonumber(v[2]) - amount))
      -- A scope whose period ended meanwhile is not charged: its counters are over.
      if actual > 0 and tonumber(record.s[i + 1]) > now then
        spent = fmt(tonumber(spent) + actual)
        redis.call('HSET', scope, 'spent', spent, 'reserved', reserved)
      else
        redis.call('HSET', scope, 'reserved', reserved)
      end
    end
    out[#out + 1] = scope
    out[#out + 1] = spent
    out[#out + 1] = reserved
  end
  return out
  `,
);

/** KEYS: holds, then the scope hashes. Returns spent, reserved per scope. */
export const ledgerUsage = new LuaScript(
  'ledgerUsage',
  `${PRELUDE}${LEDGER_HELPERS}
  purge(KEYS[1])
  local out = {}
  for i = 2, #KEYS do
    local values = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
    out[2 * i - 3] = values[1] or '0'
    out[2 * i - 2] = values[2] or '0'
  end
  return out
  `,
);

/** KEYS: holds, scope hash. ARGV: delta, expiresAt. A negative delta is a credit: spent may go below zero. */
export const adjustSpent = new LuaScript(
  'adjustSpent',
  `${PRELUDE}${LEDGER_HELPERS}
  local at = tonumber(ARGV[2])
  if at <= now then return 0 end
  purge(KEYS[1])
  local v = redis.call('HMGET', KEYS[2], 'spent', 'x')
  local spent = fmt((tonumber(v[1]) or 0) + tonumber(ARGV[1]))
  local x = tonumber(v[2])
  if x == nil or at > x then
    redis.call('HSET', KEYS[2], 'spent', spent, 'x', fmt(at))
    redis.call('PEXPIREAT', KEYS[2], fmt(at))
  else
    redis.call('HSET', KEYS[2], 'spent', spent)
  end
  return 1
  `,
);

/** KEYS: scope hash. Forgets the spend; live reservations stay. */
export const resetScope = new LuaScript(
  'resetScope',
  `
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
