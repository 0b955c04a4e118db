-- Token operations (src/tokens); mirrors MemoryStore's tokens, and the conformance
-- suite checks both. Key layout: token_lib.lua.
-- KEYS[1] the slot's family index P..'tf' (declared so Cluster routes to the slot)
-- ARGV[1] op; ARGV[2] P, the slot prefix; ARGV[3] now, Unix ms; the rest per op.
local idx, op, P, now = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])

local function int(x) return string.format('%.0f', x) end

local function session_gone(sk)
  return sk and sk ~= '' and redis.call('EXISTS', P .. 's:' .. sk) == 0
end

-- Drops a family's expired token fields; its key and index entry then expire with its
-- last token.
local function settle(fid)
  local fk = P .. 't:' .. fid
  local h = redis.call('HGETALL', fk)
  local last = 0
  for i = 1, #h, 2 do
    local kind = string.sub(h[i], 1, 2)
    if kind == 'a:' or kind == 'r:' then
      local e = tonumber(h[i + 1])
      if e <= now then
        redis.call('HDEL', fk, h[i])
      elseif e > last then
        last = e
      end
    end
  end
  if last == 0 then
    redis.call('DEL', fk)
    redis.call('ZREM', idx, fid)
  else
    redis.call('PEXPIREAT', fk, int(last))
    redis.call('ZADD', idx, int(last), fid)
  end
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
  local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', idx, int(tonumber(top[2]))) end
end

-- Stores one token of family `fid`; its TTL never passes the family's deadline.
local function put(kind, h, fid, ttl, deadline, fields)
  local e = math.min(now + ttl, deadline)
  local k = P .. kind .. ':' .. h
  redis.call('HSET', k, 'f', fid, 'c', now, 'e', int(e), unpack(fields))
  redis.call('PEXPIREAT', k, int(e))
  redis.call('HSET', P .. 't:' .. fid, kind .. ':' .. h, int(e))
  return e
end

local function taken(ah, rh)
  return redis.call('EXISTS', P .. 'a:' .. ah, P .. 'r:' .. rh) > 0
end

-- A new pair in family fid (user, session hash, session handle, scope from `fam`).
local function pair(fid, fam, ah, rh, att, rtt, deadline)
  local ae = put('a', ah, fid, att, deadline,
    {'u', fam[1], 'sh', fam[2], 'sk', fam[3], 'sc', fam[4]})
  local re = put('r', rh, fid, rtt, deadline, {'u', fam[1], 's', 'l'})
  settle(fid)
  return ae, re
end

if op == 'issue' then
  -- ARGV[4..13]: user, family id, access hash, refresh hash, access TTL, refresh idle
  -- TTL, family lifetime (ms), bound session hash, its handle, scope ('' = none)
  -- Returns {'ok', access expiry, refresh expiry} | {'gone'} (bound session ended)
  -- | {'collision'}
  local user, fid, ah, rh = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  local sk, sh, sc = ARGV[11], ARGV[12], ARGV[13]
  if session_gone(sk) then return {'gone'} end
  local fk = P .. 't:' .. fid
  if redis.call('EXISTS', fk) == 1 or taken(ah, rh) then return {'collision'} end
  local deadline = now + tonumber(ARGV[10])
  redis.call('HSET', fk, 'u', user, 'c', now, 'd', int(deadline), 'r', rh,
    'sk', sk, 'sh', sh, 'sc', sc)
  local ae, re = pair(fid, {user, sh, sk, sc}, ah, rh, tonumber(ARGV[8]),
    tonumber(ARGV[9]), deadline)
  return {'ok', int(ae), int(re)}

elseif op == 'auth' then
  -- ARGV[4] access hash. Returns {user, family, issued, expires, handle, scope} or {}.
  local k = P .. 'a:' .. ARGV[4]
  local a = redis.call('HMGET', k, 'u', 'f', 'c', 'e', 'sh', 'sc', 'sk')
  if not a[1] or tonumber(a[4]) <= now then return {} end
  if session_gone(a[7]) then
    kill_family(P, a[2])
    return {}
  end
  return {a[1], a[2], a[3], a[4], a[5] or '', a[6] or ''}

elseif op == 'refresh' then
  -- ARGV[4..9]: presented refresh hash, new access hash, new refresh hash, access
  -- TTL, refresh idle TTL, grace window (ms)
  -- Returns {'ok', user, family, access expiry, refresh expiry, handle, scope}
  -- | {'invalid'} | {'grace'} (the immediately previous token, within the window)
  -- | {'reuse', family, user, handle} (a consumed token: the family is revoked)
  -- | {'collision'}
  local rk = P .. 'r:' .. ARGV[4]
  local r = redis.call('HMGET', rk, 'f', 's', 'n', 't', 'e')
  if not r[1] then return {'invalid'} end
  local fid = r[1]
  local fk = P .. 't:' .. fid
  local f = redis.call('HMGET', fk, 'u', 'd', 'r', 'sk', 'sh', 'sc')
  if not f[1] then
    redis.call('DEL', rk)
    return {'invalid'}
  end
  if r[2] == 'c' then
    local grace = tonumber(ARGV[9])
    if grace > 0 and f[3] == r[3] and now - tonumber(r[4]) <= grace then return {'grace'} end
    kill_family(P, fid)
    return {'reuse', fid, f[1], f[5] or ''}
  end
  if tonumber(r[5]) <= now then return {'invalid'} end
  local deadline = tonumber(f[2])
  if deadline <= now or session_gone(f[4]) then
    kill_family(P, fid)
    return {'invalid'}
  end
  if taken(ARGV[5], ARGV[6]) then return {'collision'} end
  redis.call('HSET', rk, 's', 'c', 'n', ARGV[6], 't', now)
  redis.call('HSET', fk, 'r', ARGV[6], 'l', now)
  local ae, re = pair(fid, {f[1], f[5] or '', f[4] or '', f[6] or ''}, ARGV[5], ARGV[6],
    tonumber(ARGV[7]), tonumber(ARGV[8]), deadline)
  return {'ok', f[1], fid, int(ae), int(re), f[5] or '', f[6] or ''}

elseif op == 'revoke_access' then
  -- ARGV[4] access hash. Returns {} or {family}.
  local k = P .. 'a:' .. ARGV[4]
  local fid = redis.call('HGET', k, 'f')
  if not fid then return {} end
  redis.call('DEL', k)
  redis.call('HDEL', P .. 't:' .. fid, 'a:' .. ARGV[4])
  return {fid}

elseif op == 'revoke_refresh' then
  -- ARGV[4] refresh hash (live or consumed): revokes its family. Returns {} or {family}.
  local k = P .. 'r:' .. ARGV[4]
  local fid = redis.call('HGET', k, 'f')
  if not fid then return {} end
  redis.call('DEL', k)
  kill_family(P, fid)
  return {fid}

elseif op == 'revoke_family' then
  -- ARGV[4] family id, ARGV[5] its user. Returns {} or {family}.
  local fid = ARGV[4]
  if redis.call('HGET', P .. 't:' .. fid, 'u') ~= ARGV[5] then return {} end
  kill_family(P, fid)
  return {fid}

elseif op == 'list' then
  -- ARGV[4] user. Returns 6 strings per live family: id, created, last refreshed
  -- ('' if never), expires (its last token), session handle, scope.
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
  local out = {}
  local fams = redis.call('ZRANGE', idx, 0, -1, 'WITHSCORES')
  for i = 1, #fams, 2 do
    local f = redis.call('HMGET', P .. 't:' .. fams[i], 'u', 'c', 'l', 'sh', 'sc')
    if f[1] == ARGV[4] then
      out[#out + 1] = fams[i]
      out[#out + 1] = f[2] or ''
      out[#out + 1] = f[3] or ''
      out[#out + 1] = int(tonumber(fams[i + 1]))
      out[#out + 1] = f[4] or ''
      out[#out + 1] = f[5] or ''
    end
  end
  return out

elseif op == 'revoke_user' then
  -- ARGV[4] user. Returns the revoked families.
  return kill_user_tokens(P, ARGV[4], now)
end
return redis.error_reply('unknown token op')
