-- Revokes sessions of a user, pruning the index on the way.
-- KEYS[1] the user index; ARGV[1] the session key prefix <ns>:{<tag>}:s:;
-- ARGV[2] now, Unix ms; ARGV[3] the user id;
-- ARGV[4] 'h': the session whose handle is ARGV[5] | 'a': all | 'x': all but member ARGV[5]
-- Returns the handles of the revoked sessions. Deletes the index once it is empty.
-- 'a' (log out everywhere) also revokes every token family of the user in the same
-- step (kill_user_tokens, from token_lib.lua, which is prepended).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local mode, arg = ARGV[4], ARGV[5]
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local k = ARGV[1] .. m
  local f = redis.call('HMGET', k, 'm:u', 'm:h')
  if not f[1] then
    redis.call('ZREM', KEYS[1], m)
  elseif f[1] == ARGV[3] then
    if mode == 'a' or (mode == 'h' and f[2] == arg) or (mode == 'x' and m ~= arg) then
      redis.call('DEL', k)
      redis.call('ZREM', KEYS[1], m)
      out[#out + 1] = f[2]
    end
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
if mode == 'a' then kill_user_tokens(string.sub(ARGV[1], 1, -3), ARGV[3], ARGV[2]) end
return out
