-- Shared by tokens.lua and revoke.lua (prepended to both when they are loaded, after
-- events_lib.lua, whose USER_BATCH it uses).
-- Keys are built from P, the slot prefix <ns>:{<tag>}: (one Cluster slot):
--   P..'a:'..h  access token   (hash: u user, f family, c issued, e expires, sh, sk, sc;
--                               sk is non-empty when the family is bound to a session)
--   P..'r:'..h  refresh token  (hash: u, f, c, e, s 'l' live | 'c' consumed,
--                               n successor's hash, t consumed at). A consumed token
--                               stays as a tombstone until its own expiry, so a replay
--                               is recognised; nothing ever iterates tombstones.
--   P..'t:'..f  token family   (hash of fixed size: u, c, d deadline, r current refresh
--                               hash, l last refresh, sk the bound session's key hash
--                               at issue ('' when unbound), sh its handle, sc scope,
--                               e expiry of its last token, a the
--                               hashes of its newest ACCESS_KEPT access tokens, i its
--                               ID token's hash and ie that token's expiry, if any,
--                               cl the OAuth client it was issued to ('' = none),
--                               dv '1' when the bound session is the family's own
--                               device record, which ends with it)
--   P..'i:'..h  ID token       (hash: u, f, c, e, sh, sk, sc; its family's 'i' names it)
--   P..'tf'     family index   (sorted set: family id scored by its expiry)
-- h is base64url(sha256(token secret)): Redis never holds a token. A token is valid
-- only while its family record lists it (its live refresh token, its kept access
-- tokens), so ending a family deletes a bounded number of keys.

-- The live session with handle `sh` (a bound family's): its index member (the key
-- hash) and packed times and limits (m:t, m:l), or nil once it has ended. The slot's
-- handle map (events_lib.lua) gives its current member, so a session whose id rotated
-- (cycle_id, a new login of the same user) is still found.
local function bound_session(P, sh)
  local member = redis.call('HGET', P .. 'uh', '#' .. sh)
  if not member then return nil end
  local f = redis.call('HMGET', P .. 's:' .. member, F_T, F_L)
  if not f[1] or not f[2] then return nil end
  return member, f[1], f[2]
end

-- Whether the session with handle `sh` (a bound family's) has ended.
local function session_gone(P, sh)
  if not sh or sh == '' then return false end
  return bound_session(P, sh) == nil
end

-- Live access tokens one family keeps; issuing one more ends the oldest
-- (tokens::store::ACCESS_KEPT).
local ACCESS_KEPT = 8

-- A family's kept access tokens (its 'a' field: hashes separated by spaces, oldest
-- first) as a list.
local function access_list(kept)
  local list = {}
  for h in string.gmatch(kept or '', '%S+') do list[#list + 1] = h end
  return list
end

-- Ends the device record with handle `sh` (a session with no cookie, created with
-- its family by Tokens::login): the session key, its index entry and its handle map
-- entries, as revoke.lua revokes a session. O(1).
local function end_device(P, sh)
  local uh = P .. 'uh'
  local m = redis.call('HGET', uh, '#' .. sh)
  if not m then return end
  redis.call('DEL', P .. 's:' .. m)
  redis.call('ZREM', P .. 'u', m)
  unmap_handle(uh, m, sh)
end

local function kill_family(P, fid)
  local fk = P .. 't:' .. fid
  local f = redis.call('HMGET', fk, 'r', 'a', 'i', 'dv', 'sh')
  if f[1] then redis.call('DEL', P .. 'r:' .. f[1]) end
  if f[3] then redis.call('DEL', P .. 'i:' .. f[3]) end
  for _, h in ipairs(access_list(f[2])) do redis.call('DEL', P .. 'a:' .. h) end
  redis.call('DEL', fk)
  redis.call('ZREM', P .. 'tf', fid)
  if f[4] == '1' and f[5] and f[5] ~= '' then end_device(P, f[5]) end
end

-- Revokes the token families of `user` among the first `seen` + USER_BATCH of the
-- slot's family index, where `seen` is how many the previous step kept (other users'
-- families in the slot): revoked ones leave the index, so the walk goes by what is
-- left, and a kept family refreshed (re-scored) between steps cannot make it skip one.
-- Returns the ids it revoked and the count to go on with, or nil once the index is
-- done.
local function kill_user_tokens(P, user, seen)
  local idx = P .. 'tf'
  local window = seen + USER_BATCH
  local fids = redis.call('ZRANGE', idx, 0, window - 1)
  local out, kept = {}, 0
  for _, fid in ipairs(fids) do
    local u = redis.call('HGET', P .. 't:' .. fid, 'u')
    if not u then
      redis.call('ZREM', idx, fid)
    elseif u == user then
      kill_family(P, fid)
      out[#out + 1] = fid
    else
      kept = kept + 1
    end
  end
  if redis.call('ZCARD', idx) == 0 then redis.call('DEL', idx) end
  if #fids == window then return out, kept end
  return out, nil
end
