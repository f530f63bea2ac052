-- Argo CD health of a HardenedCsiDriver, from the operator's status (kstatus conventions).
-- A status older than the spec is Progressing: a new object reads observedGeneration -1, the
-- CRD's default, until the operator has seen it. Then Stalled=True or Degraded=True is Degraded,
-- Reconciling=True (a rollout, a node joining, pods starting) is Progressing, Ready=True is
-- Healthy. Statuses of operators before Reconciling existed: Progressing=True is Progressing and
-- Ready=False is Degraded. The message is the deciding condition's "reason: message".
local hs = {}
local function describe(c)
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local byType = {}
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    byType[c.type] = c
  end
end

local function isTrue(name)
  return byType[name] ~= nil and byType[name].status == "True"
end

if isTrue("Stalled") then
  hs.status = "Degraded"
  hs.message = describe(byType["Stalled"])
elseif isTrue("Degraded") then
  hs.status = "Degraded"
  hs.message = describe(byType["Degraded"])
elseif isTrue("Reconciling") then
  hs.status = "Progressing"
  hs.message = describe(byType["Reconciling"])
elseif byType["Reconciling"] == nil and isTrue("Progressing") then
  hs.status = "Progressing"
  hs.message = describe(byType["Progressing"])
elseif isTrue("Ready") then
  hs.status = "Healthy"
  hs.message = describe(byType["Ready"])
elseif byType["Ready"] ~= nil and byType["Ready"].status == "False" then
  hs.status = "Degraded"
  hs.message = describe(byType["Ready"])
else
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
end
return hs
