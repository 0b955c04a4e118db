-- Shared by tokens.lua and revoke.lua (prepended to both when they are loaded).
-- Keys are built from P, the slot prefix <ns>:{<tag>}: (one Cluster slot):
--   P..'a:'..h  access token   (hash: u user, f family, c issued, e expires, sh, sk, sc)
--   P..'r:'..h  refresh token  (hash: u, f, c, e, s 'l' live | 'c' consumed,
--                               n successor's hash, t consumed at)
--   P..'t:'..f  token family   (hash: u, c, d deadline, r current refresh hash, l last refresh,
--                               sk bound session hash, sh session handle, sc scope,
--                               and one field per token 'a:'..h / 'r:'..h = its expiry)
--   P..'tf'     family index   (sorted set: family id scored by its last expiry)
-- h is base64url(sha256(token secret)): Redis never holds a token.

local function kill_family(P, fid)
  local fk = P .. 't:' .. fid
  for _, f in ipairs(redis.call('HKEYS', fk)) do
    local kind = string.sub(f, 1, 2)
    if kind == 'a:' or kind == 'r:' then redis.call('DEL', P .. f) end
  end
  redis.call('DEL', fk)
  redis.call('ZREM', P .. 'tf', fid)
end

-- Revokes every token family of `user` in the slot; returns their ids.
local function kill_user_tokens(P, user, now)
  local idx = P .. 'tf'
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
  local out = {}
  for _, fid in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    local u = redis.call('HGET', P .. 't:' .. fid, 'u')
    if not u then
      redis.call('ZREM', idx, fid)
    elseif u == user then
      kill_family(P, fid)
      out[#out + 1] = fid
    end
  end
  if redis.call('ZCARD', idx) == 0 then redis.call('DEL', idx) end
  return out
end
