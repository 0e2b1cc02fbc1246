// Every atomic store operation as one Lua script. Time comes from Redis TIME, never from the app.
import { LuaScript } from './lua.js';

// `now`: Redis TIME in ms. The script bundle (script-bundle.ts) reads TIME once for all the
// operations it runs and passes it in as ARGV.now; a script run on its own reads it here.
// Numbers go back and forth as strings: a Lua number returned as-is is truncated to an integer,
// and tostring() keeps only 14 digits. So tostring() only for integers below 1e14, where it is
// exact (and several times cheaper than string.format); '%.17g', which round-trips every double,
// for the rest.
const PRELUDE = `
local now = ARGV.now
if now == nil then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local function fmt(n)
  if n % 1 == 0 and n < 1e14 and n > -1e14 then return tostring(n) end
  return string.format('%.17g', n)
end
`;

// Window hash fields: s = start of the current fixed window, c = its count, p = the previous window's count.
// `moved` = the stored window is not the current one (none yet, or rolled): saving then writes
// all three fields and the expiry, which depends on the start only; otherwise one field.
// The window size is a whole number of ms (the caller rounds it up), so starts, resets and waits
// are integers: they go to redis.call and back to the caller as numbers, exactly, with no fmt()
// (redis.call writes a number with every digit it needs; a tostring in Lua costs more than the HSET).
// ARGV[4] is the key's phase (windowPhase in @tollgate/core, a whole number of ms below the size):
// each key's windows start on its own grid, so keys do not all roll at the same instant. Lua's %
// is never negative for a positive size. A window stored on another grid (by a version before
// windows had a phase) is never under-counted: one that started before this window and overlaps it
// (s < start < s + size) keeps its counts, moved to this window; one that ended within the window
// before this one counts as that window.
const WINDOW_STATE = `
local size = tonumber(ARGV[2])
local start = now - ((now - tonumber(ARGV[4])) % size)
local state = redis.call('HMGET', KEYS[1], 's', 'c', 'p')
local s = tonumber(state[1])
local count = tonumber(state[2]) or 0
local previous = tonumber(state[3]) or 0
local moved = s ~= start
if s == nil then
  count = 0
  previous = 0
elseif s > start then
  -- TIME went back (failover to a replica with a slower clock), or a window of another grid
  -- began after this one's start: stay in the stored window.
  start = s
  moved = false
elseif s + size <= start then
  if s + 2 * size > start then previous = count else previous = 0 end
  count = 0
end
local function save(field, value)
  if moved then
    redis.call('HSET', KEYS[1], 's', start, 'c', count, 'p', previous)
    redis.call('PEXPIREAT', KEYS[1], start + 2 * size)
  else
    redis.call('HSET', KEYS[1], field, value)
  end
end
`;

/**
 * KEYS: window hash. ARGV: units, windowMs, limit, phase. Returns {allowed, remaining, resetAt, retryAfterMs, windowStart}.
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
  return {allowed and 1 or 0, math.floor(remaining), reset, retry, start}
  `,
);

/** KEYS: window hash. ARGV: delta, windowMs, windowStart, phase. Adjusts the identified window if it still exists. */
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

/** KEYS: window hash. ARGV: (unused), windowMs, (unused), phase. Returns the weighted count now. */
export const peekWindow = new LuaScript(
  'peekWindow',
  `${PRELUDE}${WINDOW_STATE}
  return fmt(previous * ((start + size - now) / size) + count)
  `,
);

// Request windows of tieredRateLimit inside combineLimits: express-rate-limit's fixed window as
// rate-limit-redis keeps it (a counter whose window opens at its first hit and expires with it),
// in the same key, so a limiter counts the same whether it is mounted alone or combined.

/**
 * KEYS: counter. ARGV: windowMs. Counts one hit; returns {hits, ms until the window resets}. A
 * counter without an expiry (none yet, or left by a give-back after its window) opens a new window.
 */
export const hitFixedWindow = new LuaScript(
  'hitFixedWindow',
  `
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl <= 0 then
    local size = tonumber(ARGV[1])
    redis.call('SET', KEYS[1], 1, 'PX', size)
    return {1, size}
  end
  return {redis.call('INCR', KEYS[1]), ttl}
  `,
);

/** KEYS: counter. Gives one hit back to a window that still runs (an expired one is not recreated). */
export const returnFixedWindowHit = new LuaScript(
  'returnFixedWindowHit',
  `
  local hits = tonumber(redis.call('GET', KEYS[1]))
  if hits == nil or hits <= 0 then return 0 end
  redis.call('DECR', KEYS[1])
  return 1
  `,
);

/**
 * KEYS: counter. ARGV: window ms, hits. Counts several hits at once (a block of them, see
 * blockStores in @tollgate/core), opening the window as hitFixedWindow does.
 */
export const hitFixedWindowBy = new LuaScript(
  'hitFixedWindowBy',
  `
  local ttl = redis.call('PTTL', KEYS[1])
  local hits = tonumber(ARGV[2])
  if ttl <= 0 then
    local size = tonumber(ARGV[1])
    redis.call('SET', KEYS[1], hits, 'PX', size)
    return {hits, size}
  end
  return {redis.call('INCRBY', KEYS[1], hits), ttl}
  `,
);

/**
 * KEYS: counter. ARGV: hits, least ms left. Gives hits back to a window that still runs at least
 * that long (never to the window after it), not below zero. Returns the hits given back.
 */
export const returnFixedWindowHits = new LuaScript(
  'returnFixedWindowHits',
  `
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl <= tonumber(ARGV[2]) then return 0 end
  local hits = tonumber(redis.call('GET', KEYS[1])) or 0
  local back = math.min(hits, tonumber(ARGV[1]))
  if back <= 0 then return 0 end
  redis.call('DECRBY', KEYS[1], back)
  return back
  `,
);

/**
 * KEYS: counter. Reads a window without counting: {hits, ms until it resets}, {0, 0} when none runs (no counter, or
 * one without an expiry, which the next hit replaces).
 */
export const peekFixedWindow = new LuaScript(
  'peekFixedWindow',
  `
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl <= 0 then return {0, 0} end
  return {tonumber(redis.call('GET', KEYS[1])) or 0, ttl}
  `,
);

// The ledger's fields per scope and how buckets expire: docs/architecture.md, "The ledger's layout in Redis".
const LEDGER_HELPERS = `
local MARGIN = 86400000
-- The scope's state with its expired buckets charged: {spent, reserved, period end, x, live bucket list}.
local function roll(scope)
  local v = redis.call('HMGET', scope, 's', 'r', 'pe', 'x', 'lb', 'spent', 'b', 'cr', 'c')
  if v[6] and not v[1] then
    -- Written by the ledger before buckets (spent, reserved, x): its spend carries over; its
    -- reservations were records this ledger does not read (drain old processes before upgrading).
    v[1] = v[6]
    v[3] = v[4]
    redis.call('HDEL', scope, 'spent', 'reserved')
    redis.call('HSET', scope, 's', v[1], 'pe', v[3])
  end
  if v[9] then
    -- Written when a top-up lowered s and c kept the credits: s + c is what was spent, c the credit.
    v[1] = fmt((tonumber(v[1]) or 0) + tonumber(v[9]))
    v[8] = fmt((tonumber(v[8]) or 0) + tonumber(v[9]))
    redis.call('HDEL', scope, 'c')
    redis.call('HSET', scope, 's', v[1], 'cr', v[8])
  end
  local st = {s = tonumber(v[1]) or 0, r = tonumber(v[2]) or 0, cr = tonumber(v[8]) or 0, pe = tonumber(v[3]), x = tonumber(v[4]), lb = v[5] or '', b = v[7] or '', exists = v[4] ~= false}
  if st.lb == '' then return st end
  local first = string.match(st.lb, '^[^,]+')
  if tonumber(first) > now then return st end
  local kept = {}
  for t in string.gmatch(st.lb, '[^,]+') do
    local at = tonumber(t)
    if at <= now then
      local held = tonumber(redis.call('HGET', scope, 'h' .. t)) or 0
      redis.call('HDEL', scope, 'h' .. t)
      st.r = math.max(0, st.r - held)
      -- Charged only while the scope's period still ran when the reservation expired.
      if st.pe ~= nil and st.pe > at then st.s = st.s + held end
    else
      kept[#kept + 1] = t
    end
  end
  st.lb = table.concat(kept, ',')
  redis.call('HSET', scope, 's', fmt(st.s), 'r', fmt(st.r), 'lb', st.lb)
  return st
end
-- The state of a scope about to be charged for a period ending at periodEnd: a hash whose own
-- period is over (kept for late settles) starts the new period empty.
local function open(scope, periodEnd)
  local st = roll(scope)
  if st.pe ~= nil and st.pe <= now and periodEnd > st.pe then
    redis.call('DEL', scope)
    return {s = 0, r = 0, cr = 0, lb = '', b = '', exists = false}
  end
  return st
end
-- Makes sure the hash lives until max(period end, later) + MARGIN. A hash written for the first
-- time (new, or written again after Redis lost it) gets its birth, b: Redis's time in µs. A
-- reservation remembers the birth of each scope it was made in; a settle that finds another
-- birth knows the hash no longer holds it (see settleBatch).
local function keep(scope, st, periodEnd, later)
  local x = math.max(periodEnd, later) + MARGIN
  if st.x == nil or x > st.x then
    if st.x == nil then
      local time = redis.call('TIME')
      st.b = time[1] .. string.format('%06d', tonumber(time[2]))
      redis.call('HSET', scope, 'x', fmt(x), 'b', st.b)
    else
      redis.call('HSET', scope, 'x', fmt(x))
    end
    redis.call('PEXPIREAT', scope, fmt(x))
    st.x = x
  end
end
-- The hash's birth ('' for a hash written before births were kept, and for none).
local function birth(scope, st)
  return st.b or ''
end
-- Adds bucket t to the ascending list (buckets mostly arrive in order: appended). Most reserves
-- fall in the newest bucket, already last in the list: then the list is returned unchanged.
local function addBucket(lb, t)
  if lb == '' then return t end
  local cut = #lb - #t
  if string.sub(lb, cut + 1) == t and (cut == 0 or string.sub(lb, cut, cut) == ',') then return lb end
  local at = tonumber(t)
  local out = {}
  local placed = false
  for u in string.gmatch(lb, '[^,]+') do
    if u == t then return lb end
    if not placed and tonumber(u) > at then
      out[#out + 1] = t
      placed = true
    end
    out[#out + 1] = u
  end
  if not placed then out[#out + 1] = t end
  return table.concat(out, ',')
end
`;

/**
 * KEYS: the scope hashes, then the reserving ledger's receipts hash, then (gated) the slot's rebuilt mark. ARGV:
 * amount, minAmount, ttlMs, bucketMs, then (limit, periodEnd) per scope, then the receipt's field and tag, then
 * (gated) 'gate'. Returns {1, granted, bucket time, then (spent, reserved) per scope after the reserve, then each
 * scope's birth, then each scope's credit}, {0, index of the refusing scope (1-based), its remaining}, or {-1} when
 * gated and the slot has no rebuilt mark: Redis lost the slot's data (or never held it) and its spend is not rebuilt
 * from the usage ledger yet, so nothing is reserved against it.
 * A grant leaves a receipt, "tag,bucket,granted,births...", in a field the ledger reuses after a while (a
 * ring): a ledger that lost the reply reads it there and gives back what was held (see
 * reserveReceipts).
 */
export const reserve = new LuaScript(
  'reserve',
  `${PRELUDE}${LEDGER_HELPERS}
  local n = #KEYS - 1
  if #ARGV % 2 == 1 then
    n = #KEYS - 2
    if redis.call('EXISTS', KEYS[#KEYS]) == 0 then return {-1} end
  end
  local grant = tonumber(ARGV[1])
  local least = tonumber(ARGV[2])
  local size = tonumber(ARGV[4])
  local bucket = fmt(math.ceil((now + tonumber(ARGV[3])) / size) * size)
  local states = {}
  for i = 1, n do
    local st = open(KEYS[i], tonumber(ARGV[4 + 2 * i]))
    local remaining = tonumber(ARGV[3 + 2 * i]) + st.cr - st.s - st.r
    if remaining < 0 then remaining = 0 end
    if remaining < least then return {0, i, fmt(remaining)} end
    if remaining < grant then grant = remaining end
    states[i] = st
  end
  local out = {1, fmt(grant), bucket}
  for i = 1, n do
    local scope = KEYS[i]
    local st = states[i]
    local periodEnd = tonumber(ARGV[4 + 2 * i])
    st.r = st.r + grant
    local lb = addBucket(st.lb, bucket)
    redis.call('HINCRBY', scope, 'h' .. bucket, grant)
    -- One write of what changed: the total always, the bucket list and period end when they moved.
    if st.pe == nil or periodEnd > st.pe then
      redis.call('HSET', scope, 'r', fmt(st.r), 'lb', lb, 'pe', fmt(periodEnd))
    elseif lb ~= st.lb then
      redis.call('HSET', scope, 'r', fmt(st.r), 'lb', lb)
    else
      redis.call('HSET', scope, 'r', fmt(st.r))
    end
    keep(scope, st, periodEnd, tonumber(bucket))
    out[2 + 2 * i] = fmt(st.s)
    out[3 + 2 * i] = fmt(st.r)
    out[3 + 2 * n + i] = birth(scope, st)
    out[3 + 3 * n + i] = fmt(st.cr)
  end
  -- A field written for the first time (the first lap of the ring, or a hash that expired) sets the expiry.
  local receipt = ARGV[6 + 2 * n] .. ',' .. bucket .. ',' .. fmt(grant)
  for i = 1, n do receipt = receipt .. ',' .. out[3 + 2 * n + i] end
  if redis.call('HSET', KEYS[n + 1], ARGV[5 + 2 * n], receipt) == 1 then
    redis.call('PEXPIRE', KEYS[n + 1], MARGIN)
  end
  return out
  `,
);

/** KEYS: a ledger's receipts hash. ARGV: fields. Returns the receipts in them (false where none). */
export const reserveReceipts = new LuaScript(
  'reserveReceipts',
  `
  return redis.call('HMGET', KEYS[1], unpack(ARGV))
  `,
);

// What a rebuild after a loss read, and what lost settles charged before it (see RedisRebuildGate.recordCut): the
// slot's cut hash (<base>counted) holds @from, before which every finished record was read, and the ids of those read
// since; a scope's lost hash (<base>lost:<scope>) holds what lost settles charged it while the slot was not rebuilt:
// @a, their total, and per record charged "at,amount" (the sum of its shares), which the rebuild's restore takes back
// where it read the record.
const CUT_HELPERS = `
local cutFrom, cutLoaded = nil, false
-- True when the rebuild recorded in cutKey read the record (finished at \`at\`).
local function counted(cutKey, id, at)
  if not cutLoaded then
    cutFrom = tonumber(redis.call('HGET', cutKey, '@from'))
    cutLoaded = true
  end
  if cutFrom == nil then return false end
  return at < cutFrom or redis.call('HEXISTS', cutKey, id) == 1
end
-- The lost hash of a scope hash, next to the cut hash in its slot.
local function lostKeyOf(cutKey, scope)
  local base = string.sub(cutKey, 1, #cutKey - #'counted')
  return base .. 'lost:' .. string.sub(scope, #base + #'scope:' + 1)
end
`;

// Applies one numbered settle batch exactly once; its KEYS, ARGV formats and what each share is charged:
// docs/architecture.md, "settleBatch: one batch, applied once".
export const settleBatch = new LuaScript(
  'settleBatch',
  `${PRELUDE}${LEDGER_HELPERS}${CUT_HELPERS}
  local n = #KEYS - 1
  local first, stride = 2, 4
  local records, packed, cutKey, markKey = nil, nil, nil, nil
  local tag = ARGV[2]
  if tag == 'b2' then first, stride = 3, 6 end
  if tag == 'b3' or tag == 'b4' then
    if tag == 'b3' then
      local count = tonumber(ARGV[4])
      records = {}
      for k = 1, count do records[k] = ARGV[4 + k] end
      first, stride = 5 + count, 7
    else
      packed = ARGV[4]
      first, stride = 5, 7
    end
    n = #KEYS - (ARGV[3] == '1' and 3 or 2)
    cutKey = KEYS[n + 2]
    if ARGV[3] == '1' then markKey = KEYS[n + 3] end
  end
  local seqKey = KEYS[n + 1]
  local seq = tonumber(ARGV[1])
  if seq <= (tonumber(redis.call('GET', seqKey)) or 0) then return {0} end
  redis.call('SET', seqKey, ARGV[1], 'PX', MARGIN)
  local tracking = nil
  -- What a share charges without a reservation the hash holds: its actual, less the records the rebuild read.
  local function uncounted(scope, actual, refs)
    if refs == nil or cutKey == nil then return actual end
    if tracking == nil then tracking = markKey ~= nil and redis.call('EXISTS', markKey) == 0 end
    local lostKey = tracking and lostKeyOf(cutKey, scope) or nil
    local function check(r)
      local amount, at, id = string.match(records[r], '^([^,]*),([^,]*),(.*)$')
      if counted(cutKey, id, tonumber(at)) then actual = actual - tonumber(amount)
      elseif lostKey then
        -- A record charged in several shares (a hold and its extensions) is noted with their sum.
        local noted = redis.call('HGET', lostKey, id)
        if noted then amount = fmt(tonumber(string.match(noted, ',([^,]*)$')) + tonumber(amount)) end
        redis.call('HSET', lostKey, id, at .. ',' .. amount)
      end
    end
    if packed ~= nil then
      -- 'b4': the records are read only here, where a share lost its reservation (rare); its refs are ranges "i-j".
      if records == nil then
        records = {}
        for record in string.gmatch(packed, '[^\\n]+') do records[#records + 1] = record end
      end
      for from, to in string.gmatch(refs, '(%d+)-(%d+)') do
        for r = tonumber(from), tonumber(to) do check(r) end
      end
    else
      for r in string.gmatch(refs, '[^,]+') do check(tonumber(r)) end
    end
    if actual < 0 then actual = 0 end
    if lostKey then
      redis.call('HINCRBY', lostKey, '@a', actual)
      redis.call('PEXPIRE', lostKey, MARGIN)
    end
    return actual
  end
  local states = {}
  for i = 1, n do states[i] = roll(KEYS[i]) end
  for j = first, #ARGV, stride do
    local i = tonumber(ARGV[j])
    local st = states[i]
    local t = ARGV[j + 1]
    local at = tonumber(t)
    local amount = tonumber(ARGV[j + 2])
    local actual = tonumber(ARGV[j + 3])
    local born = ARGV[j + 4]
    local periodEnd = tonumber(ARGV[j + 5])
    local refs = nil
    if stride == 7 and ARGV[j + 6] ~= '' then refs = ARGV[j + 6] end
    if st.exists and (born == nil or birth(KEYS[i], st) == born) then
      local running = st.pe ~= nil and st.pe > now
      local held = tonumber(redis.call('HGET', KEYS[i], 'h' .. t))
      if held ~= nil then
        local left = held - amount
        if left > 0 then redis.call('HSET', KEYS[i], 'h' .. t, fmt(left)) else
          redis.call('HDEL', KEYS[i], 'h' .. t)
          local kept = {}
          for u in string.gmatch(st.lb, '[^,]+') do if u ~= t then kept[#kept + 1] = u end end
          st.lb = table.concat(kept, ',')
        end
        st.r = math.max(0, st.r - amount)
        if running then st.s = st.s + actual end
      elseif running and st.pe > at then
        if at > now then st.s = st.s + actual
        else
          -- Charged its amount at expiry: corrected to the actual, unless a reset since forgot that charge (rs); the
          -- call, finished now, is then charged in full, as a rebuild counts the calls finished from a reset on.
          local resetAt = tonumber(redis.call('HGET', KEYS[i], 'rs'))
          if resetAt ~= nil and resetAt >= at then st.s = st.s + actual else st.s = st.s + actual - amount end
        end
      end
      st.dirty = true
    elseif periodEnd ~= nil and periodEnd > now then
      if not st.exists or (st.pe ~= nil and st.pe <= now) then
        st = open(KEYS[i], periodEnd)
        states[i] = st
        if st.pe == nil or periodEnd > st.pe then
          st.pe = periodEnd
          redis.call('HSET', KEYS[i], 'pe', fmt(periodEnd))
        end
        keep(KEYS[i], st, periodEnd, periodEnd)
        st.exists = true
      end
      st.s = st.s + uncounted(KEYS[i], actual, refs)
      st.dirty = true
    end
  end
  local out = {1}
  for i = 1, n do
    local st = states[i]
    if st.dirty then redis.call('HSET', KEYS[i], 's', fmt(st.s), 'r', fmt(st.r), 'lb', st.lb) end
    out[2 * i] = fmt(st.s)
    out[2 * i + 1] = fmt(st.r)
    out[1 + 2 * n + i] = fmt(st.cr)
  end
  return out
  `,
);

/** KEYS: the scope hashes. Returns (spent, reserved) per scope, then credit per scope, expired buckets charged first. */
export const ledgerUsage = new LuaScript(
  'ledgerUsage',
  `${PRELUDE}${LEDGER_HELPERS}
  local out = {}
  for i = 1, #KEYS do
    local st = roll(KEYS[i])
    out[2 * i - 1] = fmt(st.s)
    out[2 * i] = fmt(st.r)
    out[2 * #KEYS + i] = fmt(st.cr)
  end
  return out
  `,
);

/** KEYS: scope hash. Returns (expiry bucket, amount held) per live bucket, soonest first, expired buckets charged first. */
export const ledgerHolds = new LuaScript(
  'ledgerHolds',
  `${PRELUDE}${LEDGER_HELPERS}
  local st = roll(KEYS[1])
  local out = {}
  for t in string.gmatch(st.lb, '[^,]+') do
    out[#out + 1] = t
    out[#out + 1] = redis.call('HGET', KEYS[1], 'h' .. t) or '0'
  end
  return out
  `,
);

/**
 * KEYS: scope hash. ARGV: field ('s' spent, 'cr' credit), amount (zero or more), expiresAt, and 'raise' to raise the
 * field to the amount instead of adding it. Adds the amount to the field for the scope's period: a charge past a
 * reservation, or a top-up credit (kept apart from spent, so spent stays what was spent and a rebuild from a usage
 * ledger, which raises spent, never takes a credit back). Raised: the credit a credit journal recorded, never lowered.
 * Returns 1 when it wrote.
 */
export const addToScope = new LuaScript(
  'addToScope',
  `${PRELUDE}${LEDGER_HELPERS}
  local at = tonumber(ARGV[3])
  if at <= now then return 0 end
  local st = open(KEYS[1], at)
  local field = ARGV[1]
  local total = st[field] + tonumber(ARGV[2])
  if ARGV[4] == 'raise' then
    if st[field] >= tonumber(ARGV[2]) then return 0 end
    total = tonumber(ARGV[2])
  end
  if st.pe == nil or at > st.pe then
    redis.call('HSET', KEYS[1], field, fmt(total), 'pe', fmt(at))
  else
    redis.call('HSET', KEYS[1], field, fmt(total))
  end
  keep(KEYS[1], st, at, at)
  return 1
  `,
);

/**
 * KEYS: scope hash, then (gated) the slot's cut hash and rebuilt mark. ARGV: spent (what a usage ledger recorded),
 * period end. Raises the spend to that, never lowers it, never touches the credit; returns 1 when it raised it. In a
 * slot not marked rebuilt (its data lost), what lost settles charged the scope since is added to it, less what they
 * charged for records this rebuild read (its cut): each call counted once, whichever landed first.
 */
export const restoreSpent = new LuaScript(
  'restoreSpent',
  `${PRELUDE}${LEDGER_HELPERS}${CUT_HELPERS}
  local at = tonumber(ARGV[2])
  if at <= now then return 0 end
  local st = open(KEYS[1], at)
  local floor = tonumber(ARGV[1])
  if #KEYS == 3 and redis.call('EXISTS', KEYS[3]) == 0 then
    local lost = redis.call('HGETALL', lostKeyOf(KEYS[2], KEYS[1]))
    for k = 1, #lost, 2 do
      if lost[k] == '@a' then floor = floor + tonumber(lost[k + 1]) else
        local recordAt, amount = string.match(lost[k + 1], '^([^,]*),(.*)$')
        if counted(KEYS[2], lost[k], tonumber(recordAt)) then floor = floor - tonumber(amount) end
      end
    end
  end
  if st.s >= floor then return 0 end
  if st.pe == nil or at > st.pe then
    redis.call('HSET', KEYS[1], 's', fmt(floor), 'pe', fmt(at))
  else
    redis.call('HSET', KEYS[1], 's', fmt(floor))
  end
  keep(KEYS[1], st, at, at)
  return 1
  `,
);

/**
 * KEYS: the slot's cut hash, its rebuilt mark. ARGV: the cut's @from (epoch ms), then record ids. In a slot not marked
 * rebuilt, records what a rebuild read (see CUT_HELPERS): @from raised to ARGV[1], the ids added (a rebuild run again
 * for the same loss adds to what the first read). Kept a day. Returns 0 (nothing written) in a slot marked rebuilt.
 */
export const recordCut = new LuaScript(
  'recordCut',
  `${PRELUDE}
  if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
  local from = tonumber(redis.call('HGET', KEYS[1], '@from'))
  if from == nil or tonumber(ARGV[1]) > from then redis.call('HSET', KEYS[1], '@from', ARGV[1]) end
  for k = 2, #ARGV do redis.call('HSET', KEYS[1], ARGV[k], '1') end
  redis.call('PEXPIRE', KEYS[1], 86400000)
  return 1
  `,
);

/**
 * KEYS: scope hash. ARGV: from, to, period end. Sets the spend to `to` only while it is `from` (compare and set: a
 * settle landing since the caller's reading leaves it alone, to be read again); the credit and the holds stay. Returns
 * {spend found, spend left}, both '0' once the period is over.
 */
export const correctSpent = new LuaScript(
  'correctSpent',
  `${PRELUDE}${LEDGER_HELPERS}
  local at = tonumber(ARGV[3])
  if at <= now then return {'0', '0'} end
  local st = open(KEYS[1], at)
  if st.s ~= tonumber(ARGV[1]) then return {fmt(st.s), fmt(st.s)} end
  if st.pe == nil or at > st.pe then
    redis.call('HSET', KEYS[1], 's', ARGV[2], 'pe', fmt(at))
  else
    redis.call('HSET', KEYS[1], 's', ARGV[2])
  end
  keep(KEYS[1], st, at, at)
  return {fmt(st.s), ARGV[2]}
  `,
);

/**
 * KEYS: scope hash. Forgets the spend and the credit: the period starts over; live reservations stay. Notes when (rs): a
 * late settle of a hold its expiry charged before the reset is charged in full (settleBatch).
 */
export const resetScope = new LuaScript(
  'resetScope',
  `${PRELUDE}${LEDGER_HELPERS}
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  roll(KEYS[1])
  redis.call('HSET', KEYS[1], 's', '0', 'cr', '0', 'rs', fmt(now))
  return 1
  `,
);

/** Whether a key record's JSON carries a budget: the writes keep the set of budgeted ids by it. */
const KEY_BUDGETED = `
  local function budgeted(json)
    local record = cjson.decode(json)
    return record.budget ~= nil and record.budget ~= cjson.null
  end
`;

/**
 * The key indexes: sorted sets the writes keep with the record, in the same script, from its JSON before and after.
 * Two of score 0, so in byte order of their members (KeyStore.page): every id, and `<tenant>\0<id>` for each key with
 * a tenant (a tenant's ids are one range of it). One of ids by when they expire (KeyStore.expiring): epoch ms, read
 * from the record's ISO 8601 `expiresAt` (a date, a time to the minute or finer, `Z` or an offset); a writing this
 * cannot read is -1, which every read of the index takes and the caller judges with Date.parse.
 */
const KEY_INDEXES = `
  local function tenantOf(record)
    if not record then return nil end
    local tenant = record.tenantId
    if type(tenant) == 'string' then return tenant end
    return nil
  end
  local function daysFromCivil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
    return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  end
  local function expiryOf(record)
    if not record then return nil end
    local at = record.expiresAt
    if type(at) ~= 'string' then return nil end
    local y, mo, d, rest = string.match(at, '^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$')
    if not y then return -1 end
    local h, mi, sec, ms, offset = 0, 0, 0, 0, 0
    if rest ~= '' then
      local hh, mm, time = string.match(rest, '^T(%d%d):(%d%d)(.*)$')
      if not hh then return -1 end
      h, mi, rest = tonumber(hh), tonumber(mm), time
      local ss, after = string.match(rest, '^:(%d%d)(.*)$')
      if ss then sec, rest = tonumber(ss), after end
      local fraction, zone = string.match(rest, '^%.(%d+)(.*)$')
      if fraction then ms, rest = tonumber(string.sub(fraction .. '00', 1, 3)), zone end
      if rest ~= 'Z' then
        local sign, oh, om = string.match(rest, '^([%+%-])(%d%d):?(%d%d)$')
        if not sign then return -1 end
        offset = (tonumber(oh) * 60 + tonumber(om)) * 60000
        if sign == '-' then offset = -offset end
      end
    end
    local minutes = (daysFromCivil(tonumber(y), tonumber(mo), tonumber(d)) * 24 + h) * 60 + mi
    return minutes * 60000 + sec * 1000 + ms - offset
  end
  local function decoded(json)
    if not json then return nil end
    return cjson.decode(json)
  end
  local function indexKey(byId, byTenant, byExpiry, id, before, after)
    local was, now = decoded(before), decoded(after)
    local old, new = tenantOf(was), tenantOf(now)
    if old and old ~= new then redis.call('ZREM', byTenant, old .. '\\0' .. id) end
    if after then redis.call('ZADD', byId, 0, id) else redis.call('ZREM', byId, id) end
    if new then redis.call('ZADD', byTenant, 0, new .. '\\0' .. id) end
    local expiry = expiryOf(now)
    if expiry then redis.call('ZADD', byExpiry, expiry, id) else redis.call('ZREM', byExpiry, id) end
  end
`;

// Key store: a hash per key id (record JSON, sha256, disabled flag), a hash index sha256 -> id,
// and a set of ids for listing. The flag lives outside the JSON so disable needs no JSON rewrite.

// Every change publishes {id, sha, from} on the channel in ARGV, in the same script as the write,
// so processes caching records (key-cache.ts) hear of it whichever process or tool made it.
// `from` names the writing cache, which has already dropped what the change made stale.

/**
 * KEYS: key hash, index, ids, budgeted ids, ids in order, tenant ids in order, ids by expiry. ARGV: id, sha256, record
 * JSON, disabled ('1' or '0'), channel, from.
 */
export const putKey = new LuaScript(
  'putKey',
  `
${KEY_BUDGETED}${KEY_INDEXES}  local id = ARGV[1]
  local sha = ARGV[2]
  local old = redis.call('HGET', KEYS[1], 'sha256')
  indexKey(KEYS[5], KEYS[6], KEYS[7], id, redis.call('HGET', KEYS[1], 'record'), ARGV[3])
  if old and old ~= sha and redis.call('HGET', KEYS[2], old) == id then redis.call('HDEL', KEYS[2], old) end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'record', ARGV[3], 'sha256', sha, 'disabled', ARGV[4])
  redis.call('HSET', KEYS[2], sha, id)
  redis.call('SADD', KEYS[3], id)
  if budgeted(ARGV[3]) then redis.call('SADD', KEYS[4], id) else redis.call('SREM', KEYS[4], id) end
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

/**
 * A key changed in one step (KeyStore.change), a rotation's new key added in the same step: only while the record and
 * its flag are as read (ARGV 2-3), else 'changed' and the caller reads again. The flag is never cleared: a revoke
 * stays. KEYS: key hash, index, ids, added key's hash, budgeted ids, ids in order, tenant ids in order, ids by expiry. ARGV: id, record JSON read, flag read, record JSON,
 * disable ('1' or '0'), channel, from, then the added key's id, sha256 and record JSON ('' id: none).
 * Returns 'done', 'missing', 'changed' or 'taken'.
 */
export const changeKey = new LuaScript(
  'changeKey',
  `
${KEY_BUDGETED}${KEY_INDEXES}  local current = redis.call('HMGET', KEYS[1], 'record', 'disabled', 'sha256')
  if not current[1] then return 'missing' end
  local flag = current[2] or '0'
  if current[1] ~= ARGV[2] or flag ~= ARGV[3] then return 'changed' end
  local added = ARGV[8]
  if added ~= '' then
    if redis.call('EXISTS', KEYS[4]) == 1 then return 'taken' end
    redis.call('HSET', KEYS[4], 'record', ARGV[10], 'sha256', ARGV[9], 'disabled', '0')
    redis.call('HSET', KEYS[2], ARGV[9], added)
    redis.call('SADD', KEYS[3], added)
    if budgeted(ARGV[10]) then redis.call('SADD', KEYS[5], added) end
    indexKey(KEYS[6], KEYS[7], KEYS[8], added, nil, ARGV[10])
    redis.call('PUBLISH', ARGV[6], cjson.encode({id = added, sha = ARGV[9], from = ARGV[7]}))
  end
  if ARGV[5] == '1' then flag = '1' end
  redis.call('HSET', KEYS[1], 'record', ARGV[4], 'disabled', flag)
  indexKey(KEYS[6], KEYS[7], KEYS[8], ARGV[1], current[1], ARGV[4])
  if budgeted(ARGV[4]) then redis.call('SADD', KEYS[5], ARGV[1]) else redis.call('SREM', KEYS[5], ARGV[1]) end
  redis.call('PUBLISH', ARGV[6], cjson.encode({id = ARGV[1], sha = current[3], from = ARGV[7]}))
  return 'done'
  `,
);

/**
 * KEYS: key hash, index, ids, budgeted ids, ids in order, tenant ids in order, ids by expiry. ARGV: id, channel, from.
 * Returns 1 when the key existed.
 */
export const deleteKey = new LuaScript(
  'deleteKey',
  `
${KEY_INDEXES}  local sha = redis.call('HGET', KEYS[1], 'sha256')
  if not sha then return 0 end
  indexKey(KEYS[5], KEYS[6], KEYS[7], ARGV[1], redis.call('HGET', KEYS[1], 'record'), nil)
  redis.call('DEL', KEYS[1])
  if redis.call('HGET', KEYS[2], sha) == ARGV[1] then redis.call('HDEL', KEYS[2], sha) end
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('SREM', KEYS[4], ARGV[1])
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

/**
 * KEYS: budgeted ids, the mark that they were gathered, ids. ARGV: key hash prefix. Returns record JSON, disabled, ...
 * for every key whose record carries a budget. The first call on keys written before the budgeted set existed gathers
 * it from every key, once; a listed id whose key is gone leaves the set.
 */
export const listBudgetedKeys = new LuaScript(
  'listBudgetedKeys',
  `
${KEY_BUDGETED}  if redis.call('EXISTS', KEYS[2]) == 0 then
    for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
      local json = redis.call('HGET', ARGV[1] .. id, 'record')
      if json and budgeted(json) then redis.call('SADD', KEYS[1], id) end
    end
    redis.call('SET', KEYS[2], '1')
  end
  local out = {}
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local values = redis.call('HMGET', ARGV[1] .. id, 'record', 'disabled')
    if values[1] then
      out[#out + 1] = values[1]
      out[#out + 1] = values[2] or '0'
    else
      redis.call('SREM', KEYS[1], id)
    end
  end
  return out
  `,
);

/**
 * One step of building the id indexes from the set of ids, for keys written before they existed (an upgraded
 * deployment): `ARGV[2]` ids a step (SSCAN), the cursor kept in the state hash, so building never blocks Redis long
 * and steps from several processes share the work. Built, the indexes hold as many ids as the set; a count that
 * differs (a writer of an earlier version added or removed a key) builds them again. An id whose key is gone leaves
 * the set. KEYS: ids, ids in order, tenant ids in order, state, ids by expiry. ARGV: key hash prefix, ids a step. Returns 1
 * when built.
 */
export const buildKeyIndexes = new LuaScript(
  'buildKeyIndexes',
  `
${KEY_INDEXES}  local state = redis.call('HMGET', KEYS[4], 'built', 'cursor')
  local cursor = state[2]
  if state[1] == '1' then
    if redis.call('ZCARD', KEYS[2]) == redis.call('SCARD', KEYS[1]) then return 1 end
    cursor = false
  end
  if not cursor then
    redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
    cursor = '0'
  end
  local scan = redis.call('SSCAN', KEYS[1], cursor, 'COUNT', ARGV[2])
  for _, id in ipairs(scan[2]) do
    local json = redis.call('HGET', ARGV[1] .. id, 'record')
    if json then indexKey(KEYS[2], KEYS[3], KEYS[5], id, nil, json) else redis.call('SREM', KEYS[1], id) end
  end
  if scan[1] == '0' then
    redis.call('HSET', KEYS[4], 'built', '1')
    redis.call('HDEL', KEYS[4], 'cursor')
    return 1
  end
  redis.call('HSET', KEYS[4], 'cursor', scan[1])
  return 0
  `,
);

/**
 * What the scripts that read the key indexes share: whether the indexes are built and whole (KEYS: ids, ids in order,
 * state), and a key's id, record JSON and flag added to a reply.
 */
const INDEXED_READ = `
  local function indexed(ids, byId, state)
    return redis.call('HGET', state, 'built') == '1' and redis.call('ZCARD', byId) == redis.call('SCARD', ids)
  end
  local function addKey(out, prefix, id)
    local values = redis.call('HMGET', prefix .. id, 'record', 'disabled')
    if values[1] then
      out[#out + 1] = id
      out[#out + 1] = values[1]
      out[#out + 1] = values[2] or '0'
    end
  end
`;

/**
 * The keys that expire within a span (KeyStore.expiring), from the index by expiry, reading those records only, and
 * those whose expiry the index could not read (-1). KEYS: ids by expiry, ids, ids in order, state. ARGV: key hash
 * prefix, from (epoch ms), until (excluded), limit. Returns false while the indexes are not built, else id, record
 * JSON, disabled, ... for each key.
 */
export const expiringKeys = new LuaScript(
  'expiringKeys',
  `
${INDEXED_READ}  if not indexed(KEYS[2], KEYS[3], KEYS[4]) then return false end
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '(' .. ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], -1, -1, 'LIMIT', 0, tonumber(ARGV[4]))) do
    ids[#ids + 1] = id
  end
  local out = {}
  for _, id in ipairs(ids) do addKey(out, ARGV[1], id) end
  return out
  `,
);

/**
 * One page of keys in id order (KeyStore.page), from an index (every id, or the tenant ids), reading that page's
 * records only. KEYS: the index read, ids, ids in order, state. ARGV: key hash prefix, the first id ('' from the
 * start), '(' to start after it or '[' at it, the id prefix, limit, tenant, '1' when reading a tenant's ids. Returns
 * false while the indexes are not built (see buildKeyIndexes), else {more ('1' or '0'), the last id read, then id,
 * record JSON, disabled, ... for each key}.
 */
export const pageKeys = new LuaScript(
  'pageKeys',
  `
${INDEXED_READ}  if not indexed(KEYS[2], KEYS[3], KEYS[4]) then return false end
  local lead = ''
  if ARGV[7] == '1' then lead = ARGV[6] .. '\\0' end
  local upper = lead .. ARGV[4]
  local max = '+'
  if upper ~= '' then max = '[' .. upper .. '\\255' end
  local limit = tonumber(ARGV[5])
  local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[3] .. lead .. ARGV[2], max, 'LIMIT', 0, limit + 1)
  local more = '0'
  if #members > limit then more = '1' end
  local out = {more, ''}
  for i = 1, math.min(#members, limit) do
    local id = string.sub(members[i], #lead + 1)
    out[2] = id
    addKey(out, ARGV[1], id)
  end
  return out
  `,
);

/** Every script, by name: the SHA1 pin test walks this. */
export const SCRIPTS = {
  consumeWindow,
  adjustWindow,
  peekWindow,
  hitFixedWindow,
  returnFixedWindowHit,
  hitFixedWindowBy,
  returnFixedWindowHits,
  peekFixedWindow,
  reserve,
  reserveReceipts,
  settleBatch,
  ledgerUsage,
  ledgerHolds,
  addToScope,
  restoreSpent,
  correctSpent,
  recordCut,
  resetScope,
  putKey,
  findKeyByHash,
  disableKey,
  changeKey,
  deleteKey,
  listKeys,
  listBudgetedKeys,
  buildKeyIndexes,
  pageKeys,
  expiringKeys,
} as const;
