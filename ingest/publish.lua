-- Atomic publish step of livegate: assign the next channel version and
-- global seq, store the snapshot, append to the capped logs and PUBLISH
-- one msgpack envelope. Redis runs a script without interleaving other
-- commands, so every reader sees either all of these effects or none.
--
-- KEYS[1] P:epoch          KEYS[4] P:state:{channel}
-- KEYS[2] P:seq            KEYS[5] P:log:{channel}
-- KEYS[3] P:channels       KEYS[6] P:log
-- KEYS[7] P:aliases (optional: producers that leave it out are not
--         stopped from publishing to an alias name)
--
-- ARGV[1] channel name (already validated by the caller)
-- ARGV[2] base version: the version the change was computed against
--         (0 for a channel that does not exist yet)
-- ARGV[3] kind: "delta" or "snapshot"
-- ARGV[4] patch as JSON text (ignored for a snapshot)
-- ARGV[5] the whole new document as JSON text
-- ARGV[6] epoch to start when P:epoch is missing (state lost or new Redis)
-- ARGV[7] deltas to keep in P:log:{channel}
-- ARGV[8] updates to keep in P:log
-- ARGV[9] Pub/Sub channel (P:bus)
--
-- Returns {1, version, seq, epoch} on success, {0, current_version, 0,
-- epoch} when the base version is stale (the caller recomputes and
-- retries), or {-1, 0, 0, ''} when the channel name is an alias.

if KEYS[7] and redis.call('HEXISTS', KEYS[7], ARGV[1]) == 1 then
  return {-1, 0, 0, ''}
end

local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[6]
  redis.call('SET', KEYS[1], epoch)
end

local current = tonumber(redis.call('HGET', KEYS[4], 'version') or '0')
if current ~= tonumber(ARGV[2]) then
  return {0, current, 0, epoch}
end

local prev_seq = tonumber(redis.call('HGET', KEYS[4], 'seq') or '0')
local version = current + 1
local seq = redis.call('INCR', KEYS[2])
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

-- The first version of a channel has nothing to patch, so it is a snapshot.
local kind = ARGV[3]
if version == 1 then
  kind = 'snapshot'
end

local envelope = {
  v = 1, epoch = epoch, seq = seq, channel = ARGV[1], version = version,
  prev_seq = prev_seq, ts = ts, kind = kind,
}
if kind == 'snapshot' then
  envelope['data'] = ARGV[5]
else
  envelope['patch'] = ARGV[4]
end
local packed = cmsgpack.pack(envelope)

redis.call('HSET', KEYS[4], 'version', version, 'seq', seq, 'ts', ts, 'doc', ARGV[5])
redis.call('HSET', KEYS[3], ARGV[1], version)
redis.call('ZADD', KEYS[5], seq, packed)
redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(tonumber(ARGV[7]) + 1))
redis.call('ZADD', KEYS[6], seq, packed)
redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -(tonumber(ARGV[8]) + 1))
redis.call('PUBLISH', ARGV[9], packed)

return {1, version, seq, epoch}
