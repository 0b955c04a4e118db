-- Token operations (src/tokens); mirrors MemoryStore's tokens, and the conformance
-- suite checks both. Key layout: token_lib.lua (events_lib.lua and token_lib.lua are
-- prepended). Every operation reads a bounded number of keys: at most USER_BATCH
-- entries of the family index per call.
-- KEYS[1] the slot's family index P..'tf' (declared so Cluster routes to the slot)
-- ARGV[1] op (TOKEN_* in protocol.rs CODES, prepended); ARGV[2] P, the slot prefix; ARGV[3] now, Unix ms; the rest per op.
local idx, op, P, now = KEYS[1], ARGV[1], ARGV[2], clock(3)

local function int(x) return string.format('%.0f', x) end

-- Drops up to USER_BATCH expired entries of the family index (their families expired
-- with their last token).
local function prune_families()
  local gone = redis.call('ZRANGEBYSCORE', idx, '-inf', now, 'LIMIT', 0, USER_BATCH)
  if #gone > 0 then redis.call('ZREM', idx, unpack(gone)) end
end

-- Stores one token of family `fid`; its TTL never passes the family's deadline.
local function put(kind, h, fid, ttl, deadline, fields)
  local e = math.min(now + ttl, deadline)
  local k = P .. kind .. ':' .. h
  redis.call('HSET', k, 'f', fid, 'c', now, 'e', int(e), unpack(fields))
  redis.call('PEXPIREAT', k, int(e))
  return e
end

-- Whether `client` ('' = unchecked) asks to revoke a token of family record `fk`
-- that was issued to another client (or to none). A family whose record is gone has
-- no live tokens (they are refused without it): revoking its leftovers is harmless.
local function wrong_client(fk, client)
  if client == '' then return false end
  local cl = redis.call('HGET', fk, 'cl')
  return cl ~= false and cl ~= client
end

local function taken(ah, rh)
  return redis.call('EXISTS', P .. 'a:' .. ah, P .. 'r:' .. rh) > 0
end

-- The family's kept access tokens with `ah` appended; the oldest beyond ACCESS_KEPT
-- are deleted (at most one per call, as the list never holds more than ACCESS_KEPT).
local function keep_access(kept, ah)
  local list = access_list(kept)
  list[#list + 1] = ah
  while #list > ACCESS_KEPT do
    redis.call('DEL', P .. 'a:' .. table.remove(list, 1))
  end
  return table.concat(list, ' ')
end

-- A new pair in family fid (user, session hash, session handle, scope, kept access
-- tokens, expiry from `fam`). The family record is rewritten in place: its size never
-- depends on how often it was refreshed.
local function pair(fid, fam, ah, rh, att, rtt, deadline)
  local ae = put('a', ah, fid, att, deadline,
    {'u', fam[1], 'sh', fam[2], 'sk', fam[3], 'sc', fam[4]})
  local re = put('r', rh, fid, rtt, deadline, {'u', fam[1], 's', REFRESH_LIVE})
  local e = int(math.max(ae, re, tonumber(fam[6] or '0')))
  local fk = P .. 't:' .. fid
  redis.call('HSET', fk, 'r', rh, 'a', keep_access(fam[5], ah), 'e', e)
  redis.call('PEXPIREAT', fk, e)
  redis.call('ZADD', idx, e, fid)
  prune_families()
  local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', idx, int(tonumber(top[2]))) end
  return ae, re
end

if op == TOKEN_ISSUE then
  -- ARGV[4..17]: user, family id, access hash, refresh hash, access TTL, refresh idle
  -- TTL, family lifetime (ms), bound session hash, its handle, scope ('' = none), the
  -- most families of the slot (0: no limit; at it, the family closest to expiry ends),
  -- ID token hash ('' = none), ID token TTL (ms), OAuth client ('' = none), '1' if
  -- the bound session is the family's own device record (it ends with the family)
  -- Returns {'ok', access expiry, refresh expiry, ID token expiry ('' = none),
  --          evicted families...}
  -- | {'gone'} (bound session ended)
  -- | {'collision'}
  local user, fid, ah, rh = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  local sk, sh, sc, ih = ARGV[11], ARGV[12], ARGV[13], ARGV[15]
  if sk ~= '' and session_gone(P, sh) then return {TOKEN_GONE} end
  local fk = P .. 't:' .. fid
  if redis.call('EXISTS', fk) == 1 or taken(ah, rh)
    or (ih ~= '' and redis.call('EXISTS', P .. 'i:' .. ih) == 1) then
    return {TOKEN_COLLISION}
  end
  local evicted = {}
  local max = tonumber(ARGV[14])
  if max > 0 then
    prune_families()
    local n = redis.call('ZCARD', idx)
    while n >= max and #evicted < USER_BATCH do
      local oldest = redis.call('ZRANGE', idx, 0, 0)[1]
      kill_family(P, oldest)
      evicted[#evicted + 1] = oldest
      n = n - 1
    end
  end
  local deadline = now + tonumber(ARGV[10])
  redis.call('HSET', fk, 'u', user, 'c', now, 'd', int(deadline), 'sk', sk, 'sh', sh,
    'sc', sc, 'cl', ARGV[17])
  if ARGV[18] == '1' and sh ~= '' then redis.call('HSET', fk, 'dv', '1') end
  local ie = ''
  if ih ~= '' then
    ie = int(put('i', ih, fid, tonumber(ARGV[16]), deadline,
      {'u', user, 'sh', sh, 'sk', sk, 'sc', sc}))
    redis.call('HSET', fk, 'i', ih, 'ie', ie)
  end
  local ae, re = pair(fid, {user, sh, sk, sc, nil, ie ~= '' and ie or '0'}, ah, rh,
    tonumber(ARGV[8]), tonumber(ARGV[9]), deadline)
  return {TOKEN_OK, int(ae), int(re), ie, unpack(evicted)}

elseif op == TOKEN_AUTH then
  -- ARGV[4] token hash, ARGV[5] its kind: 'a' (access) or 'i' (ID token).
  -- Returns {user, family, issued, expires, handle, scope, bound session's member
  -- ('' = unbound), its packed times and limits (m:t, m:l)} or {} (not live; a token whose bound
  -- session ended ends its family; a token whose family record is gone is refused).
  local kind = ARGV[5]
  if kind ~= TOKEN_KIND_ACCESS and kind ~= TOKEN_KIND_ID then
    return redis.error_reply('unknown token kind')
  end
  local ak = P .. kind .. ':' .. ARGV[4]
  local a = redis.call('HMGET', ak, 'u', 'f', 'c', 'e', 'sh', 'sc', 'sk')
  if not a[1] or tonumber(a[4]) <= now then return {} end
  if redis.call('EXISTS', P .. 't:' .. a[2]) == 0 then
    -- The family's record is gone (evicted, or deleted by hand): revocation could no
    -- longer reach this token, so it is refused (fail closed) and dropped.
    redis.call('DEL', ak)
    return {}
  end
  local member, t, l = '', '', ''
  if a[7] and a[7] ~= '' then
    member, t, l = bound_session(P, a[5] or '')
    if not member then
      kill_family(P, a[2])
      return {}
    end
  end
  return {a[1], a[2], a[3], a[4], a[5] or '', a[6] or '', member, t, l}

elseif op == TOKEN_REFRESH then
  -- ARGV[4..10]: presented refresh hash, new access hash, new refresh hash, access
  -- TTL, refresh idle TTL, grace window (ms), the client asking ('' = none)
  -- Returns {'ok', user, family, access expiry, refresh expiry, handle, scope}
  -- | {'invalid'} (also for a family of another client: nothing changes)
  -- | {'grace', family, user} (the immediately previous token, within the window)
  -- | {'reuse', family, user, handle} (a consumed token: the family is revoked)
  -- | {'collision'}
  local rk = P .. 'r:' .. ARGV[4]
  local r = redis.call('HMGET', rk, 'f', 's', 'n', 't', 'e')
  if not r[1] then return {TOKEN_INVALID} end
  local fid = r[1]
  local fk = P .. 't:' .. fid
  local f = redis.call('HMGET', fk, 'u', 'd', 'r', 'sk', 'sh', 'sc', 'a', 'e', 'cl')
  if not f[1] then
    redis.call('DEL', rk)
    return {TOKEN_INVALID}
  end
  -- RFC 6749 section 6: only the client the family was issued to refreshes it.
  if (f[9] or '') ~= ARGV[10] then return {TOKEN_INVALID} end
  if r[2] == REFRESH_CONSUMED then
    local grace = tonumber(ARGV[9])
    if grace > 0 and f[3] == r[3] and now - tonumber(r[4]) <= grace then
      return {TOKEN_GRACE, fid, f[1]}
    end
    kill_family(P, fid)
    return {TOKEN_REUSE, fid, f[1], f[5] or ''}
  end
  if tonumber(r[5]) <= now then return {TOKEN_INVALID} end
  local deadline = tonumber(f[2])
  if deadline <= now or (f[4] and f[4] ~= '' and session_gone(P, f[5])) then
    kill_family(P, fid)
    return {TOKEN_INVALID}
  end
  if taken(ARGV[5], ARGV[6]) then return {TOKEN_COLLISION} end
  -- The presented token becomes a tombstone; it keeps its own expiry.
  redis.call('HSET', rk, 's', REFRESH_CONSUMED, 'n', ARGV[6], 't', now)
  redis.call('HSET', fk, 'l', now)
  local ae, re = pair(fid, {f[1], f[5] or '', f[4] or '', f[6] or '', f[7], f[8]},
    ARGV[5], ARGV[6],
    tonumber(ARGV[7]), tonumber(ARGV[8]), deadline)
  return {TOKEN_OK, f[1], fid, int(ae), int(re), f[5] or '', f[6] or ''}

elseif op == TOKEN_REVOKE_ACCESS then
  -- ARGV[4] access hash, ARGV[5] the client asking ('' = unchecked). Returns {},
  -- {family} or {'wrong_client'} (its family was issued to another client: nothing
  -- changes; RFC 7009 section 2.1).
  local k = P .. 'a:' .. ARGV[4]
  local fid = redis.call('HGET', k, 'f')
  if not fid then return {} end
  local fk = P .. 't:' .. fid
  if wrong_client(fk, ARGV[5]) then return {TOKEN_WRONG_CLIENT} end
  redis.call('DEL', k)
  local kept = redis.call('HGET', fk, 'a')
  if kept then
    local list = {}
    for _, h in ipairs(access_list(kept)) do
      if h ~= ARGV[4] then list[#list + 1] = h end
    end
    redis.call('HSET', fk, 'a', table.concat(list, ' '))
  end
  return {fid}

elseif op == TOKEN_REVOKE_REFRESH then
  -- ARGV[4] refresh hash (live or consumed): revokes its family; ARGV[5] as for an
  -- access token. Returns {}, {family} or {'wrong_client'}.
  local k = P .. 'r:' .. ARGV[4]
  local fid = redis.call('HGET', k, 'f')
  if not fid then return {} end
  if wrong_client(P .. 't:' .. fid, ARGV[5]) then return {TOKEN_WRONG_CLIENT} end
  redis.call('DEL', k)
  if redis.call('EXISTS', P .. 't:' .. fid) == 0 then return {} end
  kill_family(P, fid)
  return {fid}

elseif op == TOKEN_REVOKE_FAMILY then
  -- ARGV[4] family id, ARGV[5] its user. Returns {} or {family}.
  local fid = ARGV[4]
  if redis.call('HGET', P .. 't:' .. fid, 'u') ~= ARGV[5] then return {} end
  kill_family(P, fid)
  return {fid}

elseif op == TOKEN_LIST then
  -- ARGV[4] user, ARGV[5] the page's first rank in the family index. Returns the next
  -- page's first rank ('' after the last), then per live family: id,
  -- created, last refreshed ('' if never), expires (its last token), session handle,
  -- scope, the ID token's expiry ('' if none is live), then the client ('' if none):
  -- 8 strings.
  prune_families()
  local out = {''}
  local offset = tonumber(ARGV[5])
  local fams = redis.call('ZRANGE', idx, offset, offset + USER_BATCH - 1, 'WITHSCORES')
  if #fams == 2 * USER_BATCH then out[1] = tostring(offset + USER_BATCH) end
  for i = 1, #fams, 2 do
    local f = redis.call('HMGET', P .. 't:' .. fams[i], 'u', 'c', 'l', 'sh', 'sc', 'ie', 'cl')
    if f[1] == ARGV[4] then
      out[#out + 1] = fams[i]
      out[#out + 1] = f[2] or ''
      out[#out + 1] = f[3] or ''
      out[#out + 1] = int(tonumber(fams[i + 1]))
      out[#out + 1] = f[4] or ''
      out[#out + 1] = f[5] or ''
      out[#out + 1] = (f[6] and tonumber(f[6]) > now) and f[6] or ''
      out[#out + 1] = f[7] or ''
    end
  end
  return out

elseif op == TOKEN_REVOKE_USER then
  -- ARGV[4] user, ARGV[5] how many families the previous step kept (0 on the first).
  -- Returns how many this step kept ('' when done), then the revoked families.
  local killed, next = kill_user_tokens(P, ARGV[4], tonumber(ARGV[5]))
  return {next and tostring(next) or '', unpack(killed)}
end
return redis.error_reply('unknown token op')
