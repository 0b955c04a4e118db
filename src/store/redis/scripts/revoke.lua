-- Revokes sessions of a user, pruning (and reporting) expired index entries on the way
-- (token_lib.lua and events_lib.lua are prepended).
-- KEYS[1] the user index; ARGV[1] the session key prefix <ns>:{<tag>}:s:;
-- ARGV[2] now, Unix ms; ARGV[3] the user id;
-- ARGV[4] 'h': the session whose handle is ARGV[5] | 'a': all | 'x': all but member ARGV[5]
-- ARGV[6] the event stream key ('' = none); ARGV[7] its approximate MAXLEN;
-- ARGV[8] the reason recorded with each revocation (EventKind::reason).
-- Returns the handles of the revoked sessions. Deletes the index once it is empty.
-- 'a' (log out everywhere) also revokes every token family of the user in the same
-- step (kill_user_tokens).
STREAM, MAXLEN = ARGV[6], ARGV[7]
local index, uh = KEYS[1], KEYS[1] .. 'h'
prune(index, ARGV[2])
local mode, arg = ARGV[4], ARGV[5]
local reason = ARGV[8]
local out = {}
for _, m in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local k = ARGV[1] .. m
  local f = redis.call('HMGET', k, 'm:u', 'm:h', 'm:ip', 'm:ua')
  if not f[1] then
    redis.call('ZREM', index, m)
    expired(uh, m, ARGV[2])
  elseif f[1] == ARGV[3] then
    if mode == 'a' or (mode == 'h' and f[2] == arg) or (mode == 'x' and m ~= arg) then
      redis.call('DEL', k)
      redis.call('ZREM', index, m)
      unmap_handle(uh, m, f[2])
      xadd(ARGV[2], 'revoked', reason, f[2], f[1], f[3], f[4])
      out[#out + 1] = f[2]
    end
  end
end
if redis.call('ZCARD', index) == 0 then redis.call('DEL', index, uh) end
if mode == 'a' then kill_user_tokens(string.sub(ARGV[1], 1, -3), ARGV[3], ARGV[2]) end
return out
