// The guard's Redis scripts: one per atomic operation, called by SHA through the stores' sendCommand (EVAL on NOSCRIPT).
import { LuaScript } from '@tollgate/redis/lua';

// `now`: the caller's clock when ARGV holds one (tests replay a fixed clock), else Redis TIME in ms.
const NOW = (index: number) => `
local now = tonumber(ARGV[${index}])
if now == nil then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
`;

/** ARGV positions of the detector's settings in `observeSubject` (spend-anomaly-options.ts builds them in this order). */
const OBSERVE_ARGS = {
  bucketMs: 1,
  ttlMs: 2,
  now: 3,
  params: 4,
  /** spend, tokens, requests, largest spend, largest tokens */
  increments: 27,
  addresses: 32,
} as const;

/**
 * KEYS: the subject's state (one string: struct-packed doubles), its address HyperLogLog.
 * ARGV: see OBSERVE_ARGS. The state layout (1-based): 1 bucket, 2 seen, 3 quietUntil, 4 recentCount,
 * 5-8 current, 9-10 largest, 11-12 unit, 13-32 baseline (5 per metric), 33- recent (lag x 4).
 * Returns 0, or the finding: metric index, bucket, value, expected, z, sd, score, seen (as strings).
 * The steps are baseline.ts's, in the same order (a test replays one history through both): history
 * is seen + recentCount, and a bucket joins the baselines at once while they hold under minBuckets.
 */
export const observeSubject = new LuaScript(
  'guardObserve',
  `${NOW(OBSERVE_ARGS.now)}
  local bucketMs = tonumber(ARGV[1])
  local ttl = tonumber(ARGV[2])
  local zScore = tonumber(ARGV[4])
  local minBuckets = tonumber(ARGV[5])
  local minSpend = tonumber(ARGV[6])
  local minRequests = tonumber(ARGV[7])
  local quietBuckets = tonumber(ARGV[8])
  local fastAlpha = tonumber(ARGV[9])
  local slowAlpha = tonumber(ARGV[10])
  local rf = {tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])}
  local af = {tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18])}
  local ef = {tonumber(ARGV[19]), tonumber(ARGV[20]), tonumber(ARGV[21]), tonumber(ARGV[22])}
  local drift = tonumber(ARGV[23])
  local stepCap = tonumber(ARGV[24])
  local clipZ = tonumber(ARGV[25])
  local lag = tonumber(ARGV[26])
  local M = 4
  local W = 5
  local T = 2
  local BASE = 13
  local RECENT = 33
  local bucket = math.floor(now / bucketMs)
  local size = 32 + lag * M
  local layout = '<' .. string.rep('d', size)
  local s = nil
  local raw = redis.call('GET', KEYS[1])
  if raw and #raw == size * 8 then
    s = {struct.unpack(layout, raw)}
    s[size + 1] = nil
  else
    s = {}
    for i = 1, size do s[i] = 0 end
    s[1] = bucket
  end

  local function floorOf(m)
    if m < T then return af[m + 1] * math.sqrt(s[11 + m]) end
    return af[m + 1]
  end
  local function sdOf(mean, variance, floor, rel)
    local r = rel * mean
    local v = variance
    if r * r > v then v = r * r end
    return math.sqrt(v + floor * floor)
  end
  local function scoreOf(m, y)
    local at = BASE + W * m
    local floor = floorOf(m)
    local rel = rf[m + 1]
    local fastSd = sdOf(s[at], s[at + 1], floor, rel)
    local slowSd = sdOf(s[at + 2], s[at + 3], floor, rel)
    if not (fastSd > 0 and slowSd > 0) then return 0 end
    local fastZ = (y - s[at]) / fastSd
    local slowZ = (y - s[at + 2]) / slowSd
    return math.min(fastZ, 2 * slowZ)
  end
  local function judgedOf(m)
    if m < T then return math.max(0, s[5 + m] - s[9 + m]) end
    return s[5 + m]
  end
  local function join(slot)
    local n = s[2]
    local fast = math.max(fastAlpha, 1 / (n + 1))
    local slow = math.max(slowAlpha, 1 / (n + 1))
    local trusted = n >= minBuckets
    for m = 0, M - 1 do
      local y = s[slot + m]
      local at = BASE + W * m
      if trusted then
        local ceiling = s[at] + clipZ * sdOf(s[at], s[at + 1], floorOf(m), rf[m + 1])
        if y > ceiling then y = ceiling end
      end
      local d = y - s[at]
      s[at] = s[at] + fast * d
      s[at + 1] = (1 - fast) * (s[at + 1] + fast * d * d)
      d = y - s[at + 2]
      s[at + 2] = s[at + 2] + slow * d
      s[at + 3] = (1 - slow) * (s[at + 3] + slow * d * d)
    end
    s[2] = n + 1
  end
  local function joinOldest()
    join(RECENT)
    for i = RECENT, RECENT + (lag - 1) * M - 1 do s[i] = s[i + M] end
    s[4] = s[4] - 1
  end
  local function close(values)
    if s[4] == lag then joinOldest() end
    local judgeable = s[2] + s[4] >= minBuckets
    local at = RECENT + s[4] * M
    for m = 0, M - 1 do
      local y = math.sqrt(values[m + 1])
      s[at + m] = y
      if judgeable then
        local c = BASE + W * m + 4
        s[c] = math.max(0, s[c] + math.min(scoreOf(m, y), stepCap) - drift)
      end
    end
    s[4] = s[4] + 1
    while s[2] < minBuckets and s[4] > 0 do joinOldest() end
  end
  local function roll(to)
    local totals = {judgedOf(0), judgedOf(1), judgedOf(2), judgedOf(3)}
    local requests = s[7]
    if requests > 0 then
      for m = 0, T - 1 do
        local per = s[5 + m] / requests
        if s[11 + m] == 0 then s[11 + m] = per else s[11 + m] = s[11 + m] + fastAlpha * (per - s[11 + m]) end
      end
    end
    close(totals)
    local gap = to - s[1] - 1
    local exact = math.min(gap, 32)
    local zeros = {0, 0, 0, 0}
    for i = 1, exact do close(zeros) end
    local rest = gap - exact
    if rest > 0 then
      local fastKeep = (1 - fastAlpha) ^ rest
      local slowKeep = (1 - slowAlpha) ^ rest
      for m = 0, M - 1 do
        local at = BASE + W * m
        s[at] = s[at] * fastKeep
        s[at + 1] = s[at + 1] * fastKeep
        s[at + 2] = s[at + 2] * slowKeep
        s[at + 3] = s[at + 3] * slowKeep
        s[at + 4] = 0
      end
      s[2] = s[2] + rest
    end
    s[1] = to
    for i = 5, 10 do s[i] = 0 end
  end
  local function judge()
    if s[2] + s[4] < minBuckets or s[1] < s[3] then return nil end
    if s[5] < minSpend or s[7] < minRequests then return nil end
    local best = nil
    for m = 0, M - 1 do
      local x = judgedOf(m)
      if x > 0 then
        local at = BASE + W * m
        local z = scoreOf(m, math.sqrt(x))
        local sustained = s[at + 4] + math.min(z, stepCap) - drift
        local threshold = zScore * ef[m + 1]
        if z >= threshold or sustained >= threshold then
          local score = math.max(z, sustained)
          if best == nil or score > best[7] then
            best = {m, s[1], x, s[at] * s[at], z, sdOf(s[at], s[at + 1], floorOf(m), rf[m + 1]), score, s[2]}
          end
        end
      end
    end
    return best
  end

  if bucket > s[1] then
    roll(bucket)
    redis.call('DEL', KEYS[2])
  end
  local first = ${OBSERVE_ARGS.increments}
  s[5] = s[5] + tonumber(ARGV[first])
  s[6] = s[6] + tonumber(ARGV[first + 1])
  s[7] = s[7] + tonumber(ARGV[first + 2])
  local largestSpend = tonumber(ARGV[first + 3])
  local largestTokens = tonumber(ARGV[first + 4])
  if largestSpend > s[9] then s[9] = largestSpend end
  if largestTokens > s[10] then s[10] = largestTokens end
  if #ARGV >= ${OBSERVE_ARGS.addresses} then
    redis.call('PFADD', KEYS[2], unpack(ARGV, ${OBSERVE_ARGS.addresses}))
    redis.call('PEXPIRE', KEYS[2], 2 * bucketMs)
    s[8] = redis.call('PFCOUNT', KEYS[2])
  end
  local found = judge()
  if found then s[3] = s[1] + quietBuckets end
  redis.call('SET', KEYS[1], struct.pack(layout, unpack(s)), 'PX', ttl)
  if not found then return 0 end
  for i = 1, #found do found[i] = string.format('%.17g', found[i]) end
  return found
  `,
);

/** KEYS: the subject's state. ARGV: lag buckets. Returns the state's numbers as strings, or 0 when there is none. */
export const inspectSubject = new LuaScript(
  'guardInspect',
  `
  local size = 32 + tonumber(ARGV[1]) * 4
  local raw = redis.call('GET', KEYS[1])
  if not raw or #raw ~= size * 8 then return 0 end
  local s = {struct.unpack('<' .. string.rep('d', size), raw)}
  local out = {}
  for i = 1, size do out[i] = string.format('%.17g', s[i]) end
  return out
  `,
);

// Mitigations: KEYS[1] a hash "<kind>|<subject>" -> JSON, KEYS[2] a sorted set of their ends, KEYS[3] the version.
// Every change bumps the version and is published with it, so a process can tell a missed message.
const DROP_ENDED = `
local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)
for _, field in ipairs(ended) do
  redis.call('HDEL', KEYS[1], field)
  redis.call('ZREM', KEYS[2], field)
end
`;

/**
 * ARGV: kind, subject, reason, scale ('' none), anomalyId ('' none), durationMs ('' none), channel, now ('' = TIME).
 * Returns {version, mitigation JSON}.
 */
export const putMitigation = new LuaScript(
  'guardPutMitigation',
  `${NOW(8)}${DROP_ENDED}
  local field = ARGV[1] .. '|' .. ARGV[2]
  local mitigation = {kind = ARGV[1], subject = ARGV[2], reason = ARGV[3], at = now}
  if ARGV[4] ~= '' then mitigation.scale = tonumber(ARGV[4]) end
  if ARGV[5] ~= '' then mitigation.anomalyId = ARGV[5] end
  if ARGV[6] ~= '' then
    mitigation['until'] = now + tonumber(ARGV[6])
    redis.call('ZADD', KEYS[2], mitigation['until'], field)
  else
    redis.call('ZREM', KEYS[2], field)
  end
  local json = cjson.encode(mitigation)
  redis.call('HSET', KEYS[1], field, json)
  local version = redis.call('INCR', KEYS[3])
  redis.call('PUBLISH', ARGV[7], '{"version":' .. version .. ',"op":"put","mitigation":' .. json .. '}')
  return {version, json}
  `,
);

/** ARGV: kind, subject, channel, now ('' = TIME). Returns the lifted mitigation's JSON when one was in force, else 0. */
export const deleteMitigation = new LuaScript(
  'guardDeleteMitigation',
  `${NOW(4)}
  local field = ARGV[1] .. '|' .. ARGV[2]
  local json = redis.call('HGET', KEYS[1], field)
  if not json then return 0 end
  redis.call('HDEL', KEYS[1], field)
  redis.call('ZREM', KEYS[2], field)
  local version = redis.call('INCR', KEYS[3])
  redis.call('PUBLISH', ARGV[3], cjson.encode({version = version, op = 'delete', kind = ARGV[1], subject = ARGV[2]}))
  local ends = cjson.decode(json)['until']
  if ends ~= nil and ends <= now then return 0 end
  return json
  `,
);

/** ARGV: now ('' = TIME). Returns {version, JSON...} of every mitigation in force. */
export const listMitigations = new LuaScript(
  'guardListMitigations',
  `${NOW(1)}
  local version = tonumber(redis.call('GET', KEYS[3]) or '0')
  local out = {version}
  local ended = {}
  for _, field in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do ended[field] = true end
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if not ended[all[i]] then out[#out + 1] = all[i + 1] end
  end
  return out
  `,
);

/** KEYS: the anomaly log. ARGV: anomaly JSON, how many to keep. */
export const pushAnomaly = new LuaScript(
  'guardPushAnomaly',
  `
  redis.call('LPUSH', KEYS[1], ARGV[1])
  redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
  return 1
  `,
);

/**
 * KEYS: the address's failure window (hash: s = start, c = count), its set of credential digests.
 * ARGV: windowMs, credential digest, now ('' = TIME). The window opens at the first failure.
 * Returns {failures, distinct credentials, window start}.
 */
export const countAuthFailure = new LuaScript(
  'guardAuthFailure',
  `${NOW(3)}
  local window = tonumber(ARGV[1])
  local start = tonumber(redis.call('HGET', KEYS[1], 's'))
  if start == nil or start + window <= now then
    start = now
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 's', start, 'c', 0)
    redis.call('PEXPIREAT', KEYS[1], start + window)
  end
  local failures = redis.call('HINCRBY', KEYS[1], 'c', 1)
  if redis.call('SCARD', KEYS[2]) < 1000 then
    redis.call('SADD', KEYS[2], ARGV[2])
    redis.call('PEXPIREAT', KEYS[2], start + window)
  end
  return {failures, redis.call('SCARD', KEYS[2]), start}
  `,
);

/**
 * The abuse watch's sums of one bucket. KEYS: the bucket's hash ("<subject>\x1f<count>" -> sum, "<subject>\x1f<mark>"
 * -> 1), its version (counts the writes from Redis's clock in µs when the bucket was created: a bucket lost and
 * written again does not repeat a version a reader holds, even when its log's first entry gets the lost one's id, as it
 * does within the same millisecond), its log (a stream: each write's version and the fields it changed with their
 * values after it, as a JSON array of field, value, ...; at most ARGV[4] entries). A reader that holds the bucket as of
 * a version reads the log's entries since, when they follow on without a gap, instead of the whole bucket. ARGV: ttl
 * ms, the most fields the bucket may hold, n, the log's length, then n pairs of (field, increment), then the mark
 * fields. A full bucket only adds to the fields it holds.
 */
export const addAbuseTallies = new LuaScript(
  'guardAddAbuseTallies',
  `
  local full = redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[2])
  local pairs = tonumber(ARGV[3])
  local changed = {}
  for i = 5, 4 + 2 * pairs, 2 do
    if not full or redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
      changed[#changed + 1] = ARGV[i]
      changed[#changed + 1] = redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
    end
  end
  if not full then
    for i = 5 + 2 * pairs, #ARGV do
      if redis.call('HSETNX', KEYS[1], ARGV[i], 1) == 1 then
        changed[#changed + 1] = ARGV[i]
        changed[#changed + 1] = '1'
      end
    end
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  if redis.call('EXISTS', KEYS[2]) == 0 then
    local time = redis.call('TIME')
    redis.call('SET', KEYS[2], time[1] .. string.format('%06d', tonumber(time[2])))
  end
  local version = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  local entry = '[]'
  if #changed > 0 then entry = cjson.encode(changed) end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'v', version, 'd', entry)
  redis.call('PEXPIRE', KEYS[3], ARGV[1])
  return 1
  `,
);
