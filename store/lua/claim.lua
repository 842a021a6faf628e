-- claim.lua binds a request id to one request, before any write (redis_claim.go
-- says why, and walks through every interleaving with write.lua).
--
-- Replies: {'new'} when the id was free and is now bound to this request;
-- {'bound', request} when it was already bound, to this request or another;
-- {'lost', 'other' | 'missing'} when the claim's partition marker does not
-- hold this store's id.

-- KEYS
local marker_key = KEYS[1] -- the marker of the claim's partition
local claim_key = KEYS[2]  -- the claim: the request the id is bound to

-- ARGV
local store_id = ARGV[1]   -- the marker's id: the layout and the store id
local request = ARGV[2]    -- the request claiming the id
local ttl_ms = ARGV[3]     -- the request ids' lifetime

-- A wiped or replaced store gets no new keys, as in write.lua. pcall, so that
-- a marker of another type reads as missing rather than failing the script.
local id = redis.pcall('HGET', marker_key, 'id')
if id ~= store_id then return {'lost', type(id) == 'string' and 'other' or 'missing'} end

-- A free id is bound to this request, for as long as request ids live.
local got = redis.call('GET', claim_key)
if not got then
  redis.call('SET', claim_key, request, 'PX', ttl_ms)
  return {'new'}
end

-- A retry of the same request refreshes its binding, which then lives as long
-- as the contact's request id the write refreshes with it.
if got == request then redis.call('PEXPIRE', claim_key, ttl_ms) end

-- Say whose it is: the plan tells a retry (its own request) from another
-- request with the same id.
return {'bound', got}
