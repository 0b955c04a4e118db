-- Reads and deletes a session in one step (the first half of a login that moves the
-- session into the user's slot), dropping it from its slot's user index and handle map.
-- The handle's own entry ('#'..handle) stays: a login in the same slot points it at
-- the new member, so token families bound to the session follow it; elsewhere it
-- points at a key that is gone.
-- KEYS[1] the session key; KEYS[2] the user index of the same slot;
-- ARGV[1] the session's index member (the last segment of KEYS[1]).
-- Returns the session's fields as a flat field/value list, empty if it did not exist.
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
  redis.call('DEL', KEYS[1])
  for i = 1, #fields, 2 do
    if fields[i] == F_U then
      redis.call('ZREM', KEYS[2], ARGV[1])
      redis.call('HDEL', KEYS[2] .. 'h', ARGV[1])
    end
  end
end
return fields
