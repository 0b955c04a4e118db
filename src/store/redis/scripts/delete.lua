-- Deletes a session and its entry in the user index of its slot.
-- KEYS[1] the session key; KEYS[2] the user index of the same slot;
-- ARGV[1] the session's index member (the last segment of KEYS[1]).
-- Returns 1 if the session existed, else 0.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
