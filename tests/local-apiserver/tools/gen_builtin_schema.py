#!/usr/bin/env python3
"""Generate src/builtin_schema.json: the merge structure of the built-in Kubernetes types.

Reads the k8s-openapi sources (which encode the OpenAPI x-kubernetes-list-type,
x-kubernetes-list-map-keys and x-kubernetes-map-type markers in their DeepMerge impls) and
writes, for every struct, the fields whose value is a struct, a list or a map together with
their merge strategy. Server-side apply and strategic merge patch use it at runtime.

Usage: gen_builtin_schema.py PATH/TO/k8s-openapi-X/src/v1_NN > src/builtin_schema.json
"""
import json
import os
import re
import sys

ROOT = sys.argv[1]
DIRS = ["api", "apimachinery", "apiextensions_apiserver"]

struct_re = re.compile(r"^pub struct (\w+) \{", re.M)
field_re = re.compile(r"^    pub (\w+): (.+),$", re.M)


def parse_type(t):
    """Return (container, inner_type_path_or_None). container: struct|list|map|scalar."""
    t = t.strip()
    if t.startswith("Option<") and t.endswith(">"):
        t = t[len("Option<"):-1]
    if t.startswith("std::vec::Vec<"):
        inner = t[len("std::vec::Vec<"):-1]
        return "list", inner_path(inner)
    if t.startswith("std::collections::BTreeMap<std::string::String, "):
        inner = t[len("std::collections::BTreeMap<std::string::String, "):-1]
        return "map", inner_path(inner)
    p = inner_path(t)
    return ("struct", p) if p else ("scalar", None)


def inner_path(t):
    if t.startswith("crate::") and "<" not in t:
        p = t[len("crate::"):]
        if p in ("apimachinery::pkg::util::intstr::IntOrString", "apimachinery::pkg::api::resource::Quantity",
                 "apimachinery::pkg::apis::meta::v1::Time", "apimachinery::pkg::apis::meta::v1::MicroTime",
                 "ByteString", "apimachinery::pkg::apis::meta::v1::FieldsV1",
                 "apimachinery::pkg::runtime::RawExtension",
                 "apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON"):
            return None
        return p
    return None


def json_names(text):
    """Map rust field name -> JSON name from the Serialize impl."""
    out = {}
    last = None
    start = text.find("fn serialize<S>")
    if start < 0:
        return out
    for line in text[start:].splitlines():
        m = re.search(r"&self\.(\w+)", line)
        if m:
            last = m.group(1)
        m2 = re.search(r'serialize_field\(&mut state, "([^"]+)"', line)
        if m2 and last:
            out[last] = m2.group(1)
    return out


def strategies(text):
    """Map rust field -> (strategy, [rust key fields])."""
    out = {}
    start = text.find("impl crate::DeepMerge for")
    if start < 0:
        return out
    body = text[start:]
    for m in re.finditer(r"merge_strategies::(list|map)::(\w+)\(\s*&mut self\.(\w+),(.*?)\);\n", body, re.S):
        kind, strat, field, rest = m.groups()
        keys = re.findall(r"lhs\.(\w+) == rhs\.", rest) if strat == "map" and kind == "list" else []
        out[field] = (kind + "-" + strat, keys)
    return out


structs = {}
for d in DIRS:
    for dirpath, _, files in os.walk(os.path.join(ROOT, d)):
        for f in files:
            if not f.endswith(".rs") or f == "mod.rs":
                continue
            text = open(os.path.join(dirpath, f)).read()
            m = struct_re.search(text)
            if not m:
                continue
            name = m.group(1)
            mod = os.path.relpath(dirpath, ROOT).replace(os.sep, "::")
            body_end = text.find("\n}\n", m.end())
            fields = field_re.findall(text[m.end():body_end])
            structs[mod + "::" + name] = (fields, json_names(text), strategies(text))

result = {}
for path, (fields, names, strats) in sorted(structs.items()):
    entry = {}
    for rust_name, ty in fields:
        container, inner = parse_type(ty)
        if container == "scalar":
            continue
        jname = names.get(rust_name)
        if jname is None:
            continue
        strat, keys = strats.get(rust_name, (None, []))
        inner_names = structs[inner][1] if inner in structs else {}
        spec = {"c": container}
        if inner:
            spec["t"] = inner
        if container == "list":
            spec["s"] = {"list-atomic": "atomic", "list-map": "map", "list-set": "set"}.get(strat, "atomic")
            if keys:
                spec["k"] = [inner_names.get(k, k) for k in keys]
        if container == "map":
            spec["s"] = "atomic" if strat == "map-atomic" else "granular"
        entry[jname] = spec
    result[path] = entry

# The OpenAPI documents k8s-openapi is generated from name a single key for these lists, but the
# Go types (+listMapKey) and the real server key them by port and protocol.
for path, field in [("api::core::v1::Container", "ports"), ("api::core::v1::EphemeralContainer", "ports")]:
    result[path][field]["k"] = ["containerPort", "protocol"]
result["api::core::v1::ServiceSpec"]["ports"]["k"] = ["port", "protocol"]
# +structType=atomic in the Go types; not visible in the DeepMerge impls.
result["apimachinery::pkg::apis::meta::v1::LabelSelector"] = {"__atomic": {"c": "struct"}}

json.dump(result, sys.stdout, sort_keys=True, separators=(",", ":"))
