"""The Lua scripts of `RedisState` (each one atomic multi-key update), and the key layout they share.

Keys (all under `prefix`, `gw:` by default, so deployments can share a Redis):

    own:t:{object_id}, own:r:{run_id}   owning tenant (of a thread, assistant, file, vector store; of a run);
                                        SET NX, TTL `ownership_ttl_s` refreshed on each look
    own:t:idx, own:r:idx                ZSET key → last use (ms); trimmed to `max_owned_objects` (LRU), if given
    own:forgot                          set once any claim was dropped (trimmed or expired): from then on an
                                        object with no owner reads as forgotten (denied), never as unknown
    limits:{key}                        requests per minute: the `limits` moving window (a list of timestamps)
    lease:{key}                         ZSET lease → expiry (ms, Redis's clock); a run's lease is its run id
    slots:{run_id}                      SET of the lease keys (full names) the run holds; TTL its lease's
    slots:{run_id}:released             the run's slots were released: it is not held again; TTL a day
    tpm:{tenant}:{YYYYMMDDHHMM}         tokens counted in that UTC minute (TTL 120 s)
    tpd:{tenant}:{YYYY-MM-DD}           … that UTC day (TTL a day past its end)
    tpmo:{tenant}:{YYYY-MM}             … that UTC month (TTL a day past its end)
    resv:{reservation}                  HASH tenant, amount, m, d, mo (its bucket keys), run; TTL 2 days
    run:{run_id}                        HASH thread, tenant, created, checked, resv; TTL 2 days
    pending                             ZSET run id → checked_at
    settled:{run_id}                    the exactly-once marker; TTL 7 days
    ledger:{YYYY-MM-DD}                 HASH '["tenant","model","runs|prompt|completion|total"]' → count; TTL 400 days
    ledger:days                         ZSET (all scores 0, ordered by name) of the ledger's days

Scripts reach keys named inside other keys (a reservation's buckets, evicted owners), so the store
needs a standalone Redis (or one shard: give a hash-tagged prefix such as `{gw}:`).
"""

_GIVE_BACK = """
local function give_back(resv)
  local r = redis.call('HMGET', resv, 'amount', 'm', 'd', 'mo')
  if not r[1] then return 0 end
  local amount = tonumber(r[1])
  for i = 2, 4 do
    if r[i] and redis.call('EXISTS', r[i]) == 1 then
      if redis.call('DECRBY', r[i], amount) < 0 then redis.call('SET', r[i], 0, 'KEEPTTL') end
    end
  end
  redis.call('DEL', resv)
  return 1
end
"""

# KEYS: the forgot flag, then (object, index) pairs. ARGV: tenant, ttl_s, max objects (0: no index).
CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[3])
for i = 2, #KEYS, 2 do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'EX', ARGV[2]) and max > 0 then
    redis.call('ZADD', KEYS[i + 1], now, KEYS[i])
    local dropped = redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now - tonumber(ARGV[2]) * 1000)
    local extra = redis.call('ZCARD', KEYS[i + 1]) - max
    if extra > 0 then
      local evicted = redis.call('ZPOPMIN', KEYS[i + 1], extra)
      for j = 1, #evicted, 2 do redis.call('DEL', evicted[j]) end
      dropped = dropped + extra
    end
    if dropped > 0 then redis.call('SET', KEYS[1], 1) end
  end
end
return 1
"""

# KEYS: the forgot flag, the index, then the objects. ARGV: ttl_s, max objects (0: no index), the
# forgotten marker. → each object's owner; '' for none (or the marker, once anything was forgotten)
OWNERS = """
local forgot = redis.call('EXISTS', KEYS[1]) == 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found = {}
for i = 3, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner then
    redis.call('EXPIRE', KEYS[i], ARGV[1])
    if tonumber(ARGV[2]) > 0 then redis.call('ZADD', KEYS[2], 'XX', now, KEYS[i]) end
    found[#found + 1] = owner
  elseif forgot then
    found[#found + 1] = ARGV[3]
  else
    found[#found + 1] = ''
  end
end
return found
"""

# KEYS: lease set. ARGV: lease, limit, ttl_ms. → {ok, remaining, ms until the oldest lease expires}
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
local count = redis.call('ZCARD', KEYS[1])
if not held and count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = ttl
  if oldest[2] then wait = tonumber(oldest[2]) - now end
  return {0, 0, wait}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
if not held then count = count + 1 end
return {1, limit - count, 0}
"""

# KEYS: run's slots, its released mark, the lease sets. ARGV: run id, the call's lease, ttl_ms.
HOLD_FOR_RUN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local released = redis.call('EXISTS', KEYS[2]) == 1
for i = 3, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[2])
  if not released then
    redis.call('ZADD', KEYS[i], now + ttl, ARGV[1])
    if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
    redis.call('SADD', KEYS[1], KEYS[i])
  end
end
if not released and #KEYS > 2 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

# KEYS: run's slots, its released mark. ARGV: run id, the mark's TTL (s).
RELEASE_RUN = """
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do redis.call('ZREM', key, ARGV[1]) end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 1
"""

# KEYS: reservation, minute, day, month buckets.
# ARGV: amount, 3 limits (-1: none), 3 bucket TTLs, reservation TTL, tenant.
# → {ok, index of the refusing limit (1-3), minute bucket after (ok) or before (refused)}
RESERVE = """
local amount = tonumber(ARGV[1])
local used = {}
for i = 1, 3 do used[i] = tonumber(redis.call('GET', KEYS[i + 1]) or '0') end
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, 0, used[1]} end
for i = 1, 3 do
  local limit = tonumber(ARGV[i + 1])
  if limit >= 0 and used[i] + amount > limit then return {0, i, used[1]} end
end
for i = 1, 3 do
  redis.call('INCRBY', KEYS[i + 1], amount)
  if redis.call('TTL', KEYS[i + 1]) < 0 then redis.call('EXPIRE', KEYS[i + 1], ARGV[i + 4]) end
end
redis.call('HSET', KEYS[1], 'tenant', ARGV[9], 'amount', amount, 'm', KEYS[2], 'd', KEYS[3], 'mo', KEYS[4])
redis.call('EXPIRE', KEYS[1], ARGV[8])
return {1, 0, used[1] + amount}
"""

# KEYS: reservation, run, pending, settled marker.
# ARGV: run id, thread, tenant, created, checked, ttl, reservation id, pending cutoff.
BIND = (
    _GIVE_BACK
    + """
if redis.call('EXISTS', KEYS[4]) == 1 then
  give_back(KEYS[1])
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[8])
redis.call('HSET', KEYS[2], 'thread', ARGV[2], 'tenant', ARGV[3], 'created', ARGV[4], 'checked', ARGV[5])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[2], 'resv', ARGV[7])
  redis.call('HSET', KEYS[1], 'run', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
return 1
"""
)

# KEYS: settled marker, run, pending, ledger day, ledger days, the minute/day/month buckets of now.
# ARGV: run id, has usage (1/0), prompt, completion, total, settled TTL, ledger TTL, day, oldest day kept,
#       4 ledger fields (runs, prompt, completion, total), 3 bucket TTLs, reservation key prefix.
SETTLE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[6]) then return 0 end
local has_usage = ARGV[2] == '1'
local total = tonumber(ARGV[5])
local resv_id = redis.call('HGET', KEYS[2], 'resv')
local r = {false}
local resv = nil
if resv_id then
  resv = ARGV[17] .. resv_id
  r = redis.call('HMGET', resv, 'amount', 'm', 'd', 'mo')
end
if r[1] then
  if has_usage then
    local delta = total - tonumber(r[1])
    if delta ~= 0 then
      for i = 2, 4 do
        if r[i] and redis.call('EXISTS', r[i]) == 1 then
          if redis.call('INCRBY', r[i], delta) < 0 then redis.call('SET', r[i], 0, 'KEEPTTL') end
        end
      end
    end
  end
  redis.call('DEL', resv)
elseif has_usage and total > 0 then
  for i = 6, 8 do
    redis.call('INCRBY', KEYS[i], total)
    if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[i + 8]) end
  end
end
redis.call('HINCRBY', KEYS[4], ARGV[10], 1)
if has_usage then
  redis.call('HINCRBY', KEYS[4], ARGV[11], ARGV[3])
  redis.call('HINCRBY', KEYS[4], ARGV[12], ARGV[4])
  redis.call('HINCRBY', KEYS[4], ARGV[13], ARGV[5])
end
redis.call('EXPIRE', KEYS[4], ARGV[7])
redis.call('ZADD', KEYS[5], 0, ARGV[8])
redis.call('ZREMRANGEBYLEX', KEYS[5], '-', '(' .. ARGV[9])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

CANCEL = _GIVE_BACK + "\nreturn give_back(KEYS[1])\n"

# KEYS: run, pending. ARGV: run id, now.
TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'checked', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""
