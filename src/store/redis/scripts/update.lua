-- The update of an existing session (only if present), the write of every
-- read-modify-write and TTL refresh, kept to the fewest Redis calls: each redis.call
-- costs 1.5-3 µs of Redis CPU inside a script (an HMGET of 6 fields alone ~3 µs), so
-- the common case is HMGET (existence via m:e, which every write stamps, and the TTL
-- inputs), HSET, PEXPIRE, with the new fields passed straight through. Mirrors
-- MemoryStore::write's update; the conformance suite checks both.
-- (events_lib.lua and write_lib.lua are prepended.)
--
-- KEYS[1]  the session key: <ns>:{<tag>}:s:<member>
-- KEYS[2]  the user index of the same slot: <ns>:{<tag>}:u
-- ARGV[1]  now, Unix ms (application clock)
-- ARGV[2]  default idle timeout, ms (used when the record has no m:i)
-- ARGV[3]  '1': delete every d: field before the rest
-- ARGV[4]  the index member of KEYS[1] (its last key segment)
-- ARGV[5]  n, the number of fields to set
-- ARGV[6]  the event stream key ('' = none); ARGV[7] its approximate MAXLEN
-- ARGV[8]  events to record once written, space-separated, or ''
-- ARGV[9]  the most data bytes the session may hold after the write (0: no limit)
-- ARGV[10 .. 9+2n] field/value pairs; every later ARGV is a field to delete
-- Returns the TTL set (ms, > 0); 0 if the session is gone (or passed its deadline
-- and was deleted); -size if the merged data would be `size` bytes, more than
-- ARGV[9] (nothing written).
local key, index = KEYS[1], KEYS[2]
STREAM, MAXLEN = ARGV[6], ARGV[7]
local now = tonumber(ARGV[1])
local first = 10
local last = first - 1 + 2 * tonumber(ARGV[5])
-- One HMGET: existence (m:e, which every write stamps), the TTL inputs, the data size
-- and the current values of the data fields the patch touches.
local names = touched(first, last)
local meta = redis.call('HMGET', key, 'm:e', 'm:i', 'm:d', 'm:u', 'm:x', 'm:z',
  unpack(names))
if not meta[1] then return 0 end
local idle, deadline, user, indexed = meta[2], meta[3], meta[4], tonumber(meta[5])
idle, deadline, user = patched(first, last, idle, deadline, user, false)
local ttl = ttl_of(idle, deadline, ARGV[2], now)
if ttl <= 0 then
  drop_expired(key, index, ARGV[4], ARGV[1])
  return 0
end
local size = size_after(key, meta[6], ARGV[3], first, last, names, {unpack(meta, 7)})
local max = tonumber(ARGV[9])
if max > 0 and size > max then return -size end

delete_fields(key, ARGV[3], last)
local expires = now + ttl
local score = false
if user and (not indexed or expires > indexed) then
  -- Re-index with slack (see write.lua); the index and handle map outlive the session.
  local slack = math.floor(ttl / 2)
  redis.call('ZADD', index, expires + slack, ARGV[4])
  if redis.call('PTTL', index) < ttl + slack then
    redis.call('PEXPIRE', index, ttl + slack)
    redis.call('PEXPIRE', index .. 'h', ttl + slack)
  end
  score = tostring(expires + slack)
end
if score then
  redis.call('HSET', key, 'm:s', ARGV[1], 'm:e', tostring(expires), 'm:z', size,
    'm:x', score, unpack(ARGV, first, last))
else
  redis.call('HSET', key, 'm:s', ARGV[1], 'm:e', tostring(expires), 'm:z', size,
    unpack(ARGV, first, last))
end
redis.call('PEXPIRE', key, ttl)
record(key, ARGV[1], ARGV[8])
return ttl
