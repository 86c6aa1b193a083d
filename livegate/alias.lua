-- Sets, changes or removes one alias of livegate in one atomic step. It
-- takes the next global seq, stores the alias with that seq, appends an
-- alias envelope to the global log and PUBLISHes it. So every gateway's
-- subscriber writes the change into its ring in seq order with the
-- documents, and the gaps it repairs from the log include alias changes.
--
-- KEYS[1] P:epoch     KEYS[3] P:aliases    KEYS[5] P:channels
-- KEYS[2] P:seq       KEYS[4] P:log
--
-- ARGV[1] alias name (validated by the caller)
-- ARGV[2] target channel (validated by the caller), "" to remove the alias
-- ARGV[3] epoch to start when P:epoch is missing
-- ARGV[4] updates to keep in P:log
-- ARGV[5] Pub/Sub channel (P:bus)
--
-- Returns {status, seq, epoch, previous target}:
--   status 1: done;  0: the alias already points there (seq is its seq);
--   -1: the alias name is a channel;  -2: the target is an alias;
--   -3: there is no such alias to remove.

local alias = ARGV[1]
local target = ARGV[2]

if redis.call('HEXISTS', KEYS[5], alias) == 1 then
  return {-1, 0, '', ''}
end
if target ~= '' and redis.call('HEXISTS', KEYS[3], target) == 1 then
  return {-2, 0, '', ''}
end

local previous = ''
local current = redis.call('HGET', KEYS[3], alias)
if current then
  local entry = cjson.decode(current)
  previous = entry['target']
  if previous == target then
    return {0, entry['seq'], redis.call('GET', KEYS[1]) or '', previous}
  end
elseif target == '' then
  return {-3, 0, '', ''}
end

local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[1], epoch)
end
local seq = redis.call('INCR', KEYS[2])
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

if target == '' then
  redis.call('HDEL', KEYS[3], alias)
else
  redis.call('HSET', KEYS[3], alias, cjson.encode({target = target, seq = seq, ts = ts}))
end

local packed = cmsgpack.pack({
  v = 1, epoch = epoch, seq = seq, channel = alias, version = 0, prev_seq = 0,
  ts = ts, kind = 'alias', target = target,
})
redis.call('ZADD', KEYS[4], seq, packed)
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[4]) + 1))
redis.call('PUBLISH', ARGV[5], packed)

return {1, seq, epoch, previous}
