-- The update of an existing session (write.lua's 'u' mode), the write of every
-- read-modify-write and TTL refresh, kept to the fewest Redis calls: each redis.call
-- costs 1.5-3 µs of Redis CPU inside a script (an HMGET of 6 fields alone ~3 µs), so
-- the common case is HMGET (existence via m:e, which every write stamps, and the TTL
-- inputs), HSET, PEXPIRE, with the new fields passed straight through. Same semantics
-- as write.lua in 'u' mode; the conformance suite checks both against MemoryStore.
-- (events_lib.lua is prepended.)
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
-- ARGV[9 .. 8+2n] field/value pairs; every later ARGV is a field to delete
-- Returns the TTL set (ms, > 0), or 0 if the session is gone (or passed its deadline
-- and was deleted).
local key, index = KEYS[1], KEYS[2]
STREAM, MAXLEN = ARGV[6], ARGV[7]
local now = tonumber(ARGV[1])
local meta = redis.call('HMGET', key, 'm:e', 'm:i', 'm:d', 'm:u', 'm:x')
if not meta[1] then return 0 end
local idle, deadline, user, indexed = meta[2], meta[3], meta[4], tonumber(meta[5])

-- The TTL inputs as this write leaves them (deletes first, then sets).
local first = 9
local last = first - 1 + 2 * tonumber(ARGV[5])
for i = last + 1, #ARGV do
  local f = ARGV[i]
  if f == 'm:i' then idle = false elseif f == 'm:d' then deadline = false
  elseif f == 'm:u' then user = false end
end
for i = first, last, 2 do
  local f = ARGV[i]
  if f == 'm:i' then idle = ARGV[i + 1] elseif f == 'm:d' then deadline = ARGV[i + 1]
  elseif f == 'm:u' then user = ARGV[i + 1] end
end
local ttl = tonumber(idle) or tonumber(ARGV[2])
deadline = tonumber(deadline)
if deadline and deadline - now < ttl then ttl = deadline - now end
if ttl <= 0 then
  redis.call('DEL', key)
  if redis.call('ZREM', index, ARGV[4]) == 1 then expired(index .. 'h', ARGV[4], ARGV[1]) end
  return 0
end

if ARGV[3] == '1' then
  local names = redis.call('HKEYS', key)
  for i = 1, #names do
    if string.sub(names[i], 1, 2) == 'd:' then redis.call('HDEL', key, names[i]) end
  end
end
if #ARGV > last then redis.call('HDEL', key, unpack(ARGV, last + 1, #ARGV)) end
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
  redis.call('HSET', key, 'm:s', ARGV[1], 'm:e', tostring(expires), 'm:x', score,
    unpack(ARGV, first, last))
else
  redis.call('HSET', key, 'm:s', ARGV[1], 'm:e', tostring(expires), unpack(ARGV, first, last))
end
redis.call('PEXPIRE', key, ttl)
if STREAM ~= '' and ARGV[8] ~= '' then
  local m = redis.call('HMGET', key, 'm:h', 'm:u', 'm:ip', 'm:ua')
  for kind in string.gmatch(ARGV[8], '%S+') do
    xadd(ARGV[1], kind, '', m[1], m[2], m[3], m[4])
  end
end
return ttl
