-- Lists a user's live sessions, pruning (and reporting) expired index entries on the
-- way (events_lib.lua is prepended).
-- KEYS[1] the user index; ARGV[1] the session key prefix <ns>:{<tag>}:s:;
-- ARGV[2] now, Unix ms; ARGV[3] the user id; ARGV[4] the event stream key ('' = none);
-- ARGV[5] its approximate MAXLEN.
-- Returns 6 strings per session: member, handle, created, last seen, ip, user agent
-- ('' when absent).
STREAM, MAXLEN = ARGV[4], ARGV[5]
prune(KEYS[1], ARGV[2])
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', ARGV[1] .. m, 'm:u', 'm:h', 'm:c', 'm:s', 'm:ip', 'm:ua')
  if not f[1] then
    redis.call('ZREM', KEYS[1], m)
    expired(KEYS[1] .. 'h', m, ARGV[2])
  elseif f[1] == ARGV[3] then
    out[#out + 1] = m
    for i = 2, 6 do out[#out + 1] = f[i] or '' end
  end
end
return out
