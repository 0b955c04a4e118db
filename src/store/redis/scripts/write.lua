-- One conditional write of a session hash (fields: src/session/record.rs), keeping the
-- user index of its slot in step. Mirrors MemoryStore::write; the conformance suite
-- checks both.
--
-- KEYS[1]  the session key to write: <ns>:{<tag>}:s:<member>
-- KEYS[2]  the user index of the same slot: <ns>:{<tag>}:u
-- KEYS[3]  (rotate only) the current key, renamed to KEYS[1] first; same slot
-- ARGV[1]  mode: 'c' create (only if absent) | 'u' update (only if present)
--          | 'r' rotate | 'l' login (create + user index + session limit)
-- ARGV[2]  now, Unix ms (application clock)
-- ARGV[3]  default idle timeout, ms (used when the record has no m:i)
-- ARGV[4]  '1': delete every d: field before the rest
-- ARGV[5]  login: the user's session limit, 0 for none
-- ARGV[6]  login: 'r' reject at the limit | 'e' evict the least recently active
-- ARGV[7]  n, the number of fields to set; ARGV[8 .. 7+2n] field/value pairs;
--          every later ARGV is a field to delete
-- Returns strings: {ttl, evicted handles...} when written (ttl > 0, ms); {'0'} if the
-- session is gone (or passed its deadline and was deleted); {'-1'} if the target key
-- exists; {'-2'} if the login was rejected by the limit.
local key, index = KEYS[1], KEYS[2]
local mode = ARGV[1]
local now = tonumber(ARGV[2])
local prefix = string.match(key, '^(.*:)[^:]+$')
local function member(k) return string.match(k, '[^:]+$') end
local evicted = {}

if mode == 'c' or mode == 'l' then
  if redis.call('EXISTS', key) == 1 then return {'-1'} end
elseif mode == 'u' then
  if redis.call('EXISTS', key) == 0 then return {'0'} end
else
  if redis.call('EXISTS', KEYS[3]) == 0 then return {'0'} end
  if redis.call('RENAMENX', KEYS[3], key) == 0 then return {'-1'} end
  redis.call('ZREM', index, member(KEYS[3]))
end

if mode == 'l' then
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  local limit = tonumber(ARGV[5])
  if limit > 0 then
    local live = {}
    for _, m in ipairs(redis.call('ZRANGE', index, 0, -1)) do
      local seen = redis.call('HGET', prefix .. m, 'm:s')
      if seen then
        live[#live + 1] = {m, tonumber(seen)}
      else
        redis.call('ZREM', index, m)
      end
    end
    if #live >= limit then
      if ARGV[6] == 'r' then return {'-2'} end
      table.sort(live, function(a, b)
        return a[2] < b[2] or (a[2] == b[2] and a[1] < b[1])
      end)
      for i = 1, #live - limit + 1 do
        local k = prefix .. live[i][1]
        local h = redis.call('HGET', k, 'm:h')
        if h then evicted[#evicted + 1] = h end
        redis.call('DEL', k)
        redis.call('ZREM', index, live[i][1])
      end
    end
  end
end

if ARGV[4] == '1' then
  local names = redis.call('HKEYS', key)
  for i = 1, #names do
    if string.sub(names[i], 1, 2) == 'd:' then redis.call('HDEL', key, names[i]) end
  end
end
local last = 7 + 2 * tonumber(ARGV[7])
if #ARGV > last then redis.call('HDEL', key, unpack(ARGV, last + 1, #ARGV)) end
if last > 7 then redis.call('HSET', key, unpack(ARGV, 8, last)) end

local meta = redis.call('HMGET', key, 'm:i', 'm:d', 'm:u')
local ttl = tonumber(meta[1]) or tonumber(ARGV[3])
local deadline = tonumber(meta[2])
if deadline and deadline - now < ttl then ttl = deadline - now end
if ttl <= 0 then
  redis.call('DEL', key)
  redis.call('ZREM', index, member(key))
  return {'0'}
end
redis.call('HSET', key, 'm:s', ARGV[2], 'm:e', string.format('%.0f', now + ttl))
redis.call('PEXPIRE', key, ttl)
if meta[3] then
  -- Index score: when the session expires. The index outlives its longest session.
  redis.call('ZADD', index, now + ttl, member(key))
  if redis.call('PTTL', index) < ttl then redis.call('PEXPIRE', index, ttl) end
end
return {string.format('%.0f', ttl), unpack(evicted)}
