-- Deletes a session (logout) and its entries in the user index and handle map of its
-- slot (events_lib.lua is prepended).
-- KEYS[1] the session key; KEYS[2] the user index of the same slot;
-- ARGV[1] the session's index member (the last segment of KEYS[1]); ARGV[2] now, Unix
-- ms; ARGV[3] the event stream key ('' = none); ARGV[4] its approximate MAXLEN.
-- Returns {handle, user} ('' when absent) if the session existed, else {}.
clock(2) -- now: Redis's, not the caller's
STREAM, MAXLEN = ARGV[3], ARGV[4]
local m = redis.call('HMGET', KEYS[1], F_N, F_U, F_IP, F_X, F_UA, F_UA2, F_UA3, F_UA4)
m[1] = handle_of(m[1])
if redis.call('DEL', KEYS[1]) == 0 then return {} end
if m[2] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  unmap_handle(KEYS[2] .. 'h', ARGV[1], m[1])
end
xadd(ARGV[2], 'logout', '', m[1], m[2], m[3], user_agent(m, 5), m[4])
return {m[1] or '', m[2] or ''}
