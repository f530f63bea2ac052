-- Argo CD health of a HardenedCsiDriver, from the operator's standard status: a status older
-- than the spec (observedGeneration < generation) is still Progressing; then Degraded=True wins,
-- Ready=True is Healthy, Progressing=True or a missing status is Progressing, and Ready=False
-- with nothing in progress is Degraded. The message is the deciding condition's reason: message.
local hs = {}
local function describe(c)
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local byType = {}
for _, c in ipairs(obj.status.conditions) do
  byType[c.type] = c
end

local degraded = byType["Degraded"]
local ready = byType["Ready"]
local progressing = byType["Progressing"]

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
elseif progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing)
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
else
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
end
return hs
