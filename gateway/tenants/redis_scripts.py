"""The Lua scripts the Redis limits backend runs: each is one atomic step on the server, one round trip.

Keys of one API key (`{id}` is a hash tag: a cluster keeps them in one slot): `rq` the sliding log of admitted
requests (member: reservation id, score: admission time in ms), `tk` the same for token reservations with `tv`
their token counts (and `=total`, their sum), `cc` the concurrency leases (score: lease end), `day` and `month`
the budgets' counters. Every key expires by itself: the logs a window after the last admission, the leases a
lease after the last admission or renewal, the budgets a day after their period.
Times are the gateway's clock in ms (replicas' clocks must agree, as NTP keeps them, to within a few ms).
"""

from __future__ import annotations

# KEYS: rq, tk, tv, cc, day, month. ARGV: now, id, tokens, rpm, tpm, concurrent, day limit, month limit,
# window, lease, day end, month end (times in ms; a limit of 0 is no limit).
# Returns: refusal ('' when admitted), requests counted, ms until the oldest leaves, tokens counted, ms until
# the oldest reservation leaves, ms until a retry may pass (-1: none).
ADMIT = """
local now, id, tokens = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local rpm, tpm, running_limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local day_limit, month_limit = tonumber(ARGV[7]), tonumber(ARGV[8])
local window, lease = tonumber(ARGV[9]), tonumber(ARGV[10])
local day_end, month_end = tonumber(ARGV[11]), tonumber(ARGV[12])
local since = now - window

local function oldest_leaves(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) + window - now end
  return 0
end
local function counter(key) return tonumber(redis.call('GET', key) or '0') end

local requests = 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', since)
  requests = redis.call('ZCARD', KEYS[1])
end
local used = 0
if tpm > 0 then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', since)
  local freed = 0
  for first = 1, #expired, 500 do
    local batch = {unpack(expired, first, math.min(first + 499, #expired))}
    for _, value in ipairs(redis.call('HMGET', KEYS[3], unpack(batch))) do freed = freed + (tonumber(value) or 0) end
    redis.call('HDEL', KEYS[3], unpack(batch))
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', since) end
  if freed > 0 then  -- (a Lua -0 would reach Redis as "-0", not an integer)
    used = redis.call('HINCRBY', KEYS[3], '=total', -freed)
  else
    used = tonumber(redis.call('HGET', KEYS[3], '=total') or '0')
  end
end
local running = 0
if running_limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  running = redis.call('ZCARD', KEYS[4])
end

local refusal, retry = '', -1
if running_limit > 0 and running >= running_limit then
  refusal, retry = 'concurrent_requests', 1000
elseif rpm > 0 and requests >= rpm then
  refusal, retry = 'requests_per_minute', oldest_leaves(KEYS[1])
elseif tpm > 0 and tokens > tpm then
  refusal = 'request_too_large'
elseif tpm > 0 and used + tokens > tpm then
  refusal, retry = 'tokens_per_minute', window
  local excess = used + tokens - tpm
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    excess = excess - (tonumber(redis.call('HGET', KEYS[3], entries[i])) or 0)
    if excess <= 0 then
      retry = tonumber(entries[i + 1]) + window - now
      break
    end
  end
elseif day_limit > 0 and counter(KEYS[5]) + tokens > day_limit then
  refusal, retry = 'tokens_per_day', day_end - now
elseif month_limit > 0 and counter(KEYS[6]) + tokens > month_limit then
  refusal, retry = 'tokens_per_month', month_end - now
end

if refusal == '' then
  if rpm > 0 then
    redis.call('ZADD', KEYS[1], now, id)
    redis.call('PEXPIRE', KEYS[1], window)
    requests = requests + 1
  end
  if tpm > 0 then
    redis.call('ZADD', KEYS[2], now, id)
    redis.call('HSET', KEYS[3], id, tokens)
    used = redis.call('HINCRBY', KEYS[3], '=total', tokens)
    redis.call('PEXPIRE', KEYS[2], window)
    redis.call('PEXPIRE', KEYS[3], window)
  end
  if running_limit > 0 then
    redis.call('ZADD', KEYS[4], now + lease, id)
    redis.call('PEXPIRE', KEYS[4], lease)
  end
  if day_limit > 0 then
    redis.call('INCRBY', KEYS[5], tokens)
    redis.call('PEXPIREAT', KEYS[5], day_end + 86400000)
  end
  if month_limit > 0 then
    redis.call('INCRBY', KEYS[6], tokens)
    redis.call('PEXPIREAT', KEYS[6], month_end + 86400000)
  end
end
return {refusal, requests, oldest_leaves(KEYS[1]), used, oldest_leaves(KEYS[2]), retry}
"""

# KEYS: rq, tk, tv, cc, day, month. ARGV: id, correction (tokens used - reserved), and whether the reservation
# charged tokens per minute, a lease, the day's budget, the month's ('1' or '0').
SETTLE = """
local id, correction = ARGV[1], tonumber(ARGV[2])
if ARGV[4] == '1' then redis.call('ZREM', KEYS[4], id) end
if correction ~= 0 then
  if ARGV[3] == '1' and redis.call('ZSCORE', KEYS[2], id) then
    redis.call('HINCRBY', KEYS[3], id, correction)
    redis.call('HINCRBY', KEYS[3], '=total', correction)
  end
  if ARGV[5] == '1' and redis.call('EXISTS', KEYS[5]) == 1 then redis.call('INCRBY', KEYS[5], correction) end
  if ARGV[6] == '1' and redis.call('EXISTS', KEYS[6]) == 1 then redis.call('INCRBY', KEYS[6], correction) end
end
return 1
"""

# KEYS: cc. ARGV: lease end, lease, the reservation ids still running (leases already gone stay gone).
RENEW = """
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
