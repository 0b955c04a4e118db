-- Revokes sessions of a user in bounded steps, pruning (and reporting) expired index
-- entries on the way (token_lib.lua and events_lib.lua are prepended).
-- KEYS[1] the user index; ARGV[1] the session key prefix <ns>:{<tag>}:s:;
-- ARGV[2] now, Unix ms; ARGV[3] the user id;
-- ARGV[4] REVOKE_HANDLE: the session whose handle is ARGV[5] | REVOKE_ALL: all
--         | REVOKE_OTHERS: all but member ARGV[5] (codes from protocol.rs, prepended)
-- ARGV[6] the event stream key ('' = none); ARGV[7] its approximate MAXLEN;
-- ARGV[8] the reason recorded with each revocation (EventKind::reason);
-- ARGV[9] how many index entries the previous step kept (0 on the first); ARGV[10]
-- the same for the slot's token-family index; ARGV[11] '1' on the first step of the
-- call.
-- A logged-in session is live only while the handle map holds it, so the first step
-- of REVOKE_ALL deletes the map and that of REVOKE_OTHERS keeps only the current
-- session's entries: the sessions end at once, even those a lost (evicted) index no
-- longer lists. The walk over the index then deletes them and records their events.
-- Returns {sessions kept, families kept, revoked handles...}; a count is '' once that
-- part is done. One step reads at most USER_BATCH index entries beyond those the
-- previous one kept (the current session; other users' only under a tag collision)
-- and, once the sessions are done, ('a', log out everywhere) as many token families.
-- The caller repeats the step, passing the counts back, until both are ''.
clock(2) -- now: Redis's, not the caller's
STREAM, MAXLEN = ARGV[6], ARGV[7]
local index, uh = KEYS[1], KEYS[1] .. 'h'
prune(index, ARGV[2])
local mode, arg, reason = ARGV[4], ARGV[5], ARGV[8]
local out = {'', ''}

local function revoke(m, f)
  redis.call('DEL', ARGV[1] .. m)
  redis.call('ZREM', index, m)
  unmap_handle(uh, m, f[2])
  xadd(ARGV[2], 'revoked', reason, f[2], f[1], f[3], user_agent(f, 5), f[4])
  out[#out + 1] = f[2]
end

local function fields(m)
  local f = redis.call('HMGET', ARGV[1] .. m, F_U, F_N, F_IP, F_X, F_UA, F_UA2, F_UA3, F_UA4)
  f[2] = handle_of(f[2])
  return f
end

if mode == REVOKE_HANDLE then
  -- The handle map names the session's current member: no scan.
  local m = redis.call('HGET', uh, '#' .. arg)
  if m then
    local f = fields(m)
    if f[1] == ARGV[3] and f[2] == arg then revoke(m, f) end
  end
else
  assert(mode == REVOKE_ALL or mode == REVOKE_OTHERS, 'unknown revoke mode')
  if ARGV[11] == '1' then
    local kept = mode == REVOKE_OTHERS and redis.call('HGET', uh, arg)
    redis.call('DEL', uh)
    if kept then
      local handle = string.match(kept, '^(%S*) ')
      if handle and handle ~= '' then
        redis.call('HSET', uh, arg, kept, '#' .. handle, arg)
      else
        redis.call('HSET', uh, arg, kept)
      end
      -- The map outlives the sessions it holds (the index, if it was lost, no longer
      -- says how long they live: the kept session does).
      local ttl = math.max(redis.call('PTTL', index), redis.call('PTTL', ARGV[1] .. arg))
      if ttl > 0 then redis.call('PEXPIRE', uh, ttl) end
    end
  end
  -- The walk goes by what is left, not by rank: every visited entry is deleted but
  -- the kept ones (the current session; another user's, under a tag collision), so
  -- the index holds the kept entries and the unvisited ones. A step reads from rank 0
  -- as many entries as the previous step kept, plus USER_BATCH: a kept session that
  -- was re-scored between steps (a threshold refresh moves it to the end) can no
  -- longer make the walk skip one.
  local seen = tonumber(ARGV[9])
  local window = seen + USER_BATCH
  local members = redis.call('ZRANGE', index, 0, window - 1)
  local kept = 0
  for _, m in ipairs(members) do
    local f = fields(m)
    if not f[1] then
      redis.call('ZREM', index, m)
      expired(uh, m, ARGV[2])
    elseif f[1] == ARGV[3] and (mode == REVOKE_ALL or m ~= arg) then
      revoke(m, f)
    else
      kept = kept + 1
    end
  end
  if #members == window then out[1] = tostring(kept) end
  if out[1] == '' and mode == REVOKE_ALL then
    local _, next = kill_user_tokens(string.sub(ARGV[1], 1, -3), ARGV[3],
      tonumber(ARGV[10]))
    if next then out[2] = tostring(next) end
  end
end
-- (An empty index is gone by itself; the handle map empties as its sessions go, and
-- may hold a session a lost index no longer lists: it expires with its TTL.)
return out
