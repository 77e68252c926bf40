-- Argo CD health of a Deich RecoveryObjective (resilience.deich.io/v1alpha1), from the Ready
-- and Valid conditions and status.observedGeneration. A valid objective is Healthy, whether
-- services use it yet or not; one whose settings cannot be met together (Valid=False, for
-- example an RTO too short for the manager's clock skew) is Degraded. Runs with Argo CD's
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

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Deich to validate the objective"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Deich has not reconciled generation " .. tostring(generation) .. " yet (status is of generation " .. tostring(observed) .. ")"
  return hs
end

local valid = condition("Valid")
if valid ~= nil and valid.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(valid)
  return hs
end
local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Deich to validate the objective"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
