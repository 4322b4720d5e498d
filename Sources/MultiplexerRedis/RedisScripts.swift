/// The Lua scripts of the Redis quota store, schema version ``RedisScripts/schemaVersion``.
///
/// Every script takes the namespace prefix (`{ns}:`) as `ARGV[1]` and the key `{ns}:schema` as `KEYS[1]`
/// (which routes it to the namespace's slot in a Redis Cluster; every key the script builds shares the
/// `{ns}` hash tag and so that slot). Time is Redis's own (`TIME`), plus the testing-only offset in
/// `{ns}:clock_offset_ms`. The rules are those of `QuotaState` in MultiplexerCore, line for line.
/// The schema version is part of each script's text, so scripts of two versions have different SHAs
/// and replicas of two versions can run side by side during a rolling deploy.
///
/// ### Slot migrations (Redis Cluster)
/// While the namespace's slot migrates, Redis stops a script at the first command on a key that is not
/// on the node (`Script attempted to access a non local key`), and keeps what the script wrote before
/// that. So every script touches each key it may write *before* its first write: admission reads all
/// its windows before `INCR seq`; settlement and replay `EXISTS` their keys first (`touch`); the others
/// write one key. A stopped script has then changed nothing (at most trimmed expired window entries),
/// and ``RedisClient`` may run it again.
struct RedisScripts: Sendable {
    static let schemaVersion = 2

    /// The scripts for a topology: `touch` costs one `EXISTS` per key and is needed only where a slot
    /// can migrate (Redis Cluster); elsewhere it is a no-op.
    ///
    /// - Parameters:
    ///   - virtualClock: tests only — time is `TIME` plus `{ns}:clock_offset_ms`, so tests can move time forward.
    ///   - migrationSafe: touch every key before the first write (Redis Cluster).
    static func variant(virtualClock: Bool, migrationSafe: Bool) -> RedisScripts {
        switch (virtualClock, migrationSafe) {
        case (false, false): Self.standalone
        case (false, true): Self.cluster
        case (true, false): Self.standaloneVirtualClock
        case (true, true): Self.clusterVirtualClock
        }
    }

    private static let standalone = RedisScripts(virtualClock: false, migrationSafe: false)
    private static let cluster = RedisScripts(virtualClock: false, migrationSafe: true)
    private static let standaloneVirtualClock = RedisScripts(virtualClock: true, migrationSafe: false)
    private static let clusterVirtualClock = RedisScripts(virtualClock: true, migrationSafe: true)

    let admit, settle, replay, cooldown, renew, heartbeat, record, stats, idBlock, cancel, restore: RedisScript

    init(virtualClock: Bool, migrationSafe: Bool) {
        let clock = virtualClock ? Self.virtualClockFunction : Self.clockFunction
        let touch = migrationSafe ? Self.touchFunction : Self.noTouchFunction
        func script(_ body: String) -> RedisScript { RedisScript(Self.header + clock + touch + Self.prelude + body) }
        self.admit = script(Self.admitBody)
        self.settle = script(Self.settleBody)
        self.replay = script(Self.replayBody)
        self.cooldown = script(Self.cooldownBody)
        self.renew = script(Self.renewBody)
        self.heartbeat = script(Self.heartbeatBody)
        self.record = script(Self.recordBody)
        self.stats = script(Self.statsBody)
        self.idBlock = script(Self.idBlockBody)
        self.cancel = script(Self.cancelBody)
        self.restore = script(Self.restoreBody)
    }

    static let header = """
        -- multiplexer quota schema \(schemaVersion)
        local P = ARGV[1]
        local MIN, DAY = 60000, 86400000

        """

    static let clockFunction = """
        local function clock()
          local t = redis.call('TIME')
          return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        end

        """

    static let virtualClockFunction = """
        local function clock()
          local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          local off = redis.call('GET', P .. 'clock_offset_ms')
          if off then now = now + tonumber(off) end
          return now
        end

        """

    static let touchFunction = """
        -- touch every key before the first write (see "Slot migrations" in RedisScripts.swift)
        local function touch(keys)
          for _, k in ipairs(keys) do redis.call('EXISTS', k) end
        end

        """

    static let noTouchFunction = """
        local function touch(keys) end

        """

    static let prelude = """
        -- UTC calendar days and months of budgets (the arithmetic of MultiplexerCore's BudgetCalendar)
        local function utc_civil(ms)
          local z = math.floor(ms / 86400000) + 719468
          local era = math.floor(z / 146097)
          local doe = z - era * 146097
          local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
          local y = yoe + era * 400
          local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
          local mp = math.floor((5 * doy + 2) / 153)
          local d = doy - math.floor((153 * mp + 2) / 5) + 1
          local m = mp + 3
          if mp >= 10 then m = mp - 9 end
          if m <= 2 then y = y + 1 end
          return y, m, d
        end
        local function utc_day(ms) local y, m, d = utc_civil(ms); return string.format('%04d-%02d-%02d', y, m, d) end
        local function utc_month(ms) local y, m = utc_civil(ms); return string.format('%04d-%02d', y, m) end
        local function next_day(ms) return (math.floor(ms / 86400000) + 1) * 86400000 end
        local function next_month(ms)
          local y, m = utc_civil(ms)
          if m == 12 then y = y + 1; m = 1 else m = m + 1 end
          local yy = y
          if m <= 2 then yy = y - 1 end
          local era = math.floor(yy / 400)
          local yoe = yy - era * 400
          local mm = m + 9
          if m > 2 then mm = m - 3 end
          local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + math.floor((153 * mm + 2) / 5)
          return (era * 146097 + doe - 719468) * 86400000
        end
        -- spend: an integer (micro-USD) string per period; a day's lives 35 days, a month's 400
        local SPEND_DAY_TTL, SPEND_MONTH_TTL = 3024000000, 34560000000
        local function spend_get(k) return tonumber(redis.call('GET', k) or '0') end
        local function spend_add(k, amount, ttl)
          if amount == 0 then return end
          redis.call('INCRBY', k, amount)
          redis.call('PEXPIRE', k, ttl)
        end
        local function chunked(cmd, key, items)
          local out = {}
          for i = 1, #items, 500 do
            local part = {}
            for j = i, math.min(i + 499, #items) do part[#part + 1] = items[j] end
            local r = redis.call(cmd, key, unpack(part))
            if type(r) == 'table' then for _, v in ipairs(r) do out[#out + 1] = v end end
          end
          return out
        end
        -- request windows: a sorted set, member = reservation id, score = admission time (ms)
        local function req_count(k, w, now)
          redis.call('ZREMRANGEBYSCORE', k, '-inf', now - w)
          return redis.call('ZCARD', k)
        end
        -- returns the time the next request fits (nil: never) and the window's current count
        local function req_fits_at(k, w, limit, now)
          local n = req_count(k, w, now)
          if limit < 1 then return nil, n end
          if n + 1 <= limit then return now, n end
          local e = redis.call('ZRANGE', k, n - limit, n - limit, 'WITHSCORES')
          return tonumber(e[2]) + w, n
        end
        local function req_add(k, w, id, now)
          redis.call('ZADD', k, now, id)
          redis.call('PEXPIRE', k, w + MIN)
        end
        -- token windows: the sorted set log plus a hash <k>:amounts of id -> tokens and _sum
        local function tok_sum(k, w, now)
          local ak = k .. ':amounts'
          local expired = redis.call('ZRANGEBYSCORE', k, '-inf', now - w)
          if #expired > 0 then
            local amounts = chunked('HMGET', ak, expired)
            local dec = 0
            for i = 1, #amounts do if amounts[i] then dec = dec + tonumber(amounts[i]) end end
            chunked('HDEL', ak, expired)
            if dec ~= 0 then redis.call('HINCRBY', ak, '_sum', -dec) end
            redis.call('ZREMRANGEBYSCORE', k, '-inf', now - w)
          end
          return tonumber(redis.call('HGET', ak, '_sum') or '0')
        end
        -- returns the time `amount` more fits (nil: never) and the window's current sum
        local function tok_fits_at(k, w, amount, limit, now)
          local sum = tok_sum(k, w, now)
          if amount > limit then return nil, sum end
          local excess = sum + amount - limit
          if excess <= 0 then return now, sum end
          local e = redis.call('ZRANGE', k, 0, 255, 'WITHSCORES')
          if #e == 0 then return nil, sum end
          local ids = {}
          for i = 1, #e, 2 do ids[#ids + 1] = e[i] end
          local amounts = redis.call('HMGET', k .. ':amounts', unpack(ids))
          for i = 1, #ids do
            excess = excess - tonumber(amounts[i] or '0')
            if excess <= 0 then return tonumber(e[2 * i]) + w, sum end
          end
          return tonumber(e[#e]) + w, sum
        end
        -- removes one id from a token window (its amount leaves the sum)
        local function tok_remove(k, id)
          local ak = k .. ':amounts'
          local old = redis.call('HGET', ak, id)
          if old then
            redis.call('HDEL', ak, id)
            redis.call('HINCRBY', ak, '_sum', -tonumber(old))
          end
          redis.call('ZREM', k, id)
        end
        -- the idempotency bit of a reservation id: bitmap key and offset (nil: not an id of ours)
        local function settled_bit(id)
          local num = tonumber(id)
          if num == nil or num < 0 or num ~= math.floor(num) then return nil, nil end
          return P .. 'settled:' .. string.format('%d', math.floor(num / 1048576)), num % 1048576
        end
        local function tok_add(k, w, id, amount, now)
          local ak = k .. ':amounts'
          redis.call('ZADD', k, now, id)
          redis.call('HSET', ak, id, amount)
          redis.call('HINCRBY', ak, '_sum', amount)
          redis.call('PEXPIRE', k, w + MIN)
          redis.call('PEXPIRE', ak, w + MIN)
        end
        -- cooldowns only extend: the key's TTL is the remaining cooldown
        local function extend(pp, ms, reason)
          local k = pp .. 'cooldown'
          local ttl = redis.call('PTTL', k)
          if ttl == -1 then return -1 end
          if ms > ttl then
            redis.call('SET', k, reason, 'PX', math.max(1, ms))
            return ms
          end
          return ttl
        end

        """

    /// Admission of one or more requests, in order (the admissions queued together in one pipeline are one
    /// call: ``RedisClient/evalshaBatched(_:keys:head:part:)``). ARGV: prefix, m, then m × (the admission's field
    /// count, then its fields: reservation id (made by the node, see ``idBlockBody``), the epoch the node
    /// knows (`{ns}:fleet` `epoch`), the node's id (for `MONITOR`: which node admitted), key name ('' none), key rpm, key tpm, tier wait ms (-1 none), n,
    /// key daily and monthly budgets (micro-USD), then n ×
    /// (provider, tier 0|1, rpm, rpd, tpm, tpd, max concurrent, tokens, lease ms, cost (micro-USD), daily budget); -1 = no limit).
    ///
    /// Each window, lease set, cooldown and spend is read once per call and followed in Lua from then on; what the
    /// admissions add is written at the end, one `ZADD`/`HSET` per key for the whole call (every entry at the
    /// call's `now`). Each admission gets exactly the reply it would get from a call of its own, run in order
    /// (`AdmissionBatchDifferentialTests`), but the Redis commands per admission fall from ~24 to ~24 / m.
    ///
    /// Returns one reply per admission (an error element for an id that is not a number):  {1, id, index, key remaining requests, key remaining tokens, use, day, month, key spent today,
    /// key spent this month (-1: the key has no budget)} | {7, ms until the period ends, use, 'daily'|'monthly'} (the key's
    /// budget has no room on any candidate) | {2, wait ms, use} |
    /// {3, retry ms | -1, use, (provider, reason, retry ms | -1)…} | {4, retry ms | -1, use} |
    /// {5} (the id was already settled as never used: nothing written) | {6, epoch | ''} (the node's epoch is
    /// not Redis's: Redis lost its data, or the node never connected; nothing written).
    /// `use` is the fleet's current use of every window checked: {key rpm count, key tpm sum, key spend today, key
    /// spend this month, then per candidate checked (in order): rpm count, rpd count, tpm sum, tpd sum, in flight,
    /// spend today} (-1: not checked; spends in micro-USD);
    /// an admitted candidate's use includes this admission.
    static let admitBody = """
            local m = tonumber(ARGV[2])
            -- the data set's epoch, and the live and quiet node counts the last heartbeat found: nodes gone
            -- quiet (heartbeat 3–10 s old) may be serving on their degraded shares without Redis, so each
            -- one's share of every limit counts as used until it is back and has written its admissions
            local fleet = redis.call('HMGET', P .. 'fleet', 'epoch', 'live', 'quiet')
            local epoch = fleet[1]
            local now = clock()
            local live, missing = tonumber(fleet[2] or '0'), tonumber(fleet[3] or '0')
            local function held(limit)
              if missing <= 0 or live < 1 or limit < 0 then return limit end
              return limit - missing * math.floor(limit / live)
            end
            -- the admissions, each as its own ARGV (V[1] the prefix, V[2] the id, … as documented)
            local parts, o = {}, 3
            for j = 1, m do
              local len = tonumber(ARGV[o])
              local V = {P}
              for i = 1, len do V[i + 1] = ARGV[o + i] end
              parts[j] = V
              o = o + len + 1
            end
            -- every admission's settled bit, one BITFIELD per bitmap
            local bits, bitOrder, settledBit, badID = {}, {}, {}, {}
            for j = 1, m do
              local bk, bo = settled_bit(parts[j][2])
              if bk == nil then
                badID[j] = true
              else
                local g = bits[bk]
                if g == nil then g = {ops = {}, parts = {}}; bits[bk] = g; bitOrder[#bitOrder + 1] = bk end
                g.ops[#g.ops + 1] = 'GET'; g.ops[#g.ops + 1] = 'u1'; g.ops[#g.ops + 1] = bo
                g.parts[#g.parts + 1] = j
              end
            end
            for _, bk in ipairs(bitOrder) do
              local g = bits[bk]
              local r = redis.call('BITFIELD', bk, unpack(g.ops))
              for i, j in ipairs(g.parts) do settledBit[j] = r[i] end
            end
            -- Each window is read once per call and then followed in Lua; what the admissions add is written
            -- at the end (all at `now`, so it sorts after every stored entry). The result is what the same
            -- admissions would get one script at a time, in order.
            local RW, RWo = {}, {}
            local function rwin(k, w)
              local c = RW[k]
              if c == nil then
                local n = req_count(k, w, now)
                c = {k = k, w = w, n = n, stored = n, add = {}}
                RW[k] = c; RWo[#RWo + 1] = c
              end
              return c
            end
            -- the time the next request fits (nil: never) and the window's current count
            local function rfits(c, limit)
              local n = c.n
              if limit < 1 then return nil, n end
              if n + 1 <= limit then return now, n end
              local idx = n - limit
              if idx < c.stored then
                local e = redis.call('ZRANGE', c.k, idx, idx, 'WITHSCORES')
                return tonumber(e[2]) + c.w, n
              end
              return now + c.w, n
            end
            local function radd(c, id)
              c.n = c.n + 1
              c.add[#c.add + 1] = now; c.add[#c.add + 1] = id
            end
            local TW, TWo = {}, {}
            local function twin(k, w)
              local c = TW[k]
              if c == nil then
                c = {k = k, w = w, sum = tok_sum(k, w, now), add = {}, amounts = {}, inc = 0}
                TW[k] = c; TWo[#TWo + 1] = c
              end
              return c
            end
            -- the time `amount` more fits (nil: never) and the window's current sum; oldest entries first (the
            -- stored ones, then this call's), at most 256 of them
            local function tfits(c, amount, limit)
              local sum = c.sum
              if amount > limit then return nil, sum end
              local excess = sum + amount - limit
              if excess <= 0 then return now, sum end
              local e = redis.call('ZRANGE', c.k, 0, 255, 'WITHSCORES')
              local last = nil
              if #e > 0 then
                local ids = {}
                for i = 1, #e, 2 do ids[#ids + 1] = e[i] end
                local amounts = redis.call('HMGET', c.k .. ':amounts', unpack(ids))
                for i = 1, #ids do
                  excess = excess - tonumber(amounts[i] or '0')
                  last = tonumber(e[2 * i])
                  if excess <= 0 then return last + c.w, sum end
                end
              end
              local seen = #e / 2
              for i = 2, #c.amounts, 2 do
                if seen >= 256 then break end
                seen = seen + 1
                excess = excess - c.amounts[i]
                last = now
                if excess <= 0 then return now + c.w, sum end
              end
              if last == nil then return nil, sum end
              return last + c.w, sum
            end
            local function tadd(c, id, amount)
              c.sum = c.sum + amount
              c.inc = c.inc + amount
              c.add[#c.add + 1] = now; c.add[#c.add + 1] = id
              c.amounts[#c.amounts + 1] = id; c.amounts[#c.amounts + 1] = amount
            end
            local IF, IFo = {}, {}
            local function inflight(k)
              local c = IF[k]
              if c == nil then
                redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
                local n = redis.call('ZCARD', k)
                c = {k = k, n = n, stored = n, add = {}, first = nil}
                IF[k] = c; IFo[#IFo + 1] = c
              end
              return c
            end
            local PF = {}
            local function flags(pp)
              local f = PF[pp]
              if f == nil then
                f = {disabled = redis.call('EXISTS', pp .. 'disabled'), cooldown = redis.call('PTTL', pp .. 'cooldown')}
                PF[pp] = f
              end
              return f
            end
            local SP, SPo = {}, {}
            local function spend(k)
              local c = SP[k]
              if c == nil then c = {k = k, inc = 0, ttl = 0}; SP[k] = c; SPo[#SPo + 1] = c end
              return c
            end
            local function sget(k)
              local c = spend(k)
              if c.v == nil then c.v = spend_get(k) end
              return c.v + c.inc
            end
            local function sadd(k, amount, ttl)
              if amount == 0 then return end
              local c = spend(k)
              c.inc = c.inc + amount
              c.ttl = ttl
            end
            local costs = {}
            local function admit_one(j, V)
              local id = V[2]
              if epoch == false or epoch ~= V[3] then return {6, epoch or ''} end
              if badID[j] then return redis.error_reply('admit: reservation id is not a number: ' .. id) end
              if settledBit[j] == 1 then return {5} end
              local keyName = V[5]
              local keyRpm, keyTpm = tonumber(V[6]), tonumber(V[7])
              local tierWait = tonumber(V[8])
              local n = tonumber(V[9])
              local keyDaily, keyMonthly = tonumber(V[10]), tonumber(V[11])
              -- the UTC day and month, computed only when a budget or a cost is involved
              local needsPeriod = keyDaily >= 0 or keyMonthly >= 0
              for i = 0, n - 1 do
                local b = 12 + i * 11
                if tonumber(V[b + 9]) > 0 or tonumber(V[b + 10]) >= 0 then needsPeriod = true end
              end
              local day, month = '', ''
              if needsPeriod then day, month = utc_day(now), utc_month(now) end
              local keyBudgetPeriod = nil
              -- whether the key's budget alone rules out every candidate (then the answer is insufficient_quota)
              local keyBudgetAll = n > 0
              local KP = P .. 'key:' .. keyName .. ':'
              local use = {-1, -1, -1, -1}
              if keyName ~= '' and keyRpm >= 0 then
                local at, cnt = rfits(rwin(KP .. 'rpm', MIN), held(keyRpm))
                use[1] = cnt
                if at == nil then return {4, -1, use} end
                if at > now then return {4, at - now, use} end
              end
              if keyName ~= '' and keyTpm >= 0 then use[2] = twin(KP .. 'tpm', MIN).sum end
              if keyName ~= '' and keyDaily >= 0 then use[3] = sget(KP .. 'spend:' .. day) end
              if keyName ~= '' and keyMonthly >= 0 then use[4] = sget(KP .. 'spend:' .. month) end
              local blocked = {}
              local earliest, earliestPrimary = nil, nil
              local onlyKey = true
              for i = 0, n - 1 do
                local b = 12 + i * 11
                local name, tier = V[b], tonumber(V[b + 1])
                local rpm, rpd, tpm, tpd = tonumber(V[b + 2]), tonumber(V[b + 3]), tonumber(V[b + 4]), tonumber(V[b + 5])
                local conc, tokens, lease = tonumber(V[b + 6]), tonumber(V[b + 7]), tonumber(V[b + 8])
                local cost, budget = tonumber(V[b + 9]), tonumber(V[b + 10])
                if tier == 1 and tierWait >= 0 and earliestPrimary ~= nil and earliestPrimary - now <= tierWait then
                  return {2, math.max(1, earliestPrimary - now), use}
                end
                local pp = P .. 'provider:' .. name .. ':'
                local u = #use
                use[u + 1], use[u + 2], use[u + 3], use[u + 4], use[u + 5], use[u + 6] = -1, -1, -1, -1, -1, -1
                local reason, freeAt = nil, now
                local function block(r, at)
                  if reason == nil then reason = r end
                  if freeAt ~= nil then
                    if at == nil then freeAt = nil else freeAt = math.max(freeAt, at) end
                  end
                end
                local f = flags(pp)
                if f.disabled == 1 then block('disabled', nil) end
                local cd = f.cooldown
                if cd > 0 then block('cooldown', now + cd) elseif cd == -1 then block('cooldown', nil) end
                if rpm >= 0 then
                  local at, cnt = rfits(rwin(pp .. 'rpm', MIN), held(rpm))
                  use[u + 1] = cnt
                  if at == nil or at > now then block('rpm', at) end
                end
                if rpd >= 0 then
                  local at, cnt = rfits(rwin(pp .. 'rpd', DAY), held(rpd))
                  use[u + 2] = cnt
                  if at == nil or at > now then block('rpd', at) end
                end
                if tpm >= 0 then
                  local at, sum = tfits(twin(pp .. 'tpm', MIN), tokens, held(tpm))
                  use[u + 3] = sum
                  if at == nil or at > now then block('tpm', at) end
                end
                if tpd >= 0 then
                  local at, sum = tfits(twin(pp .. 'tpd', DAY), tokens, held(tpd))
                  use[u + 4] = sum
                  if at == nil or at > now then block('tpd', at) end
                end
                local ic = inflight(pp .. 'inflight')
                use[u + 5] = ic.n
                if conc >= 0 and ic.n >= held(conc) then
                  local soon = now + 1000
                  if ic.stored > 0 then
                    local s = redis.call('ZRANGE', ic.k, 0, 0, 'WITHSCORES')
                    if #s > 0 then soon = math.min(tonumber(s[2]), soon) end
                  end
                  if ic.first ~= nil then soon = math.min(ic.first, soon) end
                  if held(conc) < 1 then soon = nil end
                  block('concurrency', soon)
                end
                if budget >= 0 then
                  local spent = sget(pp .. 'spend:' .. day)
                  use[u + 6] = spent
                  -- a quiet node's degraded share of the budget counts as spent, as for every limit
                  if spent + cost > held(budget) then block('budget', next_day(now)) end
                end
                local providerBlocked = reason ~= nil
                if keyName ~= '' and keyTpm >= 0 then
                  local at = tfits(twin(KP .. 'tpm', MIN), tokens, held(keyTpm))
                  if at == nil or at > now then block('key_tpm', at) end
                end
                local keyBudgetBlocks = false
                if keyName ~= '' then
                  if keyMonthly >= 0 and sget(KP .. 'spend:' .. month) + cost > held(keyMonthly) then
                    block('key_budget', next_month(now))
                    keyBudgetPeriod = 'monthly'
                    keyBudgetBlocks = true
                  elseif keyDaily >= 0 and sget(KP .. 'spend:' .. day) + cost > held(keyDaily) then
                    block('key_budget', next_day(now))
                    if keyBudgetPeriod == nil then keyBudgetPeriod = 'daily' end
                    keyBudgetBlocks = true
                  end
                end
                if not keyBudgetBlocks then keyBudgetAll = false end
                if reason == nil then
                  if rpm >= 0 then radd(RW[pp .. 'rpm'], id); use[u + 1] = use[u + 1] + 1 end
                  if rpd >= 0 then radd(RW[pp .. 'rpd'], id); use[u + 2] = use[u + 2] + 1 end
                  if tpm >= 0 then tadd(TW[pp .. 'tpm'], id, tokens); use[u + 3] = use[u + 3] + tokens end
                  if tpd >= 0 then tadd(TW[pp .. 'tpd'], id, tokens); use[u + 4] = use[u + 4] + tokens end
                  ic.n = ic.n + 1
                  ic.add[#ic.add + 1] = now + lease; ic.add[#ic.add + 1] = id
                  if ic.first == nil or now + lease < ic.first then ic.first = now + lease end
                  use[u + 5] = ic.n
                  local remReq, remTok = -1, -1
                  local keySpentDay, keySpentMonth = -1, -1
                  if cost > 0 and use[u + 6] >= 0 then use[u + 6] = use[u + 6] + cost end
                  if cost > 0 and keyName ~= '' then
                    if use[3] >= 0 then use[3] = use[3] + cost end
                    if use[4] >= 0 then use[4] = use[4] + cost end
                  end
                  if cost > 0 then
                    -- what this reservation holds of the budgets, until it is settled (a lost reply is cancelled
                    -- with it: the cancel refunds exactly this)
                    costs[#costs + 1] = {id, name, keyName, cost, day, month}
                    sadd(pp .. 'spend:' .. day, cost, SPEND_DAY_TTL)
                    if keyName ~= '' then
                      sadd(KP .. 'spend:' .. day, cost, SPEND_DAY_TTL)
                      sadd(KP .. 'spend:' .. month, cost, SPEND_MONTH_TTL)
                    end
                  end
                  if keyName ~= '' and (keyDaily >= 0 or keyMonthly >= 0) then
                    keySpentDay, keySpentMonth = sget(KP .. 'spend:' .. day), sget(KP .. 'spend:' .. month)
                  end
                  if keyName ~= '' then
                    if keyRpm >= 0 then
                      radd(RW[KP .. 'rpm'], id)
                      use[1] = use[1] + 1
                      remReq = math.max(0, keyRpm - use[1])
                    end
                    if keyTpm >= 0 then
                      tadd(TW[KP .. 'tpm'], id, tokens)
                      use[2] = use[2] + tokens
                      remTok = math.max(0, keyTpm - use[2])
                    end
                  end
                  return {1, id, i, remReq, remTok, use, day, month, keySpentDay, keySpentMonth}
                end
                if providerBlocked then onlyKey = false end
                local ra = -1
                if freeAt ~= nil then
                  ra = math.max(1, freeAt - now)
                  if earliest == nil or freeAt < earliest then earliest = freeAt end
                  if tier == 0 and (earliestPrimary == nil or freeAt < earliestPrimary) then earliestPrimary = freeAt end
                end
                blocked[#blocked + 1] = name
                blocked[#blocked + 1] = reason
                blocked[#blocked + 1] = ra
              end
              local ra = -1
              if earliest ~= nil then ra = math.max(1, earliest - now) end
              if keyBudgetAll and keyBudgetPeriod ~= nil then
                local ends = next_day(now)
                if keyBudgetPeriod == 'monthly' then ends = next_month(now) end
                return {7, math.max(1, ends - now), use, keyBudgetPeriod}
              end
              if onlyKey and #blocked > 0 then return {4, ra, use} end
              local out = {3, ra, use}
              for _, v in ipairs(blocked) do out[#out + 1] = v end
              return out
            end
            local out = {}
            for j = 1, m do out[j] = admit_one(j, parts[j]) end
            -- the writes, after every read (see "Slot migrations")
            local fresh = {}
            for _, c in ipairs(costs) do fresh[#fresh + 1] = P .. 'cost:' .. c[1] end
            touch(fresh)
            for _, c in ipairs(RWo) do
              if #c.add > 0 then
                redis.call('ZADD', c.k, unpack(c.add))
                redis.call('PEXPIRE', c.k, c.w + MIN)
              end
            end
            for _, c in ipairs(TWo) do
              if #c.add > 0 then
                local ak = c.k .. ':amounts'
                redis.call('ZADD', c.k, unpack(c.add))
                redis.call('HSET', ak, unpack(c.amounts))
                redis.call('HINCRBY', ak, '_sum', c.inc)
                redis.call('PEXPIRE', c.k, c.w + MIN)
                redis.call('PEXPIRE', ak, c.w + MIN)
              end
            end
            for _, c in ipairs(IFo) do
              if #c.add > 0 then redis.call('ZADD', c.k, unpack(c.add)) end
            end
            for _, c in ipairs(costs) do
              local ck = P .. 'cost:' .. c[1]
              redis.call('HSET', ck, 'p', c[2], 'k', c[3], 'c', c[4], 'd', c[5], 'm', c[6])
              redis.call('PEXPIRE', ck, 86400000)
            end
            for _, c in ipairs(SPo) do spend_add(c.k, c.inc, c.ttl) end
            return out
            """

    /// A node whose heartbeat is older than this (but younger than the 10 s liveness) is *quiet*: it may be
    /// cut off from Redis and serving on its degraded share, so admission counts that share as used. Every
    /// heartbeat recounts the quiet nodes into `{ns}:fleet`, so admission reads one hash, not the node set.
    static let quietNodeMs = 3000

    /// A block of 2^20 reservation ids for one node. ARGV: prefix. Returns the block number `b`; the node
    /// hands out ids `b × 2^20 … b × 2^20 + 2^20 − 1` (each block is exactly one `settled` bitmap).
    ///
    /// Blocks come from `{ns}:seq` (which the admission of schema versions before ids were made by nodes
    /// incremented), and never start below Redis's current unix second: after Redis lost its data, new
    /// blocks still lie above every block handed out before (a fleet takes far fewer than one block per
    /// second), so an id of a reservation from before the loss is never handed out again. `seq` is left at
    /// the block's last id, so an older node's `INCR` lands above it. Ids stay below 2^53 (exact in Lua)
    /// until the year 2242.
    static let idBlockBody = """
            local now = clock()
            local s = redis.call('INCR', P .. 'seq')
            local b = math.max(math.floor(s / 1048576) + 1, math.floor(now / 1000))
            redis.call('SET', P .. 'seq', string.format('%d', b * 1048576 + 1048575))
            return b
            """

    /// Undoes an admission whose reply was lost. ARGV: prefix, id, key ('' none), then the providers of the
    /// request's candidates. Marks the id settled (so an admission still on its way applies nothing, and a
    /// second cancel nothing) and removes it from every window and lease it may have entered. Returns 1, or 0
    /// if the id had been settled already.
    static let cancelBody = """
            local id = ARGV[2]
            local bk, bo = settled_bit(id)
            if bk == nil then return redis.error_reply('cancel: reservation id is not a number: ' .. id) end
            local keys = {bk}
            if ARGV[3] ~= '' then
              local kp = P .. 'key:' .. ARGV[3] .. ':'
              keys[#keys + 1] = kp .. 'rpm'; keys[#keys + 1] = kp .. 'tpm'; keys[#keys + 1] = kp .. 'tpm:amounts'
            end
            for i = 4, #ARGV do
              local pp = P .. 'provider:' .. ARGV[i] .. ':'
              for _, w in ipairs({'rpm', 'rpd', 'tpm', 'tpd', 'tpm:amounts', 'tpd:amounts', 'inflight'}) do keys[#keys + 1] = pp .. w end
            end
            keys[#keys + 1] = P .. 'cost:' .. id
            touch(keys)
            if redis.call('SETBIT', bk, bo, 1) == 1 then return 0 end
            redis.call('PEXPIRE', bk, 900000)
            -- its reserved cost, if it had one, leaves the budgets too
            local held = redis.call('HMGET', P .. 'cost:' .. id, 'p', 'k', 'c', 'd', 'm')
            if held[1] then
              local c = -tonumber(held[3])
              spend_add(P .. 'provider:' .. held[1] .. ':spend:' .. held[4], c, SPEND_DAY_TTL)
              if held[2] ~= '' then
                spend_add(P .. 'key:' .. held[2] .. ':spend:' .. held[4], c, SPEND_DAY_TTL)
                spend_add(P .. 'key:' .. held[2] .. ':spend:' .. held[5], c, SPEND_MONTH_TTL)
              end
              redis.call('DEL', P .. 'cost:' .. id)
            end
            if ARGV[3] ~= '' then
              local kp = P .. 'key:' .. ARGV[3] .. ':'
              redis.call('ZREM', kp .. 'rpm', id)
              tok_remove(kp .. 'tpm', id)
            end
            for i = 4, #ARGV do
              local pp = P .. 'provider:' .. ARGV[i] .. ':'
              redis.call('ZREM', pp .. 'rpm', id)
              redis.call('ZREM', pp .. 'rpd', id)
              tok_remove(pp .. 'tpm', id)
              tok_remove(pp .. 'tpd', id)
              redis.call('ZREM', pp .. 'inflight', id)
            end
            return 1
            """

    /// The fields of one admission in ``restoreBody``.
    static let restoreFields = 10

    /// Writes admissions Redis does not know: those a node made while Redis was unreachable, and, after
    /// Redis lost its data, the node's own admissions of the last minute. ARGV: prefix, schema version, a
    /// new epoch, then n × (id, provider, key ('' none), age ms (how long ago it was admitted), tokens
    /// charged, windows (bits: 1 rpm, 2 rpd, 4 tpm, 8 tpd, 16 key rpm, 32 key tpm), lease ms (0: settled,
    /// not in flight), cost (micro-USD: reserved if in flight, real if settled), UTC day and month ('' none)). Each admission enters the windows it counts in, with its admission time, unless
    /// that time has left the window; one still in flight also gets a lease, unless it has been settled.
    /// Idempotent per id (a batch whose reply was lost is sent again). Sets `{ns}:schema` and
    /// `{ns}:fleet`'s `epoch` if they are missing (Redis lost its data, or this is the first node); returns the epoch.
    static let restoreBody = """
            local now = clock()
            local F = \(Self.restoreFields)
            local keys = {P .. 'schema', P .. 'fleet'}
            for i = 4, #ARGV, F do
              local pp = P .. 'provider:' .. ARGV[i + 1] .. ':'
              for _, w in ipairs({'rpm', 'rpd', 'tpm', 'tpd', 'tpm:amounts', 'tpd:amounts', 'inflight'}) do keys[#keys + 1] = pp .. w end
              if ARGV[i + 2] ~= '' then
                local kp = P .. 'key:' .. ARGV[i + 2] .. ':'
                keys[#keys + 1] = kp .. 'rpm'; keys[#keys + 1] = kp .. 'tpm'; keys[#keys + 1] = kp .. 'tpm:amounts'
              end
              if ARGV[i + 8] ~= '' then
                keys[#keys + 1] = pp .. 'spend:' .. ARGV[i + 8]
                keys[#keys + 1] = P .. 'spent:' .. ARGV[i]
                keys[#keys + 1] = P .. 'cost:' .. ARGV[i]
                if ARGV[i + 2] ~= '' then
                  keys[#keys + 1] = P .. 'key:' .. ARGV[i + 2] .. ':spend:' .. ARGV[i + 8]
                  keys[#keys + 1] = P .. 'key:' .. ARGV[i + 2] .. ':spend:' .. ARGV[i + 9]
                end
              end
            end
            touch(keys)
            redis.call('SET', P .. 'schema', ARGV[2], 'NX')
            redis.call('HSETNX', P .. 'fleet', 'epoch', ARGV[3])
            local function req(k, w, id, t)
              if t > now - w then
                redis.call('ZADD', k, t, id)
                redis.call('PEXPIRE', k, w + MIN)
              end
            end
            local function tok(k, w, id, t, amount)
              if t > now - w then
                local ak = k .. ':amounts'
                redis.call('ZADD', k, t, id)
                if redis.call('HSETNX', ak, id, amount) == 1 then redis.call('HINCRBY', ak, '_sum', amount) end
                redis.call('PEXPIRE', k, w + MIN)
                redis.call('PEXPIRE', ak, w + MIN)
              end
            end
            for i = 4, #ARGV, F do
              local id = ARGV[i]
              local pp = P .. 'provider:' .. ARGV[i + 1] .. ':'
              local t = now - tonumber(ARGV[i + 3])
              local amount = tonumber(ARGV[i + 4])
              local w = tonumber(ARGV[i + 5])
              local lease = tonumber(ARGV[i + 6])
              -- its cost joins the day's (and month's) spend, once per id (a batch may be sent again)
              local cost = tonumber(ARGV[i + 7])
              if cost > 0 and ARGV[i + 8] ~= '' and redis.call('SET', P .. 'spent:' .. id, '1', 'NX', 'PX', 86400000) then
                spend_add(pp .. 'spend:' .. ARGV[i + 8], cost, SPEND_DAY_TTL)
                if ARGV[i + 2] ~= '' then
                  spend_add(P .. 'key:' .. ARGV[i + 2] .. ':spend:' .. ARGV[i + 8], cost, SPEND_DAY_TTL)
                  spend_add(P .. 'key:' .. ARGV[i + 2] .. ':spend:' .. ARGV[i + 9], cost, SPEND_MONTH_TTL)
                end
                if lease > 0 then
                  redis.call('HSET', P .. 'cost:' .. id, 'p', ARGV[i + 1], 'k', ARGV[i + 2], 'c', cost, 'd', ARGV[i + 8], 'm', ARGV[i + 9])
                  redis.call('PEXPIRE', P .. 'cost:' .. id, 86400000)
                end
              end
              if w % 2 >= 1 then req(pp .. 'rpm', MIN, id, t) end
              if w % 4 >= 2 then req(pp .. 'rpd', DAY, id, t) end
              if w % 8 >= 4 then tok(pp .. 'tpm', MIN, id, t, amount) end
              if w % 16 >= 8 then tok(pp .. 'tpd', DAY, id, t, amount) end
              if ARGV[i + 2] ~= '' then
                local kp = P .. 'key:' .. ARGV[i + 2] .. ':'
                if w % 32 >= 16 then req(kp .. 'rpm', MIN, id, t) end
                if w % 64 >= 32 then tok(kp .. 'tpm', MIN, id, t, amount) end
              end
              if lease > 0 then
                local bk, bo = settled_bit(id)
                if bk ~= nil and redis.call('GETBIT', bk, bo) == 0 then redis.call('ZADD', pp .. 'inflight', now + lease, id) end
              end
            end
            return redis.call('HGET', P .. 'fleet', 'epoch')
            """

    /// How long the slot of an attempt left mid-way (``MultiplexerCore/SettlementResult/abandoned``,
    /// ``MultiplexerCore/SettlementResult/broken``) stays taken after its settlement: the upstream connection
    /// is closed, but the provider counts the request until it notices (at its next write, typically).
    static let releaseGraceMs = 1000

    /// The number of ARGV fields of one settlement in ``settleBody``.
    static let settlementFields = 24

    /// Settlement of one or more attempts, in order. ARGV: prefix, n, then n × (id, provider, key ('' none),
    /// tier, charged tokens, result, cooldown ms, failure threshold, failure cooldown ms, 7 usage deltas
    /// (requests … fallback_served), model ('' none), model flags (1 fallback + 2 continued), model exhausted 0|1, exhausted
    /// cooldown ms (0 none: the provider's 2xx announced it is out of requests or tokens; reason `exhausted`), reserved
    /// cost and real cost (micro-USD), the admission's UTC day and month ('' when it reserved no cost)).
    /// Idempotent per reservation id for at least 15 minutes, so a batch whose reply was lost can be replayed
    /// safely: a reservation id (the `seq` number admission gave it) is one bit in a bitmap of 2^20 ids,
    /// `{ns}:settled:<id / 2^20>`, whose TTL is renewed to 15 minutes by every settlement in it — 128 KiB per
    /// 1,048,576 reservations, so ~1.3 MiB at 10,000 requests/s instead of a log of every id. Returns one 1
    /// per settlement applied, 0 per settlement that had been applied already.
    ///
    /// A batch costs one `BITFIELD` per bitmap (the idempotency bits), one `HMGET` and at most one `HSET` per
    /// token window (the refunds), one `ZREM` per provider (the leases), one `HINCRBY` per hash and field (the
    /// counters) and one failure-streak `DEL` per provider — whatever the batch size. Failures and
    /// successes of one provider are applied in batch order (a success ends a failure streak).
    static let settleBody = """
            local now = clock()
            local n = tonumber(ARGV[2])
            local W = \(Self.settlementFields)
            local settled = P .. 'settled'
            -- every key the batch may write, once each (a batch is usually one provider many times)
            local touched, seen = {settled}, {}
            local function mayWrite(prefix, suffixes)
              if seen[prefix] then return end
              seen[prefix] = true
              for _, s in ipairs(suffixes) do touched[#touched + 1] = prefix .. s end
            end
            -- the idempotency bit of each settlement: bitmap key and offset (checked before any write)
            local bitKey, bitOffset = {}, {}
            for i = 0, n - 1 do
              local b = 3 + i * W
              bitKey[i], bitOffset[i] = settled_bit(ARGV[b])
              if bitKey[i] == nil then
                return redis.error_reply('settle: reservation id is not a number: ' .. ARGV[b])
              end
              if not seen[bitKey[i]] then seen[bitKey[i]] = true; touched[#touched + 1] = bitKey[i] end
              mayWrite(P .. 'provider:' .. ARGV[b + 1] .. ':', {'inflight', 'tpm:amounts', 'tpd:amounts', 'usage', 'failures', 'cooldown'})
              if ARGV[b + 2] ~= '' then mayWrite(P .. 'key:' .. ARGV[b + 2] .. ':', {'tpm:amounts', 'usage'}) end
              if ARGV[b + 16] ~= '' then mayWrite(P .. 'model:' .. ARGV[b + 16] .. ':', {'usage'}) end
              if ARGV[b + 22] ~= '' then
                touched[#touched + 1] = P .. 'cost:' .. ARGV[b]
                mayWrite(P .. 'provider:' .. ARGV[b + 1] .. ':spend:', {ARGV[b + 22]})
                if ARGV[b + 2] ~= '' then mayWrite(P .. 'key:' .. ARGV[b + 2] .. ':spend:', {ARGV[b + 22], ARGV[b + 23]}) end
              end
            end
            touch(touched)
            -- the id log of earlier versions (`settled`, a sorted set) is no longer written: it drains within
            -- 15 minutes of an upgrade and then disappears
            redis.call('ZREMRANGEBYSCORE', settled, '-inf', now - 900000)
            -- every settlement's idempotency bit set, one BITFIELD per bitmap (in batch order, so an id twice in
            -- one batch applies once)
            local bitOps, bitOrder, bitSettlements, wasSet = {}, {}, {}, {}
            for i = 0, n - 1 do
              local bk = bitKey[i]
              if bitOps[bk] == nil then bitOps[bk] = {}; bitSettlements[bk] = {}; bitOrder[#bitOrder + 1] = bk end
              local ops = bitOps[bk]
              ops[#ops + 1] = 'SET'; ops[#ops + 1] = 'u1'; ops[#ops + 1] = bitOffset[i]; ops[#ops + 1] = 1
              local ss = bitSettlements[bk]
              ss[#ss + 1] = i
            end
            for _, bk in ipairs(bitOrder) do
              local r = redis.call('BITFIELD', bk, unpack(bitOps[bk]))
              for j, i in ipairs(bitSettlements[bk]) do wasSet[i] = r[j] end
              redis.call('PEXPIRE', bk, 900000)
            end
            local function firstSettlement(i) return wasSet[i] == 0 end
            -- increments summed over the batch: hash -> field -> delta (hashes in first-seen order)
            local sums, hashes = {}, {}
            local function add(hash, field, d)
              if d == 0 then return end
              local h = sums[hash]
              if h == nil then h = {}; sums[hash] = h; hashes[#hashes + 1] = hash end
              h[field] = (h[field] or 0) + d
            end
            -- token refunds, per window: one HMGET of the reserved amounts and one HSET of the real ones
            local refunds, refundOrder = {}, {}
            local function refund(k, id, amount)
              local ak = k .. ':amounts'
              local r = refunds[ak]
              if r == nil then r = {ids = {}, amounts = {}}; refunds[ak] = r; refundOrder[#refundOrder + 1] = ak end
              r.ids[#r.ids + 1] = id
              r.amounts[#r.amounts + 1] = amount
            end
            local fields = {'requests', 'success', 'rate_limited', 'errors', 'prompt_tokens', 'completion_tokens', 'fallback_served'}
            local leases, leaseKeys, graced = {}, {}, {}
            local streakCleared = {}
            local out = {}
            for i = 0, n - 1 do
              local b = 3 + i * W
              local id = ARGV[b]
              if not firstSettlement(i) then
                out[#out + 1] = 0
              else
                out[#out + 1] = 1
                local pp = P .. 'provider:' .. ARGV[b + 1] .. ':'
                local ik = pp .. 'inflight'
                if ARGV[b + 5] == 'abandoned' or ARGV[b + 5] == 'broken' then
                  if redis.call('ZSCORE', ik, id) then graced[#graced + 1] = {ik, id} end
                else
                  if leases[ik] == nil then leases[ik] = {}; leaseKeys[#leaseKeys + 1] = ik end
                  local l = leases[ik]
                  l[#l + 1] = id
                end
                -- the budgets: the reserved cost becomes the real one (the day and month of the admission)
                if ARGV[b + 22] ~= '' then redis.call('DEL', P .. 'cost:' .. id) end
                local costDelta = tonumber(ARGV[b + 21]) - tonumber(ARGV[b + 20])
                if costDelta ~= 0 and ARGV[b + 22] ~= '' then
                  spend_add(pp .. 'spend:' .. ARGV[b + 22], costDelta, SPEND_DAY_TTL)
                  if ARGV[b + 2] ~= '' then
                    local kp = P .. 'key:' .. ARGV[b + 2] .. ':'
                    spend_add(kp .. 'spend:' .. ARGV[b + 22], costDelta, SPEND_DAY_TTL)
                    spend_add(kp .. 'spend:' .. ARGV[b + 23], costDelta, SPEND_MONTH_TTL)
                  end
                end
                local charged = tonumber(ARGV[b + 4])
                refund(pp .. 'tpm', id, charged)
                refund(pp .. 'tpd', id, charged)
                for j = 1, 7 do add(pp .. 'usage', fields[j], tonumber(ARGV[b + 8 + j])) end
                if ARGV[b + 2] ~= '' then
                  local kp = P .. 'key:' .. ARGV[b + 2] .. ':'
                  refund(kp .. 'tpm', id, charged)
                  for j = 1, 7 do add(kp .. 'usage', fields[j], tonumber(ARGV[b + 8 + j])) end
                end
                local result = ARGV[b + 5]
                if result == 'success' then
                  if not streakCleared[pp] then
                    redis.call('DEL', pp .. 'failures')
                    streakCleared[pp] = true
                  end
                elseif result == 'failure' or result == 'broken' then
                  streakCleared[pp] = nil
                  local f = redis.call('INCR', pp .. 'failures')
                  if f >= tonumber(ARGV[b + 7]) then
                    redis.call('DEL', pp .. 'failures')
                    streakCleared[pp] = true
                    extend(pp, tonumber(ARGV[b + 8]), 'failures')
                    out[#out] = 2
                  end
                elseif result == 'rate_limited' or result == 'unauthorized' then
                  extend(pp, tonumber(ARGV[b + 6]), result)
                end
                local exhausted = tonumber(ARGV[b + 19])
                if exhausted > 0 then extend(pp, exhausted, 'exhausted') end
                if ARGV[b + 16] ~= '' then
                  local mk = P .. 'model:' .. ARGV[b + 16] .. ':usage'
                  add(mk, 'requests', 1)
                  local flags = tonumber(ARGV[b + 17])
                  if flags % 2 == 1 then add(mk, 'fallbacks', 1) end
                  if flags >= 2 then add(mk, 'continued', 1) end
                  if ARGV[b + 18] == '1' then add(mk, 'exhausted', 1) end
                end
              end
            end
            for _, ak in ipairs(refundOrder) do
              local r = refunds[ak]
              local olds = chunked('HMGET', ak, r.ids)
              local changed = {}
              for j = 1, #r.ids do
                if olds[j] then
                  local old = tonumber(olds[j])
                  if old ~= r.amounts[j] then
                    changed[#changed + 1] = r.ids[j]; changed[#changed + 1] = r.amounts[j]
                    add(ak, '_sum', r.amounts[j] - old)
                  end
                end
              end
              for j = 1, #changed, 500 do
                redis.call('HSET', ak, unpack(changed, j, math.min(j + 499, #changed)))
              end
            end
            for _, ik in ipairs(leaseKeys) do chunked('ZREM', ik, leases[ik]) end
            -- an attempt left mid-way (the client went away, the stream broke) keeps its slot one more second:
            -- the provider may not have noticed the closed connection yet
            for _, g in ipairs(graced) do redis.call('ZADD', g[1], now + \(Self.releaseGraceMs), g[2]) end
            for _, hash in ipairs(hashes) do
              for field, d in pairs(sums[hash]) do
                if d ~= 0 then redis.call('HINCRBY', hash, field, d) end
              end
            end
            return out
            """

    /// Counter replay after an outage. ARGV: prefix, batch id, then (hash key suffix, field, delta)…
    /// Applied once per batch id (a lost reply can be retried with the same id). Returns 1 or 0.
    static let replayBody = """
            local touched = {P .. 'replayed:' .. ARGV[2]}
            for i = 3, #ARGV, 3 do touched[#touched + 1] = P .. ARGV[i] end
            touch(touched)
            if not redis.call('SET', P .. 'replayed:' .. ARGV[2], 1, 'NX', 'PX', DAY) then return 0 end
            for i = 3, #ARGV, 3 do
              redis.call('HINCRBY', P .. ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]))
            end
            return 1
            """

    /// Extend-only cooldown. ARGV: prefix, provider, ms, reason. Returns the remaining ms (-1: no expiry).
    static let cooldownBody = """
            return extend(P .. 'provider:' .. ARGV[2] .. ':', tonumber(ARGV[3]), ARGV[4])
            """

    /// Lease renewal. ARGV: prefix, provider, id, lease ms. Returns 1 if the lease was live, 2 if it had gone
    /// (it expired while Redis was unreachable, or Redis lost its data) and was entered again, 0 if the
    /// reservation has been settled (nothing written).
    static let renewBody = """
            local now = clock()
            local ik = P .. 'provider:' .. ARGV[2] .. ':inflight'
            local lease = tonumber(ARGV[4])
            if redis.call('ZSCORE', ik, ARGV[3]) then
              redis.call('ZADD', ik, now + lease, ARGV[3])
              return 1
            end
            local bk, bo = settled_bit(ARGV[3])
            if bk == nil or redis.call('GETBIT', bk, bo) == 1 then return 0 end
            redis.call('ZADD', ik, now + lease, ARGV[3])
            return 2
            """

    /// Heartbeat. ARGV: prefix, node id. Records the live node count and the *quiet* ones (heartbeat
    /// 3–10 s old) in `{ns}:fleet` for admissions to read. Returns {live nodes (seen within 10 s), epoch | ''}.
    static let heartbeatBody = """
            local now = clock()
            local k = P .. 'nodes'
            redis.call('ZADD', k, now, ARGV[2])
            redis.call('ZREMRANGEBYSCORE', k, '-inf', now - 10000)
            local live = redis.call('ZCARD', k)
            local quiet = redis.call('ZCOUNT', k, '-inf', now - \(Self.quietNodeMs))
            redis.call('HSET', P .. 'fleet', 'live', live, 'quiet', quiet)
            return {live, redis.call('HGET', P .. 'fleet', 'epoch') or ''}
            """

    /// A model-group event with no settlement. ARGV: prefix, model, fallback 0|1, exhausted 0|1, continued 0|1.
    static let recordBody = """
            local mk = P .. 'model:' .. ARGV[2] .. ':usage'
            redis.call('HINCRBY', mk, 'requests', 1)
            if ARGV[3] == '1' then redis.call('HINCRBY', mk, 'fallbacks', 1) end
            if ARGV[4] == '1' then redis.call('HINCRBY', mk, 'exhausted', 1) end
            if ARGV[5] == '1' then redis.call('HINCRBY', mk, 'continued', 1) end
            return 1
            """

    /// A snapshot. ARGV: prefix, np, providers…, nk, keys…, nm, models…
    /// Returns {now, providers: {{usage hgetall, rpm, rpd, tpm, tpd, inflight, cooldown ms, reason, disabled, failures}…},
    /// keys: {{usage hgetall, rpm, tpm}…}, models: {hgetall…}, nodes: zrange withscores}.
    static let statsBody = """
            local now = clock()
            local i = 2
            local np = tonumber(ARGV[i]); i = i + 1
            local providers = {}
            for _ = 1, np do
              local pp = P .. 'provider:' .. ARGV[i] .. ':'
              i = i + 1
              redis.call('ZREMRANGEBYSCORE', pp .. 'inflight', '-inf', now)
              local cd = redis.call('PTTL', pp .. 'cooldown')
              providers[#providers + 1] = {
                redis.call('HGETALL', pp .. 'usage'),
                req_count(pp .. 'rpm', MIN, now), req_count(pp .. 'rpd', DAY, now),
                tok_sum(pp .. 'tpm', MIN, now), tok_sum(pp .. 'tpd', DAY, now),
                redis.call('ZCARD', pp .. 'inflight'), cd, redis.call('GET', pp .. 'cooldown') or '',
                redis.call('EXISTS', pp .. 'disabled'), tonumber(redis.call('GET', pp .. 'failures') or '0'),
                spend_get(pp .. 'spend:' .. utc_day(now))
              }
            end
            local nk = tonumber(ARGV[i]); i = i + 1
            local keys = {}
            for _ = 1, nk do
              local kp = P .. 'key:' .. ARGV[i] .. ':'
              i = i + 1
              keys[#keys + 1] = {
                redis.call('HGETALL', kp .. 'usage'), req_count(kp .. 'rpm', MIN, now), tok_sum(kp .. 'tpm', MIN, now),
                spend_get(kp .. 'spend:' .. utc_day(now)), spend_get(kp .. 'spend:' .. utc_month(now))
              }
            end
            local nm = tonumber(ARGV[i]); i = i + 1
            local models = {}
            for _ = 1, nm do
              models[#models + 1] = redis.call('HGETALL', P .. 'model:' .. ARGV[i] .. ':usage')
              i = i + 1
            end
            redis.call('ZREMRANGEBYSCORE', P .. 'nodes', '-inf', now - 10000)
            return {now, providers, keys, models, redis.call('ZRANGE', P .. 'nodes', 0, -1, 'WITHSCORES')}
            """

}
