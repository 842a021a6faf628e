-- write.lua applies one partition's share of a batch atomically (redis_write.go,
-- commit). The writer read the partition's head, the records and the request
-- ids, folded the events with consent.Apply and chained them in Go (the
-- chain's key never reaches Redis). Every string is built by the writer: the
-- script only compares and stores.
--
-- Replies: {'ok'}; {'conflict'} when something the writer read has changed
-- (it reads again); {'lost', 'other' | 'missing'} when the partition's marker
-- does not hold this store's id; {'error', message} when XADD refused.

-- KEYS
local seq_key = KEYS[1]    -- the partition's sequence: the last event's number
local head_key = KEYS[2]   -- the partition's chain head: the last event's link
local feed_key = KEYS[3]   -- the partition's change feed (a stream)
local marker_key = KEYS[4] -- the partition's marker: the layout and store id, and the count of persistent keys
-- then, per contact c (0-based, in the writer's order): its record and its history;
local function record_key(c) return KEYS[5 + 2 * c] end
local function history_key(c) return KEYS[6 + 2 * c] end

-- ARGV
local store_id = ARGV[1]               -- the marker's id: the layout and the store id
local expected_seq = ARGV[2]           -- the sequence the writer read ('0' for none)
local head_link = ARGV[3]              -- the chain head after this share
local feed_maxlen = ARGV[4]
local request_ttl_ms = ARGV[5]
local contacts = tonumber(ARGV[6])     -- how many contacts follow
local ops = tonumber(ARGV[7])          -- how many events follow
local requests = tonumber(ARGV[8])     -- how many request ids follow
local new_seq = ARGV[9]                -- the sequence after this share
-- then, per contact c (0-based):
local function read_prefix(c) return ARGV[10 + 3 * c] end  -- '<seq>:' of the record read, '' for none
local function new_record(c) return ARGV[11 + 3 * c] end   -- '' when unchanged
local function contact_key(c) return ARGV[12 + 3 * c] end
-- then, per event o (0-based, in sequence order):
local function op_contact(o) return tonumber(ARGV[10 + 3 * contacts + 4 * o]) end -- a contact index c
local function op_stream_id(o) return ARGV[11 + 3 * contacts + 4 * o] end
local function op_history_item(o) return ARGV[12 + 3 * contacts + 4 * o] end -- '<seq>:' .. entry
local function op_erases(o) return ARGV[13 + 3 * contacts + 4 * o] == '1' end
-- then, per request id r (0-based): its key, after the contacts' keys, and its value.
local function request_key(r) return KEYS[5 + 2 * contacts + r] end
local function request_value(r) return ARGV[10 + 3 * contacts + 4 * ops + r] end -- '' for a replay

-- A marker without this store's id means the store was wiped or replaced
-- since this sidecar opened it: writing would mix two stores' data, so
-- nothing is written. So does a marker of another layout: a sidecar of the
-- previous version, still running after consentctl migrate stamped the
-- new one, writes nothing. pcall, so that a marker of another type reads as
-- missing rather than failing the script.
local id = redis.pcall('HGET', marker_key, 'id')
if id ~= store_id then return {'lost', type(id) == 'string' and 'other' or 'missing'} end

-- Another sidecar wrote the partition since the writer read it: the plan
-- rests on stale data, so the writer reads again.
if (redis.call('GET', seq_key) or '0') ~= expected_seq then return {'conflict'} end

-- The same for each contact's record: it must still start with the sequence
-- the writer read, or still be absent. A request id is only ever set together
-- with its contact's record, so this covers the request ids read too.
for c = 0, contacts - 1 do
  local want = read_prefix(c)
  local got = ''
  if want ~= '' then got = redis.call('GETRANGE', record_key(c), 0, #want - 1)
  elseif redis.call('EXISTS', record_key(c)) == 1 then got = 'exists' end
  if got ~= want then return {'conflict'} end
end

-- The change-feed entries go first: a script that fails midway is not rolled
-- back, and XADD is the command that can refuse, so a refusal comes before
-- any other mutation.
for o = 0, ops - 1 do
  local added = redis.pcall('XADD', feed_key, 'MAXLEN', '~', feed_maxlen, op_stream_id(o), 'k', contact_key(op_contact(o)))
  if type(added) == 'table' and added.err then return {'error', added.err} end
end

-- The partition's head moves only when events were added: a share of replays
-- alone leaves it as it was.
if ops > 0 then
  redis.call('SET', seq_key, new_seq)
  redis.call('SET', head_key, head_link)
end

-- created counts the persistent keys this script creates (records,
-- histories) less those it deletes, for the marker: so Audit can tell a key
-- that vanished without a write.
local created = 0

-- Append each event to its contact's history; an erasure first deletes the
-- history, whose deleted key counts back.
for o = 0, ops - 1 do
  local h = history_key(op_contact(o))
  if op_erases(o) then created = created - redis.call('DEL', h) end
  if redis.call('RPUSH', h, op_history_item(o)) == 1 then created = created + 1 end
end

-- Store the changed records.
for c = 0, contacts - 1 do
  if new_record(c) ~= '' then
    redis.call('SET', record_key(c), new_record(c))
    -- The check above made sure a contact read without a record had none.
    if read_prefix(c) == '' then created = created + 1 end
  end
end

if created ~= 0 then redis.call('HINCRBY', marker_key, 'keys', created) end

-- Set the new request ids, which expire. A replayed one is refreshed: a
-- write, so that a WAIT after this script covers the original write too.
for r = 0, requests - 1 do
  if request_value(r) == '' then
    redis.call('PEXPIRE', request_key(r), request_ttl_ms)
  else
    redis.call('SET', request_key(r), request_value(r), 'PX', request_ttl_ms)
  end
end
return {'ok'}
