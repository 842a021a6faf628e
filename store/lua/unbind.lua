-- unbind.lua deletes a claim (claim.lua) if it still binds the request.
-- Replies the number of keys deleted: 1, or 0.

-- KEYS
local claim_key = KEYS[1]

-- ARGV
local request = ARGV[1] -- the request whose binding is freed

-- Only this request's binding: it may have expired since and been bound by
-- another request, which keeps it.
if redis.call('GET', claim_key) == request then return redis.call('DEL', claim_key) end
return 0
