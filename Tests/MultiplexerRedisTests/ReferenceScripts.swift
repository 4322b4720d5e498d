@testable import MultiplexerRedis

/// The admission and settlement scripts as they were before admissions were batched (schema 2, one admission
/// per call; settlements with one `SETBIT` and `HGET` per settlement): the reference of
/// `AdmissionBatchDifferentialTests`. Test fixture only — never loaded by the store.
enum ReferenceScripts {
    static let admitBody = """
            local id = ARGV[2]
            -- the data set's epoch, and the live and quiet node counts the last heartbeat found: nodes gone
            -- quiet (heartbeat 3–10 s old) may be serving on their degraded shares without Redis, so each
            -- one's share of every limit counts as used until it is back and has written its admissions
            local fleet = redis.call('HMGET', P .. 'fleet', 'epoch', 'live', 'quiet')
            local epoch = fleet[1]
            if epoch == false or epoch ~= ARGV[3] then return {6, epoch or ''} end
            local bk, bo = settled_bit(id)
            if bk == nil then return redis.error_reply('admit: reservation id is not a number: ' .. id) end
            if redis.call('GETBIT', bk, bo) == 1 then return {5} end
            local now = clock()
            local live, missing = tonumber(fleet[2] or '0'), tonumber(fleet[3] or '0')
            local function held(limit)
              if missing <= 0 or live < 1 or limit < 0 then return limit end
              return limit - missing * math.floor(limit / live)
            end
            local keyName = ARGV[5]
            local keyRpm, keyTpm = tonumber(ARGV[6]), tonumber(ARGV[7])
            local tierWait = tonumber(ARGV[8])
            local n = tonumber(ARGV[9])
            local keyDaily, keyMonthly = tonumber(ARGV[10]), tonumber(ARGV[11])
            -- the UTC day and month, computed only when a budget or a cost is involved
            local needsPeriod = keyDaily >= 0 or keyMonthly >= 0
            for j = 0, n - 1 do
              local b = 12 + j * 11
              if tonumber(ARGV[b + 9]) > 0 or tonumber(ARGV[b + 10]) >= 0 then needsPeriod = true end
            end
            local day, month = '', ''
            if needsPeriod then day, month = utc_day(now), utc_month(now) end
            local keyBudgetPeriod = nil
            -- whether the key's budget alone rules out every candidate (then the answer is insufficient_quota)
            local keyBudgetAll = n > 0
            local KP = P .. 'key:' .. keyName .. ':'
            local use = {-1, -1, -1, -1}
            if keyName ~= '' and keyRpm >= 0 then
              local at, cnt = req_fits_at(KP .. 'rpm', MIN, held(keyRpm), now)
              use[1] = cnt
              if at == nil then return {4, -1, use} end
              if at > now then return {4, at - now, use} end
            end
            if keyName ~= '' and keyTpm >= 0 then use[2] = tok_sum(KP .. 'tpm', MIN, now) end
            if keyName ~= '' and keyDaily >= 0 then use[3] = spend_get(KP .. 'spend:' .. day) end
            if keyName ~= '' and keyMonthly >= 0 then use[4] = spend_get(KP .. 'spend:' .. month) end
            local blocked = {}
            local earliest, earliestPrimary = nil, nil
            local onlyKey = true
            for i = 0, n - 1 do
              local b = 12 + i * 11
              local name, tier = ARGV[b], tonumber(ARGV[b + 1])
              local rpm, rpd, tpm, tpd = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
              local conc, tokens, lease = tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7]), tonumber(ARGV[b + 8])
              local cost, budget = tonumber(ARGV[b + 9]), tonumber(ARGV[b + 10])
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
              if redis.call('EXISTS', pp .. 'disabled') == 1 then block('disabled', nil) end
              local cd = redis.call('PTTL', pp .. 'cooldown')
              if cd > 0 then block('cooldown', now + cd) elseif cd == -1 then block('cooldown', nil) end
              if rpm >= 0 then
                local at, cnt = req_fits_at(pp .. 'rpm', MIN, held(rpm), now)
                use[u + 1] = cnt
                if at == nil or at > now then block('rpm', at) end
              end
              if rpd >= 0 then
                local at, cnt = req_fits_at(pp .. 'rpd', DAY, held(rpd), now)
                use[u + 2] = cnt
                if at == nil or at > now then block('rpd', at) end
              end
              if tpm >= 0 then
                local at, sum = tok_fits_at(pp .. 'tpm', MIN, tokens, held(tpm), now)
                use[u + 3] = sum
                if at == nil or at > now then block('tpm', at) end
              end
              if tpd >= 0 then
                local at, sum = tok_fits_at(pp .. 'tpd', DAY, tokens, held(tpd), now)
                use[u + 4] = sum
                if at == nil or at > now then block('tpd', at) end
              end
              local ik = pp .. 'inflight'
              redis.call('ZREMRANGEBYSCORE', ik, '-inf', now)
              local inflight = redis.call('ZCARD', ik)
              use[u + 5] = inflight
              if conc >= 0 and inflight >= held(conc) then
                local soon = now + 1000
                local s = redis.call('ZRANGE', ik, 0, 0, 'WITHSCORES')
                if #s > 0 then soon = math.min(tonumber(s[2]), soon) end
                if held(conc) < 1 then soon = nil end
                block('concurrency', soon)
              end
              if budget >= 0 then
                local spent = spend_get(pp .. 'spend:' .. day)
                use[u + 6] = spent
                -- a quiet node's degraded share of the budget counts as spent, as for every limit
                if spent + cost > held(budget) then block('budget', next_day(now)) end
              end
              local providerBlocked = reason ~= nil
              if keyName ~= '' and keyTpm >= 0 then
                local at = tok_fits_at(KP .. 'tpm', MIN, tokens, held(keyTpm), now)
                if at == nil or at > now then block('key_tpm', at) end
              end
              local keyBudgetBlocks = false
              if keyName ~= '' then
                if keyMonthly >= 0 and spend_get(KP .. 'spend:' .. month) + cost > held(keyMonthly) then
                  block('key_budget', next_month(now))
                  keyBudgetPeriod = 'monthly'
                  keyBudgetBlocks = true
                elseif keyDaily >= 0 and spend_get(KP .. 'spend:' .. day) + cost > held(keyDaily) then
                  block('key_budget', next_day(now))
                  if keyBudgetPeriod == nil then keyBudgetPeriod = 'daily' end
                  keyBudgetBlocks = true
                end
              end
              if not keyBudgetBlocks then keyBudgetAll = false end
              if reason == nil then
                if rpm >= 0 then req_add(pp .. 'rpm', MIN, id, now); use[u + 1] = use[u + 1] + 1 end
                if rpd >= 0 then req_add(pp .. 'rpd', DAY, id, now); use[u + 2] = use[u + 2] + 1 end
                if tpm >= 0 then tok_add(pp .. 'tpm', MIN, id, tokens, now); use[u + 3] = use[u + 3] + tokens end
                if tpd >= 0 then tok_add(pp .. 'tpd', DAY, id, tokens, now); use[u + 4] = use[u + 4] + tokens end
                redis.call('ZADD', ik, now + lease, id)
                use[u + 5] = inflight + 1
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
                  redis.call('HSET', P .. 'cost:' .. id, 'p', name, 'k', keyName, 'c', cost, 'd', day, 'm', month)
                  redis.call('PEXPIRE', P .. 'cost:' .. id, 86400000)
                  spend_add(pp .. 'spend:' .. day, cost, SPEND_DAY_TTL)
                  if keyName ~= '' then
                    spend_add(KP .. 'spend:' .. day, cost, SPEND_DAY_TTL)
                    spend_add(KP .. 'spend:' .. month, cost, SPEND_MONTH_TTL)
                  end
                end
                if keyName ~= '' and (keyDaily >= 0 or keyMonthly >= 0) then
                  keySpentDay, keySpentMonth = spend_get(KP .. 'spend:' .. day), spend_get(KP .. 'spend:' .. month)
                end
                if keyName ~= '' then
                  if keyRpm >= 0 then
                    req_add(KP .. 'rpm', MIN, id, now)
                    use[1] = use[1] + 1
                    remReq = math.max(0, keyRpm - use[1])
                  end
                  if keyTpm >= 0 then
                    tok_add(KP .. 'tpm', MIN, id, tokens, now)
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
            """

    static let settleBody = """
            local now = clock()
            local n = tonumber(ARGV[2])
            local W = \(RedisScripts.settlementFields)
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
            local renewed = {}
            local function firstSettlement(i)
              local bk = bitKey[i]
              if redis.call('SETBIT', bk, bitOffset[i], 1) == 1 then return false end
              if not renewed[bk] then renewed[bk] = true; redis.call('PEXPIRE', bk, 900000) end
              return true
            end
            -- increments summed over the batch: hash -> field -> delta (hashes in first-seen order)
            local sums, hashes = {}, {}
            local function add(hash, field, d)
              if d == 0 then return end
              local h = sums[hash]
              if h == nil then h = {}; sums[hash] = h; hashes[#hashes + 1] = hash end
              h[field] = (h[field] or 0) + d
            end
            local function refund(k, id, amount)
              local ak = k .. ':amounts'
              local old = redis.call('HGET', ak, id)
              if old then
                old = tonumber(old)
                if old ~= amount then
                  redis.call('HSET', ak, id, amount)
                  add(ak, '_sum', amount - old)
                end
              end
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
            for _, ik in ipairs(leaseKeys) do chunked('ZREM', ik, leases[ik]) end
            -- an attempt left mid-way (the client went away, the stream broke) keeps its slot one more second:
            -- the provider may not have noticed the closed connection yet
            for _, g in ipairs(graced) do redis.call('ZADD', g[1], now + \(RedisScripts.releaseGraceMs), g[2]) end
            for _, hash in ipairs(hashes) do
              for field, d in pairs(sums[hash]) do
                if d ~= 0 then redis.call('HINCRBY', hash, field, d) end
              end
            end
            return out
            """
}
