-- One conditional write of a session hash (fields: src/store/record.rs) that creates
-- or moves it, keeping the user index of its slot in step. Mirrors MemoryStore::write;
-- the conformance suite checks both. (Updates of an existing key, the hot path, have
-- their own lean script: update.lua.) The user index is written with slack (score =
-- expiry + ttl/2, remembered in m:l) and only touched again once a write's expiry
-- passes that score: scores never fall below a session's real expiry, so pruning by
-- score never drops a live session.
--
-- KEYS[1]  the session key to write: <ns>:{<tag>}:s:<member>
-- KEYS[2]  the user index of the same slot: <ns>:{<tag>}:u
-- KEYS[3]  (rotate only) the current key, renamed to KEYS[1] first; same slot
-- ARGV[1]  mode: MODE_CREATE (only if absent) | MODE_ROTATE
--          | MODE_LOGIN (create + user index + session limit)
-- ARGV[2]  now, Unix ms (the caller's; replaced by Redis's, see `clock`)
-- ARGV[3]  default idle timeout, ms (used when the record has no m:i)
-- ARGV[4]  '1': delete every d: field before the rest
-- ARGV[5]  login: the user's session limit, 0 for none
-- ARGV[6]  login: POLICY_REJECT at the limit | POLICY_EVICT the least recently active
-- ARGV[7]  the index member of KEYS[1] (its last key segment)
-- ARGV[8]  rotate: the index member of KEYS[3]
-- ARGV[9]  n, the number of fields to set
-- ARGV[10] the event stream key ('' = none); ARGV[11] its approximate MAXLEN
-- ARGV[12] events to record once written, space-separated ('created', 'login',
--          'id_rotated', 'refreshed'), or ''
-- ARGV[13] the most data bytes the session may hold after the write (0: no limit)
-- ARGV[14 .. 13+2n] field/value pairs; every later ARGV is a field to delete
-- (events_lib.lua, rules.lua and write_lib.lua are prepended: evictions and expiries found on the
-- way are recorded too, and the slot's handle map <index>h is kept in step with the
-- index.)
-- Every write counts in the record's version (T_V of m:t).
-- Returns strings: {ttl, evicted handles...} when written (ttl > 0, ms); {REPLY_GONE}
-- if the session is gone (or passed its deadline and was deleted); {REPLY_EXISTS} if the
-- target key exists; {REPLY_REJECTED} if the login was rejected by the limit;
-- {REPLY_TOO_LARGE, size} if the data would be `size` bytes, more than ARGV[13]
-- (nothing written). The codes come from protocol.rs (CODES, prepended).
local key, index = KEYS[1], KEYS[2]
local uh = index .. 'h'
STREAM, MAXLEN = ARGV[10], ARGV[11]
local mode = ARGV[1]
local now = clock(2)
local member = ARGV[7]
local evicted = {}
local first = 14
local last = first - 1 + 2 * tonumber(ARGV[9])
-- Created and deadline times the caller gave relative to now ('+<ms>') count from
-- Redis's now.
for i = first, last, 2 do
  local v = ARGV[i + 1]
  if (ARGV[i] == F_D or ARGV[i] == F_C) and string.sub(v, 1, 1) == '+' then
    ARGV[i + 1] = tostring(now + tonumber(string.sub(v, 2)))
  end
end
local max = tonumber(ARGV[13])

-- The stored metadata and data size: none for a new key; a rotation reads them (and
-- the touched data fields) from the key it moves, before moving it.
local times, limits, identity = split(',,0,0'), split(',,,'), split(',')
local user = false
local size
if mode == MODE_CREATE or mode == MODE_LOGIN then
  if redis.call('EXISTS', key) == 1 then return {REPLY_EXISTS} end
  size = set_bytes(ARGV, first, last) -- nothing stored yet
else
  local names = touched(first, last)
  local stored = redis.call('HMGET', KEYS[3], F_T, F_L, F_N, F_U, unpack(names))
  -- Without m:t and m:l (an earlier layout) the record is no session.
  if not stored[1] or not stored[2] then return {REPLY_GONE} end
  times, limits, identity, user = split(stored[1]), split(stored[2]), split(stored[3] or ','),
    stored[4]
  if user and redis.call('HEXISTS', uh, ARGV[8]) == 0 then
    -- Logged in without its handle-map entry: over (see update.lua).
    redis.call('DEL', KEYS[3])
    redis.call('ZREM', index, ARGV[8])
    return {REPLY_GONE}
  end
  size = merged_size(times[T_Z], set_bytes(ARGV, first, last), ARGV[4], names, 1, stored, 5, #names)
end
if max > 0 and size > max then return {REPLY_TOO_LARGE, tostring(size)} end

if mode == MODE_ROTATE then
  if redis.call('RENAMENX', KEYS[3], key) == 0 then return {REPLY_EXISTS} end
  -- The handle's entry moves to the new member below.
  if redis.call('ZREM', index, ARGV[8]) == 1 then redis.call('HDEL', uh, ARGV[8]) end
end

if mode == MODE_LOGIN then
  prune(index, ARGV[2])
  local limit = tonumber(ARGV[5])
  if limit > 0 then
    local prefix = string.sub(key, 1, #key - #member)
    local live = {}
    for _, m in ipairs(redis.call('ZRANGE', index, 0, -1)) do
      local t = redis.call('HGET', prefix .. m, F_T)
      if t then
        live[#live + 1] = {m, tonumber(split(t)[T_S])}
      else
        redis.call('ZREM', index, m)
        expired(uh, m, ARGV[2])
      end
    end
    if #live >= limit then
      if ARGV[6] == POLICY_REJECT then return {REPLY_REJECTED} end
      assert(ARGV[6] == POLICY_EVICT, 'unknown limit policy')
      table.sort(live, function(a, b)
        return a[2] < b[2] or (a[2] == b[2] and a[1] < b[1])
      end)
      for i = 1, #live - limit + 1 do
        local k = prefix .. live[i][1]
        local f = redis.call('HMGET', k, F_N, F_U, F_IP, F_X, F_UA, F_UA2, F_UA3, F_UA4)
        f[1] = handle_of(f[1])
        if f[1] then evicted[#evicted + 1] = f[1] end
        redis.call('DEL', k)
        redis.call('ZREM', index, live[i][1])
        unmap_handle(uh, live[i][1], f[1])
        xadd(ARGV[2], 'revoked', 'evicted_by_cap', f[1], f[2], f[3], user_agent(f, 5), f[4])
      end
    end
  end
end

-- The metadata as this write leaves it (deletes first, then sets).
local sets, dels
user, sets, dels = apply(first, last, {limits, identity}, user)
local ttl = ttl_of(limits[L_I], limits[L_D], ARGV[3], now)
if ttl <= 0 then
  drop_expired(key, index, member, ARGV[2])
  return {REPLY_GONE}
end

delete_fields(key, ARGV[4], dels, 1, #dels)
local expires = now + ttl
if user then
  -- (Re)index with slack; the index outlives its longest session.
  local score, pttl, extended = reindex(index, member, ttl, expires)
  -- The handle map lives as long as the index.
  if mode == MODE_LOGIN or mode == MODE_ROTATE then
    map_handle(uh, member, identity[N_H], user)
    redis.call('PEXPIRE', uh, pttl)
  elseif extended then
    redis.call('PEXPIRE', uh, pttl)
  end
  limits[L_R] = tostring(score)
end
times[T_E], times[T_S], times[T_Z] = tostring(expires), ARGV[2], tostring(size)
times[T_V] = (tonumber(times[T_V]) or 0) + 1
local t, l, n = table.concat(times, ','), table.concat(limits, ','), table.concat(identity, ',')
if #sets <= CHUNK then
  redis.call('HSET', key, F_T, t, F_L, l, F_N, n, unpack(sets))
else
  redis.call('HSET', key, F_T, t, F_L, l, F_N, n)
  hset_chunked(key, sets, 1, #sets)
end
redis.call('PEXPIRE', key, ttl)
record(key, ARGV[2], ARGV[12])
return {tostring(ttl), unpack(evicted)}
