-- Argo CD health of a Deich SharedService (resilience.deich.io/v1alpha1), from status.phase,
-- the Ready and Synced conditions and status.observedGeneration. Protected is Healthy; a
-- service that is being mirrored for the first time or promoted is Progressing; a service
-- that needs a human (Degraded, Fenced, FailedOver, Error, a promotion stage that timed out,
-- a standby that refuses the copies) is Degraded. Runs with Argo CD's default libraries only
-- (base and table): no string or math functions.
local hs = {}

local function condition(conditionType)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function describe(prefix, c)
  if c == nil then
    return prefix
  end
  local text = prefix
  if c.reason ~= nil and c.reason ~= "" and c.reason ~= prefix then
    text = text .. " (" .. c.reason .. ")"
  end
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.status == nil or obj.status.phase == nil or obj.status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for Deich to report on the service"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
local ready = condition("Ready")
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Deich has not reconciled generation " .. tostring(generation) .. " yet (status is of generation " .. tostring(observed) .. ")"
  return hs
end
if generation ~= nil and ready ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Deich has not reconciled generation " .. tostring(generation) .. " yet (Ready is of generation " .. tostring(ready.observedGeneration) .. ")"
  return hs
end

local phase = obj.status.phase
if phase == "Protected" then
  hs.status = "Healthy"
  hs.message = describe(phase, ready)
  return hs
end

if phase == "Pending" then
  -- The first copy has not been confirmed yet. A standby that refuses the copies, or an egress
  -- policy that keeps them here, is not waiting for anything: someone has to change it.
  local synced = condition("Synced")
  if synced ~= nil and synced.status == "False" and (synced.reason == "PeerForbidden" or synced.reason == "EgressDenied" or synced.reason == "KindMissingAtPeer") then
    hs.status = "Degraded"
    hs.message = describe(phase, synced)
    return hs
  end
  hs.status = "Progressing"
  hs.message = describe(phase, ready)
  return hs
end

if phase == "FailingOver" then
  if ready ~= nil and ready.reason == "PromotionStageTimedOut" then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(phase, ready)
  return hs
end

if phase == "Degraded" or phase == "Fenced" or phase == "FailedOver" or phase == "Error" then
  hs.status = "Degraded"
  hs.message = describe(phase, ready)
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
