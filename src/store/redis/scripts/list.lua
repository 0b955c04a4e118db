-- Lists a user's live sessions, pruning the index on the way.
-- KEYS[1] the user index; ARGV[1] the session key prefix <ns>:{<tag>}:s:;
-- ARGV[2] now, Unix ms; ARGV[3] the user id.
-- Returns 6 strings per session: member, handle, created, last seen, ip, user agent
-- ('' when absent).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', ARGV[1] .. m, 'm:u', 'm:h', 'm:c', 'm:s', 'm:ip', 'm:ua')
  if not f[1] then
    redis.call('ZREM', KEYS[1], m)
  elseif f[1] == ARGV[3] then
    out[#out + 1] = m
    for i = 2, 6 do out[#out + 1] = f[i] or '' end
  end
end
return out
