"""The Lua scripts of `RedisState` (each one atomic multi-key update), and the key layout they share.

Keys (all under `prefix`, `gw:` by default, so deployments can share a Redis). A tenant's keys start
with `{tenant}:`, the ownership index's with `{own}:`: those are Redis Cluster hash tags, so every
script touches one slot (a tenant's, or the index's) and the same scripts run on one Redis or a cluster.

    {own}:t:{object_id}, {own}:r:{run_id}  owning tenant (of a thread, assistant, file, vector store; of a
                                        run); SET NX, TTL `ownership_ttl_s` refreshed on each look
    {own}:t:idx, {own}:r:idx            ZSET key → last use (ms); trimmed to `max_owned_objects` (LRU), if given
    {own}:forgot                        set once any claim was dropped (trimmed or expired): from then on an
                                        object with no owner reads as forgotten (denied), never as unknown
    tenants                             SET of the tenants with runs listed or a ledger: what the reconciler
                                        and the ledger walk (each replica adds its tenants again every minute)
    rec:{kind}:{id}, list:{kind}:{key}  an adapter's records and lists (one key each)

and per tenant, each under `{tenant}:`:

    rpm:{bucket}:{minute}               requests counted in that UTC minute (a sliding window counter; TTL 120 s)
    lease:{bucket}                      ZSET lease → expiry (ms, Redis's clock); a run's lease is its run id
    slots:{run_id}                      SET of the lease keys (full names) the run holds; TTL its lease's
    slots:{run_id}:released             the run's slots were released: it is not held again; TTL a day
    tpm:{tenant}:{YYYYMMDDHHMM}         tokens counted in that UTC minute (TTL 120 s)
    tpd:{tenant}:{YYYY-MM-DD}           … that UTC day (TTL a day past its end)
    tpmo:{tenant}:{YYYY-MM}             … that UTC month (TTL a day past its end)
    usdd:{owner}:{YYYY-MM-DD}           µUSD counted in that UTC day, of the tenant or of `tenant:key` (TTL as tpd)
    usdmo:{owner}:{YYYY-MM}             … that UTC month (TTL as tpmo)
    resv:{reservation}                  HASH tenant, amount, m, d, mo (its token buckets), usd, un, u1..u4 (its USD
                                        buckets), run; TTL 2 days
    run:{run_id}                        HASH thread, tenant, created, checked, key, resv; TTL 2 days
    pending                             ZSET run id → checked_at
    settled:{run_id}                    the exactly-once marker; TTL 7 days
    ledger:{YYYY-MM-DD}                 HASH '["tenant","key","model","runs|prompt|completion|total|cost"]' → count
                                        (before USD: '["tenant","model",…]', read as key "-"); TTL 400 days
    ledger:days                         ZSET (all scores 0, ordered by name) of the ledger's days

Scripts still reach keys named inside other keys (a reservation's buckets, a run's slots, evicted
owners), always of the same slot. Before the keys were tagged, the ledger was one `ledger:{day}` for
all tenants: `RedisState.usage` still reads it.
"""

PREFIX = "gw:"  # every key's, by default

_GIVE_BACK = """
local function adjust(key, delta)
  if key and redis.call('EXISTS', key) == 1 then
    if redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  end
end
local function usd_keys(resv)
  local keys = {}
  for i = 1, tonumber(redis.call('HGET', resv, 'un') or '0') do keys[i] = redis.call('HGET', resv, 'u' .. i) end
  return keys
end
local function give_back(resv)
  local r = redis.call('HMGET', resv, 'amount', 'm', 'd', 'mo', 'usd')
  if not r[1] then return 0 end
  for i = 2, 4 do adjust(r[i], -tonumber(r[1])) end
  for _, key in ipairs(usd_keys(resv)) do adjust(key, -tonumber(r[5] or '0')) end
  redis.call('DEL', resv)
  return 1
end
"""

# A claim (run inside CLAIM_AND_BIND). KEYS: the forgot flag, then (object, index) pairs. ARGV: tenant,
# ttl_s, max objects (0: no index).
_CLAIM_BODY = """
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

# A call's end (`CallEnd`): its run's slots released (mode 1) or handed to the run (mode 2, as
# HOLD_FOR_RUN), then its lease given back in the other sets. KEYS: run's slots, its released mark,
# the run's lease sets (mode 2), the call's other lease sets. ARGV: mode (0: no run), run id, lease,
# ttl_ms, the released mark's TTL (s), how many run lease sets.
END_CALL = """
local mode, run, lease = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local first_other = 3
if mode == 1 then
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do redis.call('ZREM', key, run) end
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[5])
elseif mode == 2 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ttl, n = tonumber(ARGV[4]), tonumber(ARGV[6])
  local released = redis.call('EXISTS', KEYS[2]) == 1
  for i = 3, 2 + n do
    redis.call('ZREM', KEYS[i], lease)
    if not released then
      redis.call('ZADD', KEYS[i], now + ttl, run)
      if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
      redis.call('SADD', KEYS[1], KEYS[i])
    end
  end
  if not released and n > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
  first_other = 3 + n
end
for i = first_other, #KEYS do redis.call('ZREM', KEYS[i], lease) end
return 1
"""

# KEYS: run's slots, its released mark. ARGV: run id, the mark's TTL (s).
RELEASE_RUN = """
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do redis.call('ZREM', key, ARGV[1]) end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 1
"""

# KEYS: reservation, then the buckets: minute, day, month (tokens), then 0 or 4 USD buckets.
# ARGV: tenant, reservation TTL, tokens, µUSD, then per bucket: its limit (-1: none), its TTL.
# → {ok, index of the refusing bucket (1-7), minute bucket after (ok) or before (refused), refusing bucket's use}
_RESERVE = """
local function reserve(KEYS, ARGV)
  local n = #KEYS - 1
  local used = {}
  for i = 1, n do used[i] = tonumber(redis.call('GET', KEYS[i + 1]) or '0') end
  if redis.call('EXISTS', KEYS[1]) == 1 then return {1, 0, used[1], 0} end
  local function amount(i) if i <= 3 then return tonumber(ARGV[3]) end return tonumber(ARGV[4]) end
  for i = 1, n do
    local limit = tonumber(ARGV[3 + 2 * i])
    if limit >= 0 and used[i] + amount(i) > limit then return {0, i, used[1], used[i]} end
  end
  for i = 1, n do
    redis.call('INCRBY', KEYS[i + 1], amount(i))
    if redis.call('TTL', KEYS[i + 1]) < 0 then redis.call('EXPIRE', KEYS[i + 1], ARGV[4 + 2 * i]) end
  end
  redis.call('HSET', KEYS[1], 'tenant', ARGV[1], 'amount', ARGV[3], 'm', KEYS[2], 'd', KEYS[3], 'mo', KEYS[4],
    'usd', ARGV[4], 'un', n - 3)
  for i = 4, n do redis.call('HSET', KEYS[1], 'u' .. (i - 3), KEYS[i + 1]) end
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {1, 0, used[1] + amount(1), 0}
end
"""

# A call's whole admission, all or nothing: its request windows, then its leases, then its reservation
# (RESERVE's, below). KEYS: the reservation (or a placeholder), each window's counters (this minute's,
# the previous), each lease set, the reservation's buckets. ARGV: now (unix s), windows, leases,
# buckets (counts), the lease, its TTL (ms), the counters' TTL; then per window its limit; per lease
# its limit; then RESERVE's ARGV. The windows' math is `semantics.rate_check`'s.
# → {stage refused (0 none, 1 window, 2 lease, 3 reservation), index, then per window: previous,
#    current; per lease: held (with this one), ms until the oldest expires; then RESERVE's reply}
ADMIT = _RESERVE + """
local now = tonumber(ARGV[1])
local n_rates, n_leases, n_buckets = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lease, lease_ttl, rate_ttl = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local into = (now % 60) / 60
local out = {0, 0}
local refused = nil
for i = 1, n_rates do
  local current = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local previous = tonumber(redis.call('GET', KEYS[2 * i + 1]) or '0')
  out[#out + 1] = previous
  out[#out + 1] = current
  if not refused and previous * (1 - into) + current + 1 > tonumber(ARGV[7 + i]) then refused = {1, i} end
end
if refused then out[1], out[2] = refused[1], refused[2] return out end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first_lease = 2 + 2 * n_rates
for i = 1, n_leases do
  local key = KEYS[first_lease + i - 1]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  local held = redis.call('ZCARD', key)
  local renewed = redis.call('ZSCORE', key, lease)
  if not renewed then held = held + 1 end
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  out[#out + 1] = held
  out[#out + 1] = oldest[2] and (tonumber(oldest[2]) - now_ms) or lease_ttl
  if not refused and not renewed and held > tonumber(ARGV[7 + n_rates + i]) then refused = {2, i} end
end
if refused then out[1], out[2] = refused[1], refused[2] return out end
local first_bucket = first_lease + n_leases
local reply = {1, 0, 0, 0}
if n_buckets > 0 then
  local keys = {KEYS[1]}
  for i = 0, n_buckets - 1 do keys[#keys + 1] = KEYS[first_bucket + i] end
  local args = {}
  for i = 8 + n_rates + n_leases, #ARGV do args[#args + 1] = ARGV[i] end
  reply = reserve(keys, args)
  if reply[1] == 0 then
    out[1], out[2] = 3, reply[2]
    for _, v in ipairs(reply) do out[#out + 1] = v end
    return out
  end
end
for i = 1, n_rates do
  redis.call('INCR', KEYS[2 * i])
  if redis.call('TTL', KEYS[2 * i]) < 0 then redis.call('EXPIRE', KEYS[2 * i], rate_ttl) end
end
for i = 1, n_leases do
  local key = KEYS[first_lease + i - 1]
  redis.call('ZADD', key, now_ms + lease_ttl, lease)
  if redis.call('PTTL', key) < lease_ttl then redis.call('PEXPIRE', key, lease_ttl) end
end
for _, v in ipairs(reply) do out[#out + 1] = v end
return out
"""



# KEYS: reservation, run, pending, settled marker.
# ARGV: run id, thread, tenant, created, checked, ttl, reservation id, pending cutoff, key.
_BIND_BODY = """
if redis.call('EXISTS', KEYS[4]) == 1 then
  give_back(KEYS[1])
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[8])
redis.call('HSET', KEYS[2], 'thread', ARGV[2], 'tenant', ARGV[3], 'created', ARGV[4], 'checked', ARGV[5],
  'key', ARGV[9])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[2], 'resv', ARGV[7])
  redis.call('HSET', KEYS[1], 'run', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
return 1
"""
BIND = _GIVE_BACK + _BIND_BODY


# KEYS: settled marker, run, pending, ledger day, ledger days, the minute/day/month buckets of now.
# ARGV: run id, has usage (1/0), prompt, completion, total, settled TTL, ledger TTL, day, oldest day kept,
#       tenant, model, key (unless the run was bound with its own), cost (µUSD), 3 bucket TTLs,
#       reservation key prefix, USD day and month bucket prefixes, now's day and month names.
# The ledger's fields are JSON arrays [tenant, key, model, runs|prompt|completion|total|cost].
SETTLE = (
    _GIVE_BACK
    + """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[6]) then return 0 end
local has_usage = ARGV[2] == '1'
local total = tonumber(ARGV[5])
local cost = tonumber(ARGV[13])
local run = redis.call('HMGET', KEYS[2], 'resv', 'key')
local key = run[2] or ARGV[12]
local r = {false}
local resv = nil
if run[1] then
  resv = ARGV[17] .. run[1]
  r = redis.call('HMGET', resv, 'amount', 'm', 'd', 'mo', 'usd')
end
local function charge(bucket, amount, ttl)
  redis.call('INCRBY', bucket, amount)
  if redis.call('TTL', bucket) < 0 then redis.call('EXPIRE', bucket, ttl) end
end
local reserved_usd = {}
if r[1] then
  reserved_usd = usd_keys(resv)
  if has_usage then
    for i = 2, 4 do adjust(r[i], total - tonumber(r[1])) end
    for _, bucket in ipairs(reserved_usd) do adjust(bucket, cost - tonumber(r[5] or '0')) end
  end
  redis.call('DEL', resv)
elseif has_usage and total > 0 then
  for i = 6, 8 do charge(KEYS[i], total, ARGV[i + 8]) end
end
if has_usage and cost > 0 and #reserved_usd == 0 then
  for _, owner in ipairs({ARGV[10], ARGV[10] .. ':' .. key}) do
    charge(ARGV[18] .. owner .. ':' .. ARGV[20], cost, ARGV[15])
    charge(ARGV[19] .. owner .. ':' .. ARGV[21], cost, ARGV[16])
  end
end
local function field(metric) return cjson.encode({ARGV[10], key, ARGV[11], metric}) end
redis.call('HINCRBY', KEYS[4], field('runs'), 1)
if has_usage then
  redis.call('HINCRBY', KEYS[4], field('prompt'), ARGV[3])
  redis.call('HINCRBY', KEYS[4], field('completion'), ARGV[4])
  redis.call('HINCRBY', KEYS[4], field('total'), ARGV[5])
  redis.call('HINCRBY', KEYS[4], field('cost'), ARGV[13])
end
redis.call('EXPIRE', KEYS[4], ARGV[7])
redis.call('ZADD', KEYS[5], 0, ARGV[8])
redis.call('ZREMRANGEBYLEX', KEYS[5], '-', '(' .. ARGV[9])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""
)

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


def _function(name: str, body: str) -> str:
    """A script's body as a Lua function of its own KEYS and ARGV, to run inside another script."""
    return f"local function {name}(KEYS, ARGV)\n{body}\nend\n"


# A run's claim and its bind (`StateStore.claim` with `bind`), at once. KEYS: CLAIM's, then BIND's (if
# any). ARGV: how many of KEYS are CLAIM's, CLAIM's ARGV (3), then BIND's.
CLAIM_AND_BIND = _GIVE_BACK + _function("claim", _CLAIM_BODY) + _function("bind", _BIND_BODY) + """
local n = tonumber(ARGV[1])
local claim_keys, bind_keys, bind_args = {}, {}, {}
for i = 1, #KEYS do
  if i <= n then claim_keys[#claim_keys + 1] = KEYS[i] else bind_keys[#bind_keys + 1] = KEYS[i] end
end
for i = 5, #ARGV do bind_args[#bind_args + 1] = ARGV[i] end
claim(claim_keys, {ARGV[2], ARGV[3], ARGV[4]})
if #bind_keys > 0 then bind(bind_keys, bind_args) end
return 1
"""
