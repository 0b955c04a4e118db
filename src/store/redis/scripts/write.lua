-- One conditional write of a session hash (fields: src/session/record.rs).
-- Mirrors MemoryStore::write and record::stamp_ttl; the conformance suite checks both.
--
-- KEYS[1]  the session key to write
-- KEYS[2]  (rotate only) the current key, renamed to KEYS[1] first; same hash tag
-- ARGV[1]  mode: 'c' create (only if absent) | 'u' update (only if present) | 'r' rotate
-- ARGV[2]  now, Unix ms (application clock)
-- ARGV[3]  default idle timeout, ms (used when the record has no m:i)
-- ARGV[4]  '1': delete every d: field before the rest
-- ARGV[5]  n, the number of fields to set; ARGV[6 .. 5+2n] field/value pairs;
--          every later ARGV is a field to delete
-- Returns the TTL set (ms, > 0), 0 if the session is gone (or passed its deadline and
-- was deleted), -1 if the target key already exists.
local key = KEYS[1]
local mode = ARGV[1]
if mode == 'c' then
  if redis.call('EXISTS', key) == 1 then return -1 end
elseif mode == 'u' then
  if redis.call('EXISTS', key) == 0 then return 0 end
else
  if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
  if redis.call('RENAMENX', KEYS[2], key) == 0 then return -1 end
end

if ARGV[4] == '1' then
  local names = redis.call('HKEYS', key)
  for i = 1, #names do
    if string.sub(names[i], 1, 2) == 'd:' then redis.call('HDEL', key, names[i]) end
  end
end
local last = 5 + 2 * tonumber(ARGV[5])
if #ARGV > last then redis.call('HDEL', key, unpack(ARGV, last + 1, #ARGV)) end
if last > 5 then redis.call('HSET', key, unpack(ARGV, 6, last)) end

local now = tonumber(ARGV[2])
local meta = redis.call('HMGET', key, 'm:i', 'm:d')
local ttl = tonumber(meta[1]) or tonumber(ARGV[3])
local deadline = tonumber(meta[2])
if deadline and deadline - now < ttl then ttl = deadline - now end
if ttl <= 0 then
  redis.call('DEL', key)
  return 0
end
redis.call('HSET', key, 'm:s', ARGV[2], 'm:e', string.format('%.0f', now + ttl))
redis.call('PEXPIRE', key, ttl)
return ttl
