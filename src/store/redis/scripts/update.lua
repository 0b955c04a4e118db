-- The update of an existing session (only if present), the write of every
-- read-modify-write and TTL refresh, kept to the fewest Redis calls: each redis.call
-- costs 1.5-3 µs of Redis CPU inside a script (an HMGET of 6 fields alone ~3 µs), so
-- the common case is HMGET (existence and the TTL inputs, packed in m:t, which every
-- write stamps), HSET, PEXPIRE. Mirrors
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
-- One HMGET: existence and the TTL inputs (m:t), the user, and the current values of
-- the data fields the patch touches (for the size).
local names = touched(first, last)
local stored = redis.call('HMGET', key, 'm:t', 'm:u', unpack(names))
if not stored[1] then return 0 end
local times = split(stored[1])
-- An update never changes the identity (m:n): it is not read, and a patch that
-- touches it fails on the missing table.
local user, sets, dels = apply(first, last, {times}, stored[2])
local ttl = ttl_of(times[T_I], times[T_D], ARGV[2], now)
if ttl <= 0 then
  drop_expired(key, index, ARGV[4], ARGV[1])
  return 0
end
local size = size_after(times[T_Z], ARGV[3], first, last, names, {unpack(stored, 3)})
local max = tonumber(ARGV[9])
if max > 0 and size > max then return -size end

delete_fields(key, ARGV[3], dels)
local expires = now + ttl
local indexed = tonumber(times[T_X])
if user and (not indexed or expires > indexed) then
  -- Re-index with slack (see write.lua); the index and handle map outlive the session.
  local slack = math.floor(ttl / 2)
  redis.call('ZADD', index, expires + slack, ARGV[4])
  if redis.call('PTTL', index) < ttl + slack then
    redis.call('PEXPIRE', index, ttl + slack)
    redis.call('PEXPIRE', index .. 'h', ttl + slack)
  end
  times[T_X] = tostring(expires + slack)
end
times[T_E], times[T_S], times[T_Z] = tostring(expires), ARGV[1], tostring(size)
redis.call('HSET', key, 'm:t', table.concat(times, ','), unpack(sets))
redis.call('PEXPIRE', key, ttl)
record(key, ARGV[1], ARGV[8])
return ttl
