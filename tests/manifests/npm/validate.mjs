// Reads JSON objects (one per line) on stdin and checks each against the Prometheus Operator's
// schema for its kind, with validators generated from the operator's CRDs (kubernetes-models).
// Prints one line per object: "ok" or the schema errors. Exit code 1 when any object is invalid.
import { readFileSync } from "node:fs";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const kinds = { PrometheusRule, ServiceMonitor };
let failed = false;
for (const line of readFileSync(0, "utf8").split("\n").filter((l) => l.trim())) {
  const obj = JSON.parse(line);
  const Kind = kinds[obj.kind];
  if (!Kind) {
    console.log(`unknown kind ${obj.kind}`);
    failed = true;
    continue;
  }
  try {
    new Kind(obj).validate();
    console.log("ok");
  } catch (e) {
    console.log(String(e.message || e).replace(/\n/g, " "));
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
