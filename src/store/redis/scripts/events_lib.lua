-- Prepended to the session scripts. Lifecycle events go to the namespace's stream in
-- the same atomic step as the change they describe (standalone Redis; a script sets
-- STREAM to the stream key from its arguments, '' when events are off).
-- Each user slot keeps a handle map, <index key>..'h' (<ns>:{<tag>}:uh): index member
-- -> '<handle> <user>', written at login. Its entry is the "expiry not yet reported"
-- mark, shared by index pruning and the keyspace-notification watcher (expired.lua),
-- so each expiry is reported once. The map also holds '#'..handle -> the session's
-- current index member, so a token family bound to a session (by its handle) finds it
-- after its id rotated (token_lib.lua, session_gone).
local STREAM, MAXLEN = '', '0'

-- A session hash packs its metadata (store/record.rs): 'm:t' holds the times and TTL
-- inputs, 'm:n' the creation time and handle, as comma-separated values ('' for none)
-- at the positions T_* and N_* of the prelude.
local function split(packed)
  local out = {}
  for v in string.gmatch(packed .. ',', '([^,]*),') do out[#out + 1] = v end
  return out
end

-- The handle in a session's 'm:n' (false when the session is gone).
local function handle_of(identity)
  return identity and split(identity)[N_H]
end

-- A session's user agent, stored in pieces (m:ua, m:ua2 .. m:ua4; store/record.rs):
-- the values m[i .. i + 3] of an HMGET of F_UA, F_UA2, F_UA3, F_UA4, joined; false
-- when it has none.
local function user_agent(m, i)
  if not m[i] then return false end
  return m[i] .. (m[i + 1] or '') .. (m[i + 2] or '') .. (m[i + 3] or '')
end

-- Most index entries (or token families) one script call reads: pruning, listing and
-- revoking go in steps of this size (store::redis::USER_BATCH).
local USER_BATCH = 100

-- Records that index member `member` is the session `handle` of `user`.
local function map_handle(uh, member, handle, user)
  if handle and handle ~= '' then
    redis.call('HSET', uh, member, handle .. ' ' .. user, '#' .. handle, member)
  else
    redis.call('HSET', uh, member, ' ' .. user)
  end
end

-- Forgets index member `member` (session `handle`, if known).
local function unmap_handle(uh, member, handle)
  redis.call('HDEL', uh, member)
  if handle and handle ~= '' and redis.call('HGET', uh, '#' .. handle) == member then
    redis.call('HDEL', uh, '#' .. handle)
  end
end

-- Appends an event; `details` (the session's m:x, JSON) only when it has some.
local function xadd(now, kind, reason, handle, user, ip, ua, details)
  if STREAM == '' then return end
  if details and details ~= '' then
    redis.call('XADD', STREAM, 'MAXLEN', '~', MAXLEN, '*', 'kind', kind, 'reason', reason,
      'handle', handle or '', 'user', user or '', 'ip', ip or '', 'ua', ua or '',
      'at', now, 'details', details)
  else
    redis.call('XADD', STREAM, 'MAXLEN', '~', MAXLEN, '*', 'kind', kind, 'reason', reason,
      'handle', handle or '', 'user', user or '', 'ip', ip or '', 'ua', ua or '',
      'at', now)
  end
end

-- Reports (once) that index member `member` of the slot whose handle map is `uh`
-- expired. Returns its handle and user, or nothing if it was already reported.
local function expired(uh, member, now)
  local v = redis.call('HGET', uh, member)
  if not v then return nil end
  local sep = string.find(v, ' ', 1, true) or (#v + 1)
  local handle, user = string.sub(v, 1, sep - 1), string.sub(v, sep + 1)
  unmap_handle(uh, member, handle)
  xadd(now, 'expired', '', handle, user)
  return handle, user
end

-- Drops up to USER_BATCH index entries whose score passed (their sessions expired),
-- reporting them; the rest go on later calls.
local function prune(index, now)
  local uh = index .. 'h'
  local gone = redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, USER_BATCH)
  if #gone == 0 then return end
  for _, m in ipairs(gone) do expired(uh, m, now) end
  redis.call('ZREM', index, unpack(gone))
end
