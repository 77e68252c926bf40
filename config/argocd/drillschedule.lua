-- Argo CD health of a Deich DrillSchedule (resilience.deich.io/v1alpha1), from the Ready and
-- LastRunPassed conditions and status.observedGeneration. A valid schedule whose last run
-- passed, or that has not completed a run yet, is Healthy; a suspended one is Suspended; a
-- schedule that cannot be parsed, or whose last run failed or was missed, is Degraded: a
-- failover rehearsed by it would not succeed now, or was not rehearsed. Runs with Argo CD's
-- default libraries only (base and table): no string or math functions.
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

local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Deich to read the schedule"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Deich has not reconciled generation " .. tostring(generation) .. " yet (status is of generation " .. tostring(observed) .. ")"
  return hs
end

if ready.status == "False" and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(ready)
  return hs
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end
if ready.status ~= "True" then
  hs.status = "Progressing"
  hs.message = describe(ready)
  return hs
end

local lastRun = condition("LastRunPassed")
if lastRun ~= nil and lastRun.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(lastRun)
  return hs
end
hs.status = "Healthy"
hs.message = describe(ready)
return hs
