#!/usr/bin/env bash
# Offline checks of the Helm chart (helm/ekyc) and of the Dockerfile. No
# cluster and no Docker engine are used; everything runs from the pinned
# Python tools of scripts/chart-requirements.txt in target/chart-venv:
#
#   1. helm lint --strict of the chart with each value set of helm/ekyc/ci/,
#      against Kubernetes 1.29, 1.31 and 1.33 (the Helm v4 library through
#      helm-python-sdk, the same Go code as the helm binary);
#   2. helm template of each value set (same library; values.schema.json is
#      enforced by it), YAML parsed strictly (a duplicate key is an error),
#      and the chart's own invariants (sizing formula, grace period, config
#      checksum, limits.replicas, no Secret rendered, ...);
#   3. every rendered object through kubernetes-validate --strict against the
#      1.29, 1.31 and 1.33 schemas; the Prometheus Operator kinds (not in
#      those schemas) against small JSON schemas of this script's own, a
#      transcribed subset of the monitoring.coreos.com/v1 CRDs; any other
#      kind without a schema fails;
#   4. checkov (framework kubernetes) over the rendered objects of each set:
#      no failed check; the skipped ones are listed with the reason written
#      in the chart's checkov.io/skip annotations;
#   5. hadolint on the Dockerfile, and the Docker build context (what
#      .dockerignore leaves) resolving as the Cargo workspace;
#   6. a self-test: a broken template, values that violate the schema,
#      values the templates refuse, a manifest with an unknown field, an
#      unknown kind, a bad ServiceMonitor, an insecure pod and a bad
#      Dockerfile must each FAIL the check that should catch them;
#   7. ekycd.toml of each value set loaded by the real ekycd (`ekycd
#      migrate` on a scratch SQLite: unknown keys or wrong types fail), then
#      the observability checks of scripts/check_observability.py if present.
#
# Usage: bash scripts/chart.sh            (from anywhere; exits non-zero on any failure)
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
VENV=target/chart-venv
PY="$VENV/bin/python"
REQ=scripts/chart-requirements.txt

die() {
    echo "error: $*" >&2
    exit 1
}

# --- the virtualenv: (re)installed when chart-requirements.txt changes -------
want=$(sha256sum "$REQ" | cut -d' ' -f1)
stamp="$VENV/.requirements.sha256"
if [ ! -x "$PY" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    command -v python3 >/dev/null || die "python3 is needed for the chart checks"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "the chart checks need Python 3.11 or newer (tomllib); python3 is $(python3 --version 2>&1)"
    echo "==> chart venv: installing $REQ into $VENV"
    python3 -m venv "$VENV" || die "could not create $VENV (on Debian: apt-get install python3-venv)"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQ" \
        || die "pip could not install $REQ"
    echo "$want" >"$stamp"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ekyc-chart.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- 1-6: the chart, the Dockerfile and the self-test ------------------------
cat >"$WORK/check.py" <<'PYEOF'
"""The chart checks of scripts/chart.sh (see its header)."""
import copy
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib

import jsonschema
import yaml

import helm_python as helm

CHART = os.path.abspath("helm/ekyc")
WORK = sys.argv[1]
VENV_BIN = os.path.dirname(sys.executable)
KUBE_VERSIONS = ["1.29.0", "1.31.0", "1.33.0"]
RELEASE, NAMESPACE = "ekyc", "ekyc"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

passed = 0
failures = []


def ok(message):
    global passed
    passed += 1
    print(f"  ok: {message}")


def bad(message):
    failures.append(message)
    print(f"  FAILED: {message}")


# --- strict YAML: a duplicate key is an error (the API server would keep one
# of the two silently, or refuse the object) ---------------------------------
class StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def value_sets():
    ci = os.path.join(CHART, "ci")
    sets = sorted(f for f in os.listdir(ci) if f.endswith("-values.yaml"))
    if not sets:
        raise SystemExit(f"error: no value sets in {ci}")
    return [(f[: -len("-values.yaml")], os.path.join(ci, f)) for f in sets]


def load_values(path):
    with open(path) as f:
        return helm.values_from_yaml(f.read())


def lint_errors(chart_dir, values, kube_version):
    """helm lint --strict: warnings count as errors, as with the CLI."""
    report = helm.lint(chart_dir, values, strict=True, namespace=NAMESPACE,
                       kube_version="v" + kube_version)
    found = [f'{m["path"]}: {m["error"].strip()}' for m in report["messages"] if m["severity"] >= 2]
    return found or [e.strip() for e in report["errors"]]


def render(chart_dir, values):
    with helm.Chart.load(chart_dir) as chart:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if not path.endswith((".yaml", ".yml")) or not text.strip():
            continue
        for doc in yaml.load_all(text, Loader=StrictLoader):
            if doc:
                docs.append((path, doc))
    return out, docs


def merged_values(values):
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(values)


# --- the chart's own invariants on one rendered set --------------------------
def invariants(name, values, out, docs):
    v = merged_values(values)
    by_kind = {}
    for _, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    problems = []
    if "Secret" in by_kind:
        problems.append("the chart rendered a Secret (it must never generate one)")
    deps = [d for d in by_kind.get("Deployment", [])]
    if len(deps) != 1:
        return [f"expected one Deployment, got {len(deps)}"]
    dep = deps[0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    if v["autoscaling"]["enabled"] == ("replicas" in spec):
        problems.append("Deployment.spec.replicas must be absent exactly when the HPA is on")
    if v["autoscaling"]["enabled"] != ("HorizontalPodAutoscaler" in by_kind):
        problems.append("an HPA must be rendered exactly when autoscaling.enabled")
    if pod.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks must be false (Service env vars named EKYCD_* break ekycd)")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken must be false")
    grace = (v["lifecycle"]["preStopSecs"] + v["config"]["shutdownGraceSecs"] + 10
             + v["lifecycle"]["terminationMarginSecs"])
    if pod.get("terminationGracePeriodSeconds") != grace:
        problems.append(f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds')} != {grace}")
    server = [c for c in pod["containers"] if c["name"] == "ekycd"][0]
    pre = server["lifecycle"]["preStop"]["exec"]["command"]
    if pre != ["/usr/local/bin/ekycd", "pause", "--secs", str(v["lifecycle"]["preStopSecs"])]:
        problems.append(f"preStop is {pre}")
    threads = v["config"]["argon2"]["threads"]
    if not v["resources"]:
        mem = v["sizing"]["baseMemoryMi"] + -(-threads * v["config"]["argon2"]["memoryKib"] * 5 // 4096)
        req = server["resources"]["requests"]
        if req.get("memory") != f"{mem}Mi" or str(req.get("cpu")) != str(threads):
            problems.append(f"requests {req} != cpu {threads}, memory {mem}Mi (the sizing formula)")
    for probe, service in (("startupProbe", "liveness"), ("livenessProbe", "liveness"),
                           ("readinessProbe", "")):
        grpc = server.get(probe, {}).get("grpc", {})
        if grpc.get("port") != v["ports"]["health"] or grpc.get("service") != service:
            problems.append(f"{probe} must be grpc on the health port, service {service!r}")
    inits = [c for c in pod.get("initContainers", []) if c["name"] == "migrate"]
    if not inits or inits[0].get("args") != ["migrate"]:
        problems.append("the migrate init container is missing")
    cms = [d for d in by_kind.get("ConfigMap", []) if "ekycd.toml" in d.get("data", {})]
    if len(cms) != 1:
        return problems + ["expected one ConfigMap with ekycd.toml"]
    cm_text = out["ekyc/templates/configmap.yaml"]
    checksum = spec["template"]["metadata"]["annotations"].get("checksum/config")
    if checksum != hashlib.sha256(cm_text.encode()).hexdigest():
        problems.append("checksum/config is not the sha256 of the rendered ConfigMap")
    try:
        toml = tomllib.loads(cms[0]["data"]["ekycd.toml"])
    except tomllib.TOMLDecodeError as e:
        return problems + [f"ekycd.toml is not TOML: {e}"]
    with open(os.path.join(WORK, "configs", f"{name}.toml"), "w") as f:
        f.write(cms[0]["data"]["ekycd.toml"])
    expect_replicas = (v["config"]["limits"]["replicas"] or
                       (v["autoscaling"]["maxReplicas"] if v["autoscaling"]["enabled"] else v["replicaCount"]))
    checks = {
        "argon2.pool_threads": (toml["argon2"]["pool_threads"], threads),
        "limits.replicas": (toml["limits"]["replicas"], expect_replicas),
        "pepper.generate_if_missing": (toml["pepper"]["generate_if_missing"], False),
        "signing.generate_if_missing": (toml["signing"]["generate_if_missing"], False),
        "data_dir": (toml["data_dir"], "/var/lib/ekycd"),
        "log.format": (toml["log"]["format"], v["config"]["log"]["format"]),
    }
    for key, (got, want) in checks.items():
        if got != want:
            problems.append(f"ekycd.toml {key} = {got!r}, want {want!r}")
    if "database_url" in toml or "redis_url" in toml.get("limits", {}):
        problems.append("a store URL (with its password) is in the ConfigMap")
    return problems


# --- kubernetes-validate --strict, CRDs against our own schemas --------------
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object", "required": ["name"], "additionalProperties": False,
    "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
                   "namespace": {"type": "string"}, "labels": STRING_MAP, "annotations": STRING_MAP},
}
LABEL_SELECTOR = {
    "type": "object", "additionalProperties": False,
    "properties": {"matchLabels": STRING_MAP, "matchExpressions": {"type": "array", "items": {
        "type": "object", "required": ["key", "operator"], "additionalProperties": False,
        "properties": {"key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                       "values": {"type": "array", "items": {"type": "string"}}}}}},
}
# Subsets of the Prometheus Operator's monitoring.coreos.com/v1 CRDs: every
# field the chart may render, typed as the CRD types it; anything else fails.
CRD_SCHEMAS = {
    "ServiceMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
            "metadata": METADATA,
            "spec": {"type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
                     "properties": {
                         "selector": LABEL_SELECTOR,
                         "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                             "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
                         "jobLabel": {"type": "string"},
                         "targetLabels": {"type": "array", "items": {"type": "string"}},
                         "endpoints": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "additionalProperties": False, "properties": {
                                 "port": {"type": "string"}, "path": {"type": "string"},
                                 "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                                 "interval": {"type": "string", "pattern": DURATION},
                                 "scrapeTimeout": {"type": "string", "pattern": DURATION},
                                 "honorLabels": {"type": "boolean"},
                                 "relabelings": {"type": "array", "items": {"type": "object"}},
                                 "metricRelabelings": {"type": "array", "items": {"type": "object"}},
                                 "tlsConfig": {"type": "object"}}}}}}},
    },
    "PrometheusRule": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
            "metadata": METADATA,
            "spec": {"type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
                "groups": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": {"type": "string", "pattern": DURATION},
                        "query_offset": {"type": "string", "pattern": DURATION},
                        "limit": {"type": "integer"},
                        "labels": STRING_MAP,
                        "partial_response_strategy": {"type": "string"},
                        "rules": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["expr"], "additionalProperties": False,
                            "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                            "properties": {
                                "alert": {"type": "string", "minLength": 1},
                                "record": {"type": "string", "minLength": 1},
                                "expr": {"type": ["string", "integer"], "minLength": 1},
                                "for": {"type": "string", "pattern": DURATION},
                                "keep_firing_for": {"type": "string", "pattern": DURATION},
                                "labels": STRING_MAP, "annotations": STRING_MAP}}}}}}}}},
    },
}


def write_docs(directory, docs):
    os.makedirs(directory, exist_ok=True)
    files = []
    for i, (_, doc) in enumerate(docs):
        path = os.path.join(directory, f"{i:02d}-{doc['kind']}-{doc['metadata']['name']}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        files.append((path, doc))
    return files


def kube_validate(files):
    """Returns (problems, number of object x version validations)."""
    problems, count = [], 0
    core = [p for p, d in files if d["kind"] not in CRD_KINDS]
    if core:
        args = [os.path.join(VENV_BIN, "kubernetes-validate"), "--strict"]
        for version in KUBE_VERSIONS:
            args += ["-k", version]
        proc = subprocess.run(args + core, capture_output=True, text=True)
        for line in (proc.stdout + proc.stderr).splitlines():
            if " passed for resource " in line:
                count += 1
            elif line.strip():
                # ERROR (schema violation), WARN (no schema for the kind:
                # a typo'd kind or apiVersion), FATAL.
                problems.append(line.strip())
        if proc.returncode != 0 and not problems:
            problems.append(f"kubernetes-validate exited {proc.returncode}")
    for path, doc in files:
        if doc["kind"] in CRD_KINDS:
            validator = jsonschema.Draft7Validator(CRD_SCHEMAS[doc["kind"]])
            errs = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
            for e in errs:
                problems.append(f"{os.path.basename(path)}: {'.'.join(map(str, e.path)) or '(root)'}: {e.message}")
            count += 1
    return problems, count


def checkov(directory):
    """Returns (failed, skipped, passed) of checkov over one directory."""
    proc = subprocess.run(
        [os.path.join(VENV_BIN, "checkov"), "-d", directory, "--framework", "kubernetes",
         "-o", "json", "--skip-download", "--compact"],
        capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"error: checkov printed no JSON report (exit {proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    if isinstance(report, list):
        report = next((r for r in report if r.get("check_type") == "kubernetes"), {})
    results = report.get("results", {})
    return (results.get("failed_checks", []), results.get("skipped_checks", []),
            results.get("passed_checks", []))


def hadolint(path):
    proc = subprocess.run([os.path.join(VENV_BIN, "hadolint"), "--no-color", path],
                          capture_output=True, text=True)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


# --- the Docker build context --------------------------------------------------
def docker_context(dest):
    """Copies what .dockerignore leaves into dest (the patterns this repo uses:
    no negations), then checks the workspace resolves there."""
    with open(".dockerignore") as f:
        patterns = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    if any(p.startswith("!") for p in patterns):
        raise SystemExit("error: this check does not model '!' patterns of .dockerignore")

    def ignored(rel, is_dir):
        for p in patterns:
            pat = p.rstrip("/")
            if p.endswith("/") and not is_dir:
                continue
            if fnmatch.fnmatch(rel, pat) or (pat.startswith("**/") and
                                              (fnmatch.fnmatch(rel, pat[3:]) or
                                               fnmatch.fnmatch(os.path.basename(rel), pat[3:]))):
                return True
            if not p.endswith("/") and fnmatch.fnmatch(os.path.basename(rel), pat) and "/" not in pat:
                # Docker matches a bare pattern at the root only, except via **/
                if rel == os.path.basename(rel):
                    return True
        return False

    for root, dirs, files in os.walk("."):
        rel_root = os.path.relpath(root, ".")
        dirs[:] = [d for d in dirs if not ignored(os.path.normpath(os.path.join(rel_root, d)), True)]
        for name in files:
            rel = os.path.normpath(os.path.join(rel_root, name))
            if ignored(rel, False):
                continue
            os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(rel, os.path.join(dest, rel))
    proc = subprocess.run(["cargo", "metadata", "--locked", "--offline", "--format-version", "1",
                           "--no-deps", "--manifest-path", os.path.join(dest, "Cargo.toml")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return proc.stderr.strip()
    pkgs = [p for p in json.loads(proc.stdout)["packages"] if p["name"] == "ekyc-service"]
    if not pkgs or not any(t["name"] == "ekycd" for t in pkgs[0]["targets"]):
        return "the context has no ekyc-service package with an ekycd binary"
    return None


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def main():
    os.makedirs(os.path.join(WORK, "configs"), exist_ok=True)
    sets = value_sets()
    print(f"chart {CHART} with value sets: {', '.join(n for n, _ in sets)}; "
          f"Helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}); "
          f"Kubernetes {', '.join(KUBE_VERSIONS)}")

    print("==> 1. helm lint --strict")
    for name, path in sets:
        values = load_values(path)
        clean = True
        for kv in KUBE_VERSIONS:
            errs = lint_errors(CHART, values, kv)
            if errs:
                clean = False
                bad(f"lint {name} (k8s {kv}): " + "; ".join(errs))
        if clean:
            ok(f"lint {name}: no warning or error on Kubernetes {', '.join(KUBE_VERSIONS)}")

    print("==> 2. helm template, strict YAML, chart invariants")
    rendered = {}
    for name, path in sets:
        values = load_values(path)
        try:
            out, docs = render(CHART, values)
        except (helm.HelmError, yaml.YAMLError) as e:
            bad(f"render {name}: {e}")
            continue
        kinds = sorted({d["kind"] for _, d in docs})
        problems = invariants(name, values, out, docs)
        if problems:
            bad(f"invariants {name}: " + "; ".join(problems))
        else:
            ok(f"render {name}: {len(docs)} objects ({', '.join(kinds)}); invariants hold")
        rendered[name] = write_docs(os.path.join(WORK, "rendered", name), docs)

    print("==> 3. kubernetes-validate --strict (" + ", ".join(KUBE_VERSIONS) +
          "); Prometheus Operator kinds against the script's CRD subsets")
    for name, files in rendered.items():
        problems, count = kube_validate(files)
        crds = sorted({d["kind"] for _, d in files if d["kind"] in CRD_KINDS})
        if problems:
            bad(f"validate {name}: " + "; ".join(problems))
        else:
            note = f"; {', '.join(crds)} against the CRD subset" if crds else ""
            ok(f"validate {name}: {count} validations passed{note}")

    print("==> 4. checkov --framework kubernetes")
    skipped_all = {}
    for name in rendered:
        failed, skipped, passed_checks = checkov(os.path.join(WORK, "rendered", name))
        for s in skipped:
            reason = (s.get("check_result") or {}).get("suppress_comment", "").strip()
            resource = s.get("resource", "?").split(".")
            if len(reason) < 20:
                bad(f"checkov {name}: {s['check_id']} is skipped on {s.get('resource')} "
                    f"without a written reason (checkov.io/skip annotation)")
            skipped_all.setdefault((s["check_id"], reason), set()).add(resource[0] + "/" + resource[-1])
        if failed:
            bad(f"checkov {name}: " + "; ".join(f'{f["check_id"]} {f["check_name"]} ({f["resource"]})'
                                               for f in failed))
        else:
            ok(f"checkov {name}: {len(passed_checks)} passed, 0 failed, {len(skipped)} skipped")
    if skipped_all:
        print("  skipped checks (checkov.io/skip annotations in the chart):")
        for (check, reason), resources in sorted(skipped_all.items()):
            print(f"    {check} on {', '.join(sorted(resources))}: {reason}")

    print("==> 5. hadolint Dockerfile; the build context")
    rc, text = hadolint("Dockerfile")
    if rc != 0:
        bad(f"hadolint Dockerfile: {text}")
    else:
        ok("hadolint Dockerfile: clean")
    err = docker_context(os.path.join(WORK, "docker-context"))
    if err:
        bad(f"docker build context: {err}")
    else:
        ok("docker build context (minus .dockerignore) resolves: cargo metadata --locked finds ekyc-service/ekycd")

    print("==> 6. self-test: broken inputs must fail")
    selftest(sets)

    print(f"chart checks: {passed} passed, {len(failures)} failed")
    if failures:
        print("error: the chart checks failed:", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        sys.exit(1)


def expect_failure(label, fn):
    """fn() returns a description of what caught the problem, or None."""
    try:
        caught = fn()
    except (helm.HelmError, yaml.YAMLError) as e:
        caught = str(e).strip().splitlines()[-1][:160]
    if caught:
        ok(f"caught {label}: {caught}")
    else:
        bad(f"self-test: {label} was NOT caught")


def selftest(sets):
    base = load_values(dict(sets)["trial"] if "trial" in dict(sets) else sets[0][1])

    # A broken template in a copy of the chart.
    broken = os.path.join(WORK, "broken-chart")
    shutil.copytree(CHART, broken)
    with open(os.path.join(broken, "templates", "broken.yaml"), "w") as f:
        f.write("{{- if .Values.replicaCount }}\nkind: ConfigMap\n")  # no {{ end }}

    def broken_lint():
        errs = lint_errors(broken, base, KUBE_VERSIONS[0])
        return errs and errs[0][:160]

    def broken_render():
        render(broken, base)
        return None

    expect_failure("a template without {{ end }} (helm lint)", broken_lint)
    expect_failure("a template without {{ end }} (helm template)", broken_render)

    # Values the schema must refuse, each alone over the trial set.
    for label, over in [
        ("replicaCount 0", {"replicaCount": 0}),
        ("negative Argon2 memory", {"config": {"argon2": {"memoryKib": -1}}}),
        ("missing Argon2 memory", {"config": {"argon2": {"memoryKib": None}}}),
        ("an unknown top-level key", {"replicas": 3}),
        ("an image tag with a space", {"image": {"tag": "bad tag"}}),
        ("an empty secrets.existingSecret", {"secrets": {"existingSecret": ""}}),
        ("port 70000", {"ports": {"grpc": 70000}}),
        ("log.format xml", {"config": {"log": {"format": "xml"}}}),
    ]:
        values = deep_merge(base, over)
        path = os.path.join(WORK, "bad-values.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(values, f)
        values = load_values(path)

        def schema_refuses():
            errs = lint_errors(CHART, values, KUBE_VERSIONS[0])
            if not errs:
                return None
            try:
                render(CHART, values)
            except helm.HelmError as e:
                return "lint and template: " + str(e).strip().splitlines()[-1][:140]
            return None

        expect_failure(f"values with {label}", schema_refuses)

    # Values the templates refuse with a message (beyond the schema).
    for label, over, needle in [
        ("no database", {"postgresql": {"enabled": False}}, "needs PostgreSQL"),
        ("three replicas without Redis", {"replicaCount": 3, "redis": {"enabled": False}}, "must share"),
        ("an external database without an egress rule",
         {"postgresql": {"enabled": False}, "externalDatabase": {"existingSecret": "db"}},
         "networkPolicy.egress.postgresql.to"),
        ("TLS without its Secret", {"tls": {"enabled": True}}, "tls.existingSecret"),
    ]:
        values = deep_merge(base, over)

        def template_refuses(values=values, needle=needle):
            try:
                render(CHART, values)
            except helm.HelmError as e:
                return needle in str(e) and f"fails with '{needle}...'"
            return None

        expect_failure(f"values with {label}", template_refuses)

    # A manifest with an unknown field, and an unknown kind.
    _, docs = render(CHART, base)
    dep = copy.deepcopy(next(d for _, d in docs if d["kind"] == "Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    odd = copy.deepcopy(dep)
    odd["kind"] = "Deploymnet"
    sm = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
          "metadata": {"name": "x"}, "spec": {"selector": {}, "endpoints": [{"port": "metrics",
                                                                             "intervall": "30s"}]}}
    for label, doc in [("an unknown container field 'resource'", dep),
                       ("an unknown kind 'Deploymnet'", odd),
                       ("a ServiceMonitor with 'intervall'", sm)]:
        files = write_docs(os.path.join(WORK, "bad-manifest-" + doc["kind"]), [("x", doc)])
        expect_failure(label, lambda files=files: "; ".join(kube_validate(files)[0])[:160] or None)

    # An insecure pod must fail checkov.
    insecure = copy.deepcopy(next(d for _, d in docs if d["kind"] == "Deployment"))
    c = insecure["spec"]["template"]["spec"]["containers"][0]
    c["securityContext"] = {"privileged": True, "allowPrivilegeEscalation": True}
    insecure["spec"]["template"]["spec"]["automountServiceAccountToken"] = True
    write_docs(os.path.join(WORK, "bad-checkov"), [("x", insecure)])
    expect_failure("a privileged container (checkov)", lambda: ", ".join(
        sorted({f["check_id"] for f in checkov(os.path.join(WORK, "bad-checkov"))[0]}))[:160] or None)

    # A bad Dockerfile must fail hadolint.
    bad_dockerfile = os.path.join(WORK, "Dockerfile.bad")
    with open(bad_dockerfile, "w") as f:
        f.write("FROM debian\nRUN apt-get update && apt-get install -y curl\n")
    expect_failure("an untagged base and unpinned apt-get (hadolint)", lambda: (
        lambda rc_text: rc_text[0] != 0 and rc_text[1].replace("\n", " ")[:160])(hadolint(bad_dockerfile)))


main()
PYEOF

"$PY" "$WORK/check.py" "$WORK" || die "chart checks failed (see above)"

# --- 7. ekycd reads each rendered ekycd.toml ---------------------------------
# `ekycd migrate` loads the whole configuration (unknown keys and wrong types
# fail, naming the key) and migrates a scratch SQLite; the stores' URLs are
# overridden the way the chart does it, through the environment.
echo "==> 7. the rendered ekycd.toml of each value set, loaded by ekycd (cargo build -q -p ekyc-service --bin ekycd)"
cargo build -q -p ekyc-service --bin ekycd || die "cargo build of ekycd failed"
EKYCD_BIN="$PWD/target/debug/ekycd"
for cfg in "$WORK"/configs/*.toml; do
    name=$(basename "$cfg" .toml)
    scratch="$WORK/ekycd-$name"
    mkdir -p "$scratch"
    if ! out=$(env -u EKYCD_LIMITS__REDIS_URL EKYCD_CONFIG="$cfg" EKYCD_DATA_DIR="$scratch" \
        EKYCD_DATABASE_URL="sqlite://$scratch/ekyc.db" "$EKYCD_BIN" migrate 2>&1); then
        echo "$out" >&2
        die "ekycd refused the ekycd.toml rendered for $name (above)"
    fi
    echo "  ok: ekycd migrate accepted the $name ekycd.toml"
done
# Self-test: the same run must refuse a key ekycd does not know.
mkdir -p "$WORK/ekycd-bad"
printf 'listn = "0.0.0.0:50051"\n' >"$WORK/ekycd-bad/ekycd.toml"
if env -u EKYCD_LIMITS__REDIS_URL EKYCD_CONFIG="$WORK/ekycd-bad/ekycd.toml" EKYCD_DATA_DIR="$WORK/ekycd-bad" \
    EKYCD_DATABASE_URL="sqlite://$WORK/ekycd-bad/ekyc.db" "$EKYCD_BIN" migrate >/dev/null 2>&1; then
    die "self-test: ekycd migrate accepted an ekycd.toml with an unknown key; this check proves nothing"
fi
echo "  ok: caught an unknown key (listn) in an ekycd.toml: ekycd migrate refused it"

# --- the observability checks (scripts/check_observability.py) ----------------
# Hook for the dashboard and alert rule checks; they get the built ekycd.
if [ -f scripts/check_observability.py ]; then
    echo "==> observability: $PY scripts/check_observability.py"
    EKYCD_BIN="$EKYCD_BIN" "$PY" scripts/check_observability.py \
        || die "scripts/check_observability.py failed"
    # And the checker itself: broken dashboards and rules must fail it.
    EKYCD_BIN="$EKYCD_BIN" "$PY" scripts/check_observability.py --self-test \
        || die "scripts/check_observability.py --self-test: a deliberate break was not caught"
fi

echo "==> chart checks passed in $((SECONDS - started)) s"
