-- Argo CD health of a Deich Switchover (resilience.deich.io/v1alpha1), from status.phase, the
-- Ready condition and status.observedGeneration. Succeeded (the service moved, or the drill
-- passed) is Healthy; Pending and Running are Progressing; Failed (refused, given up, or a
-- drill that failed) and a move running for longer than the service's RTO are Degraded. Runs
-- with Argo CD's default libraries only (base and table): no string or math functions.
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
  local text = prefix
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    text = text .. " (" .. c.reason .. ")"
  end
  if obj.status.message ~= nil and obj.status.message ~= "" then
    return text .. ": " .. obj.status.message
  end
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return text .. ": " .. c.message
  end
  return text
end

if obj.status == nil or obj.status.phase == nil or obj.status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for Deich to start the Switchover"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Deich has not reconciled generation " .. tostring(generation) .. " yet (status is of generation " .. tostring(observed) .. ")"
  return hs
end

local phase = obj.status.phase
local ready = condition("Ready")
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
elseif phase == "Running" and ready ~= nil and ready.reason == "SlowerThanRTO" then
  hs.status = "Degraded"
elseif phase == "Pending" or phase == "Running" then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
  return hs
end
hs.message = describe(phase, ready)
return hs
