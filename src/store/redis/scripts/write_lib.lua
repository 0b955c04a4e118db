-- Prepended (after events_lib.lua and rules.lua) to write.lua and update.lua: what
-- every write of a session hash does the same way.

-- Where a patch field lives when it is packed: 1 for 'm:l', 2 for 'm:n', and the
-- position there; nothing for a field stored as it is.
local function packed(f)
  if f == F_I then return 1, L_I elseif f == F_D then return 1, L_D
  elseif f == F_P then return 1, L_P elseif f == F_C then return 2, N_C
  elseif f == F_H then return 2, N_H end
end

-- Applies the patch to the packed metadata `meta` ({limits, identity}) and the user:
-- its deletes (ARGV[last + 1 ..]) first, then its field/value pairs (ARGV[first ..
-- last]). Returns the user as the write leaves it, the field/value pairs to HSET as
-- they are and the fields to HDEL.
local function apply(first, last, meta, user)
  local sets, dels = {}, {}
  for i = last + 1, #ARGV do
    local f = ARGV[i]
    local which, at = packed(f)
    if which then meta[which][at] = ''
    else
      if f == F_U then user = false end
      dels[#dels + 1] = f
    end
  end
  for i = first, last, 2 do
    local f, v = ARGV[i], ARGV[i + 1]
    local which, at = packed(f)
    if which then meta[which][at] = v
    else
      if f == F_U then user = v end
      sets[#sets + 1] = f
      sets[#sets + 1] = v
    end
  end
  return user, sets, dels
end

-- The d: fields a patch touches (sets or deletes), each once.
local function touched(first, last)
  local names, seen = {}, {}
  local function add(f)
    if string.sub(f, 1, 2) == 'd:' and not seen[f] then
      seen[f] = true
      names[#names + 1] = f
    end
  end
  for i = first, last, 2 do add(ARGV[i]) end
  for i = last + 1, #ARGV do add(ARGV[i]) end
  return names
end

-- (Re)indexes a logged-in session `member` that expires at `expires` (in `ttl` ms):
-- its score is the expiry plus the slack, and the index lives at least ttl + slack.
-- Returns the score, the index's TTL and whether this call extended it (the caller
-- keeps the handle map as long).
local function reindex(index, member, ttl, expires)
  local slack = slack_of(ttl)
  redis.call('ZADD', index, expires + slack, member)
  local pttl = redis.call('PTTL', index)
  if pttl < ttl + slack then
    redis.call('PEXPIRE', index, ttl + slack)
    return expires + slack, ttl + slack, true
  end
  return expires + slack, pttl, false
end

-- Deletes a session past its deadline, reporting its expiry once if it was indexed.
local function drop_expired(key, index, member, now)
  redis.call('DEL', key)
  if redis.call('ZREM', index, member) == 1 then expired(index .. 'h', member, now) end
end

-- HSET / HDEL of list[from .. to] (pairs stay whole) in calls of at most CHUNK values
-- (the prelude's: Lua's unpack fails past ~8,000 values, and a session's key count is
-- bounded only per request; concurrent requests may merge more).
local function hset_chunked(key, list, from, to)
  for i = from, to, CHUNK do
    redis.call('HSET', key, unpack(list, i, math.min(i + CHUNK - 1, to)))
  end
end
local function hdel_chunked(key, list, from, to)
  for i = from, to, CHUNK do
    redis.call('HDEL', key, unpack(list, i, math.min(i + CHUNK - 1, to)))
  end
end

-- The patch's deletions: every d: field first when `clear` is '1', then list[from ..
-- to].
local function delete_fields(key, clear, list, from, to)
  if clear == '1' then
    local names = redis.call('HKEYS', key)
    for i = 1, #names do
      if string.sub(names[i], 1, 2) == 'd:' then redis.call('HDEL', key, names[i]) end
    end
  end
  hdel_chunked(key, list, from, to)
end

-- Records the events `kinds` (space-separated) of a write that happened.
local function record(key, now, kinds)
  if STREAM == '' or kinds == '' then return end
  local m = redis.call('HMGET', key, F_N, F_U, F_IP, F_X, F_UA, F_UA2, F_UA3, F_UA4)
  local ua = user_agent(m, 5)
  for kind in string.gmatch(kinds, '%S+') do
    xadd(now, kind, '', handle_of(m[1]), m[2], m[3], ua, m[4])
  end
end
