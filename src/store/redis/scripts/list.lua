-- Lists one page of a user's live sessions, pruning (and reporting) expired index
-- entries on the way (events_lib.lua is prepended).
-- KEYS[1] the user index; ARGV[1] the session key prefix <ns>:{<tag>}:s:;
-- ARGV[2] now, Unix ms; ARGV[3] the user id; ARGV[4] the event stream key ('' = none);
-- ARGV[5] its approximate MAXLEN; ARGV[6] the page's first rank in the index;
-- ARGV[7] the page size (at most USER_BATCH).
-- Returns the next page's first rank ('' after the last page), then 7 strings per
-- session: member, handle, created, last seen, ip, user agent, details ('' when
-- absent).
clock(2) -- now: Redis's, not the caller's
STREAM, MAXLEN = ARGV[4], ARGV[5]
prune(KEYS[1], ARGV[2])
local offset = tonumber(ARGV[6])
local count = math.min(tonumber(ARGV[7]), USER_BATCH)
local members = redis.call('ZRANGE', KEYS[1], offset, offset + count - 1)
local out = {''}
local kept = 0
for _, m in ipairs(members) do
  local f = redis.call('HMGET', ARGV[1] .. m, F_U, F_N, F_T, F_IP, F_X, F_UA, F_UA2, F_UA3,
    F_UA4)
  if not f[1] then
    redis.call('ZREM', KEYS[1], m)
    expired(KEYS[1] .. 'h', m, ARGV[2])
  else
    kept = kept + 1
    if f[1] == ARGV[3] and redis.call('HEXISTS', KEYS[1] .. 'h', m) == 1 then
      local identity, times = split(f[2] or ','), split(f[3] or '')
      out[#out + 1] = m
      out[#out + 1] = identity[N_H]
      out[#out + 1] = identity[N_C]
      out[#out + 1] = times[T_S] or ''
      out[#out + 1] = f[4] or ''
      out[#out + 1] = user_agent(f, 6) or ''
      out[#out + 1] = f[5] or ''
    end
  end
end
-- Entries dropped above shifted the ranks after them.
if #members == count then out[1] = tostring(offset + kept) end
return out
