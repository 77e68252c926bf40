-- Argo CD health of a Deich ReplicationPeer (resilience.deich.io/v1alpha1), from the Ready
-- condition and status.observedGeneration. Ready is Healthy; a peer whose kubeconfig Secret
-- does not exist yet (it may come from a secrets operator) is Progressing; a peer that cannot
-- be used (unreachable, credentials refused, Deich's API or the witness's Leases missing) is
-- Degraded. Runs with Argo CD's default libraries only (base and table): no string or math
-- functions.
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
  hs.message = "Waiting for the first heartbeat"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Deich has not reconciled generation " .. tostring(generation) .. " yet (status is of generation " .. tostring(observed) .. ")"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" and ready.reason ~= "SecretNotFound" and ready.reason ~= "SecretKeyNotFound" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
