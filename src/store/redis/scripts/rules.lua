-- The rules every session write follows, for the scripts (prepended, before
-- write_lib.lua, to write.lua and update.lua): the same rules as store/rules.rs, and
-- tests/stores_agree.rs (rust_and_lua_rules_agree) holds the two equal.

-- The TTL rule: min(idle override or the default, deadline - now); <= 0 once the
-- deadline has passed (the session is deleted, never extended).
local function ttl_of(idle, deadline, default_idle, now)
  local ttl = tonumber(idle) or tonumber(default_idle)
  deadline = tonumber(deadline)
  if deadline and deadline - now < ttl then ttl = deadline - now end
  return ttl
end

-- The size rule (what SessionConfig::with_max_session_size bounds): a data field `f`
-- ('d:' and the key) with value `v` counts the key without 'd:' plus the value.
local function d_len(f, v) return #f - 2 + #v end

-- The bytes the data fields of list[first .. last] (field/value pairs) weigh.
local function set_bytes(list, first, last)
  local n = 0
  for i = first, last, 2 do
    if string.sub(list[i], 1, 2) == 'd:' then n = n + d_len(list[i], list[i + 1]) end
  end
  return n
end

-- The data size once a patch is merged, kept in m:t so a write knows it under
-- concurrent writers: `stored` the stored size, `set` the bytes the patch's data sets
-- weigh, and names[ni + k] / olds[oi + k] (k < n) each field the patch touches with its
-- current value (false when absent), whose bytes it replaces. With `clear` '1' every
-- d: field goes first: only `set` is left.
local function merged_size(stored, set, clear, names, ni, olds, oi, n)
  if clear == '1' then return set end
  local size = set + (tonumber(stored) or 0)
  for k = 0, n - 1 do
    local old = olds[oi + k]
    if old then size = size - d_len(names[ni + k], old) end
  end
  return size
end

-- The index slack: a logged-in session's score in its user index is its expiry plus
-- this, and the index and handle map live at least ttl + slack, so they outlive it.
local function slack_of(ttl) return math.floor(ttl / 2) end
