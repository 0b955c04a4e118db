-- A session key expired (keyspace notification): drops it from its slot's user index
-- and reports it once (events_lib.lua is prepended).
-- KEYS[1] the user index of the session's slot; ARGV[1] the session's index member;
-- ARGV[2] now, Unix ms; ARGV[3] the event stream key ('' = none); ARGV[4] MAXLEN.
-- Returns {handle, user} if this call reported it, else {}.
clock(2) -- now: Redis's, not the caller's
STREAM, MAXLEN = ARGV[3], ARGV[4]
redis.call('ZREM', KEYS[1], ARGV[1])
local handle, user = expired(KEYS[1] .. 'h', ARGV[1], ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[1] .. 'h') end
if handle then return {handle, user} end
return {}
