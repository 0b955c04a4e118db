-- The update of an existing session (only if present), the write of every
-- read-modify-write and TTL refresh: the hot path, kept to the fewest Redis calls and
-- the least Lua. Each redis.call costs ~1 µs of Redis CPU inside a script, and every
-- closure, table and number turned into text counts at this scale. The common case is
-- TIME, HMGET (existence, m:t, m:l and the touched fields' old values), HSET of m:t
-- and the patch, PEXPIRE; m:l is parsed with one pattern and written back only when
-- the patch or a re-index changes it. The rare paths' helpers (events_lib.lua and
-- write_lib.lua) are built only when a call needs them: `lib()` (scripts.rs); rules.lua
-- is prepended as it is. The caller precomputes what it can (protocol.rs, Update).
-- Mirrors MemoryStore::write's update; the conformance suite checks both.
--
-- KEYS[1]  the session key: <ns>:{<tag>}:s:<member>
-- KEYS[2]  the user index of the same slot: <ns>:{<tag>}:u
-- ARGV[1]  now, Unix ms (the caller's; replaced by Redis's, see `clock`)
-- ARGV[2]  default idle timeout, ms (used when the record has no idle override)
-- ARGV[3]  '1': delete every d: field before the rest
-- ARGV[4]  the index member of KEYS[1] (its last key segment)
-- ARGV[5]  the event stream key ('' = none); ARGV[6] its approximate MAXLEN
-- ARGV[7]  events to record once written, space-separated, or ''
-- ARGV[8]  the most data bytes the session may hold after the write (0: no limit)
-- ARGV[9]  the data bytes the patch sets (key names without 'd:', plus values)
-- ARGV[10] the idle override, ARGV[11] the deadline, ARGV[12] the persistent flag,
--          each META_UNCHANGED, META_REMOVED or the new value
-- ARGV[13] '1': read the key once written, so Redis tracks it again for the caller's
--          connection (the local cache; a write under NOLOOP ends that tracking)
-- ARGV[14] n, the data fields the patch touches (none when ARGV[3] is '1')
-- ARGV[15] m, the field/value pairs to set
-- ARGV[16 .. 15+n] those data fields; then m field/value pairs; every later ARGV is a
--          field to delete
-- Returns {ttl, version} when written: the TTL set (ms, > 0) and the record's version
-- after this write (each write counts one); {0} if the session is gone (or passed its
-- deadline and was deleted, or is in an earlier layout); {-size} if the merged data
-- would be `size` bytes, more than ARGV[8] (nothing written).
local key, index = KEYS[1], KEYS[2]
local now = clock(1)
local touched = 16
local sets = touched + tonumber(ARGV[14])
local dels = sets + 2 * tonumber(ARGV[15])
local stored = redis.call('HMGET', key, F_T, F_L, F_U, unpack(ARGV, touched, sets - 1))
local times = {string.match(stored[1] or '', T_MATCH)}
local limits = {string.match(stored[2] or '', L_MATCH)}
if #times == 0 or #limits == 0 then return {0} end
local user = stored[3]
if user and redis.call('HEXISTS', index .. 'h', ARGV[4]) == 0 then
  -- Logged in, but its handle-map entry is gone (evicted, or cut by a revocation):
  -- the session is over, and this write must not bring it back.
  redis.call('DEL', key)
  redis.call('ZREM', index, ARGV[4])
  return {0}
end
local relimit = ARGV[10] ~= META_UNCHANGED or ARGV[11] ~= META_UNCHANGED
  or ARGV[12] ~= META_UNCHANGED
if relimit then
  for i, slot in ipairs({L_I, L_D, L_P}) do
    local v = ARGV[9 + i]
    if v ~= META_UNCHANGED then limits[slot] = (v == META_REMOVED) and '' or v end
  end
end
local ttl = ttl_of(limits[L_I], limits[L_D], ARGV[2], now)
if ttl <= 0 then
  lib().drop_expired(key, index, ARGV[4], ARGV[1])
  return {0}
end
local size = merged_size(times[T_Z], tonumber(ARGV[9]), ARGV[3], ARGV, touched, stored, 4,
  sets - touched)
local max = tonumber(ARGV[8])
if max > 0 and size > max then return {-size} end

if ARGV[3] == '1' or dels <= #ARGV then lib().delete_fields(key, ARGV[3], ARGV, dels, #ARGV) end
local expires = now + ttl
if user then
  local indexed = tonumber(limits[L_R])
  if not indexed or expires > indexed then
    -- Re-index; the index and handle map outlive the session.
    local score, pttl, extended = lib().reindex(index, ARGV[4], ttl, expires)
    if extended then redis.call('PEXPIRE', index .. 'h', pttl) end
    limits[L_R] = score
    relimit = true
  end
end
local version = tonumber(times[T_V]) + 1
times[T_E], times[T_S], times[T_Z], times[T_V] = expires, ARGV[1], size, version
local t = table.concat(times, ',')
if dels - sets > CHUNK then
  redis.call('HSET', key, F_T, t, F_L, table.concat(limits, ','))
  lib().hset_chunked(key, ARGV, sets, dels - 1)
elseif relimit then
  redis.call('HSET', key, F_T, t, F_L, table.concat(limits, ','), unpack(ARGV, sets, dels - 1))
else
  redis.call('HSET', key, F_T, t, unpack(ARGV, sets, dels - 1))
end
redis.call('PEXPIRE', key, ttl)
if ARGV[7] ~= '' and ARGV[5] ~= '' then lib().record(key, ARGV[1], ARGV[7]) end
if ARGV[13] == '1' then redis.call('EXISTS', key) end
return {ttl, version}
