#!/usr/bin/env python3
"""Checks the Grafana dashboard and the alert rules of the ekyc Helm chart.

    target/chart-venv/bin/python scripts/check_observability.py [--self-test]

What it checks, failing (exit 1) with one line per problem:

1. helm/ekyc/dashboards/ekyc.json: a Grafana dashboard of schemaVersion
   >= 39 whose data source is the ${datasource} variable (type
   prometheus) on every panel and target, with namespace and pod
   variables; unique panel ids; every panel titled and described; every
   target with a PromQL expression; every panel query selecting
   namespace=~"$namespace" and pod=~"$pod".
2. helm/ekyc/alerts/ekyc-rules.yaml: a Prometheus rule file (`groups:`)
   whose placeholders (__EKYC_NAMESPACE__, ...) are all replaced by
   templates/prometheusrule.yaml; every alert with an expression, a `for:`,
   a severity label, a summary, a description and a runbook_url whose
   anchor is a heading of docs/runbooks.md.
3. Every PromQL expression of both (Grafana's $variables and the rule
   placeholders substituted first) parses with promql-parser (the Rust
   promql-parser through its Python bindings).
4. Every metric name those expressions select (read off the parsed AST:
   each VectorSelector's name, or its __name__="..." matcher) is exported
   by a real ekycd: the script starts `EKYCD_BIN` (default
   target/debug/ekycd) as `ekycd demo` on loopback with a temporary data
   directory, a self-signed TLS certificate (so the certificate's metric
   exists) and the cheapest Argon2 cost; makes a few gRPC calls (ekycd
   creates some families only with their first sample: a health check,
   ListSigningKeys, Verify without a key, an invalid one, one with true
   claims and seven with a wrong birth date about one ID, so that the
   subject guard fails, locks out and refuses); scrapes /metrics, and stops
   it with SIGTERM. A family counts with the names its samples carry in
   OpenMetrics (`_total` of a counter; `_bucket`, `_sum`, `_count` of a
   histogram), whether or not it has samples yet. `reason` and `outcome`
   values are checked against the ErrorInfo reasons of
   service/src/error.rs, and label names against the scraped samples.

`--self-test` breaks copies of the dashboard and of the rules on purpose
(a syntax error, an unknown metric, a hard-coded data source, a duplicate
panel id, a runbook anchor that does not exist, an unknown reason) and
fails unless the checks catch every one. `--no-server` skips step 4 (and
the self-test's metric cases); `--metrics-file FILE` checks against a
saved scrape instead of starting ekycd; `--env KEY=VALUE` adds settings
to the ekycd it starts (e.g. `EKYCD_TELEMETRY__OTLP_ENDPOINT=...`).

Needs Python 3.11, promql-parser and PyYAML (both in
scripts/chart-requirements.txt, installed into target/chart-venv by
scripts/chart.sh), and openssl (or the `cryptography` package) for the
certificate.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "ekyc"
DASHBOARD = CHART / "dashboards" / "ekyc.json"
RULES = CHART / "alerts" / "ekyc-rules.yaml"
RULE_TEMPLATE = CHART / "templates" / "prometheusrule.yaml"
VALUES = CHART / "values.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
ERROR_RS = ROOT / "service" / "src" / "error.rs"

try:
    import promql_parser
except ImportError:  # pragma: no cover - environment problem
    sys.exit(
        "check_observability: the promql-parser package is missing. Install the chart tools:\n"
        "  python3 -m venv target/chart-venv && "
        "target/chart-venv/bin/pip install -r scripts/chart-requirements.txt\n"
        "and run this script with target/chart-venv/bin/python."
    )
try:
    import yaml
except ImportError:  # pragma: no cover - environment problem
    sys.exit(
        "check_observability: PyYAML is missing (it parses the rule file). Install the chart tools:\n"
        "  target/chart-venv/bin/pip install -r scripts/chart-requirements.txt  (checkov brings PyYAML)"
    )

# Values Grafana's built-in variables are replaced with before parsing.
GRAFANA_BUILTINS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "6h",
    "__range_s": "21600",
    "__range_ms": "21600000",
    "__interval_ms": "60000",
    "__rate_interval_ms": "300000",
}
# Values of the dashboard's own variables (any other defined variable gets
# its name). The panel-query check below looks for these values.
DASHBOARD_VALUES = {"namespace": "ekyc", "pod": "ekyc-0"}
DATASOURCE_UIDS = {"${datasource}", "$datasource"}

# Series Prometheus makes itself for every target: never in a scrape.
PROMETHEUS_SYNTHETIC = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added",
}
# Labels the Prometheus Operator (ServiceMonitor / PodMonitor) puts on every
# target: a query may select on them whatever ekycd exports.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "container", "endpoint", "service"}
SEVERITIES = {"critical", "warning", "info"}
PLACEHOLDER = re.compile(r"__[A-Z][A-Z0-9_]*[A-Z0-9]__")


@dataclass
class Query:
    """One PromQL expression and where it comes from."""

    where: str  # e.g. 'dashboard panel 7 "Verify latency" target A'
    expr: str  # after substitution
    kind: str  # "panel", "variable" or "rule"


@dataclass
class Selector:
    where: str
    metric: str
    matchers: list  # (name, op, value)
    kind: str


@dataclass
class Report:
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    panels: int = 0
    alerts: int = 0
    queries: int = 0
    names: dict = field(default_factory=dict)  # metric -> set of where

    def fail(self, msg: str) -> None:
        self.problems.append(msg)


# ----------------------------------------------------------------- Grafana

VAR_RE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)(?::[\w]+)?\]\]|\$(\w+)")


def substitute_grafana(expr: str, defined: set, where: str, report: Report) -> str:
    """Replaces Grafana's $variables with concrete values."""

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name in defined:
            return DASHBOARD_VALUES.get(name, name)
        if name.isdigit():  # "$1" of label_replace is not a variable
            return m.group(0)
        report.fail(f"{where}: ${name} is not a variable of the dashboard (nor a Grafana built-in)")
        return name

    return VAR_RE.sub(repl, expr)


def datasource_ok(ds) -> bool:
    return isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") in DATASOURCE_UIDS


def all_panels(panels):
    for p in panels or []:
        yield p
        # A collapsed row keeps its panels inside it.
        yield from all_panels(p.get("panels"))


def check_dashboard(dash, report: Report, source: str = "dashboard") -> list[Query]:
    queries: list[Query] = []
    if not isinstance(dash, dict):
        report.fail(f"{source}: not a JSON object")
        return queries
    schema = dash.get("schemaVersion")
    if not isinstance(schema, int) or schema < 39:
        report.fail(f"{source}: schemaVersion is {schema!r}, want an integer >= 39")
    for key in ("uid", "title"):
        if not dash.get(key):
            report.fail(f"{source}: no {key}")
    variables = (dash.get("templating") or {}).get("list") or []
    by_name = {v.get("name"): v for v in variables if isinstance(v, dict)}
    ds_var = by_name.get("datasource")
    if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
        report.fail(f'{source}: needs a templating variable "datasource" of type datasource, query prometheus')
    for name in ("namespace", "pod"):
        if name not in by_name:
            report.fail(f"{source}: needs a templating variable {name!r}")
    defined = set(by_name)
    for v in variables:
        if v.get("type") != "query":
            continue
        where = f'{source} variable "{v.get("name")}"'
        if not datasource_ok(v.get("datasource")):
            report.fail(f"{where}: datasource must be {{type: prometheus, uid: ${{datasource}}}}, is {v.get('datasource')!r}")
        q = v.get("query")
        text = q.get("query") if isinstance(q, dict) else q
        if not isinstance(text, str) or not text.strip():
            report.fail(f"{where}: no query")
            continue
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", text, re.S)
        m2 = re.fullmatch(r"\s*query_result\((.*)\)\s*", text, re.S)
        if m:
            expr = m.group(1)
        elif m2:
            expr = m2.group(1)
        else:
            report.fail(f"{where}: query {text!r} is not label_values(SELECTOR, LABEL) or query_result(EXPR)")
            continue
        queries.append(Query(where, substitute_grafana(expr, defined, where, report), "variable"))

    seen_ids: dict = {}
    panels = list(all_panels(dash.get("panels")))
    if not panels:
        report.fail(f"{source}: no panels")
    for p in panels:
        pid = p.get("id")
        title = p.get("title")
        where = f'{source} panel {pid} "{title}"'
        if not isinstance(pid, int):
            report.fail(f"{where}: id must be an integer")
        elif pid in seen_ids:
            report.fail(f'{where}: id {pid} is also the id of panel "{seen_ids[pid]}"')
        else:
            seen_ids[pid] = title
        if not title:
            report.fail(f"{where}: no title")
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")):
            report.fail(f"{where}: gridPos needs integer h, w, x, y")
        elif gp["x"] + gp["w"] > 24:
            report.fail(f"{where}: gridPos x + w = {gp['x'] + gp['w']} > 24")
        if p.get("type") == "row":
            continue
        report.panels += 1
        if not (p.get("description") or "").strip():
            report.fail(f"{where}: no description")
        if not datasource_ok(p.get("datasource")):
            report.fail(f"{where}: datasource must be {{type: prometheus, uid: ${{datasource}}}}, is {p.get('datasource')!r}")
        targets = p.get("targets") or []
        if not targets:
            report.fail(f"{where}: no targets")
        ref_ids = set()
        for i, t in enumerate(targets):
            ref = t.get("refId") or f"#{i}"
            twhere = f"{where} target {ref}"
            if ref in ref_ids:
                report.fail(f"{twhere}: refId used twice in the panel")
            ref_ids.add(ref)
            if "datasource" in t and not datasource_ok(t["datasource"]):
                report.fail(f"{twhere}: datasource must be the ${{datasource}} variable, is {t['datasource']!r}")
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                report.fail(f"{twhere}: no expr")
                continue
            queries.append(Query(twhere, substitute_grafana(expr, defined, twhere, report), "panel"))
    return queries


# ------------------------------------------------------------------- rules

def github_anchors(markdown: str) -> set:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        m = None if in_code else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"[`*_]|<[^>]+>", "", m.group(1)).strip().lower()
            slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
            base, n = slug, 1
            while slug in anchors:
                slug, n = f"{base}-{n}", n + 1
            anchors.add(slug)
    return anchors


def default_max_age_days() -> str:
    try:
        values = yaml.safe_load(VALUES.read_text()) or {}
        days = values["metrics"]["prometheusRule"]["signingKeyMaxAgeDays"]
        return str(int(days))
    except (OSError, KeyError, TypeError, ValueError):
        return "365"


def placeholder_values() -> dict:
    """What the chart puts in for each placeholder, for a release "ekyc"."""
    return {
        "__EKYC_NAMESPACE__": DASHBOARD_VALUES["namespace"],
        "__EKYC_JOB__": "ekyc-metrics",
        "__SIGNING_KEY_MAX_AGE_DAYS__": default_max_age_days(),
        "__RUNBOOK_URL__": "docs/runbooks.md",
    }


def check_rules(text: str, template: str | None, runbooks: str | None, report: Report,
                source: str = "rules") -> list[Query]:
    queries: list[Query] = []
    values = placeholder_values()
    found = set(PLACEHOLDER.findall(text))
    for ph in sorted(found):
        if ph not in values:
            report.fail(f"{source}: unknown placeholder {ph} (known: {', '.join(sorted(values))})")
        elif template is not None and f'"{ph}"' not in template:
            report.fail(f"{source}: placeholder {ph} is not replaced by templates/prometheusrule.yaml")
    for ph, value in values.items():
        text = text.replace(ph, value)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        report.fail(f"{source}: not YAML: {e}")
        return queries
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
        report.fail(f"{source}: needs a non-empty top-level `groups:` list")
        return queries
    anchors = github_anchors(runbooks) if runbooks is not None else None
    group_names, alert_names = set(), set()
    for g in doc["groups"]:
        gname = g.get("name") if isinstance(g, dict) else None
        if not gname:
            report.fail(f"{source}: a group without a name")
            continue
        if gname in group_names:
            report.fail(f"{source}: group {gname!r} twice")
        group_names.add(gname)
        rules = g.get("rules")
        if not isinstance(rules, list) or not rules:
            report.fail(f"{source} group {gname}: no rules")
            continue
        for r in rules:
            if not isinstance(r, dict):
                report.fail(f"{source} group {gname}: a rule that is not a mapping: {r!r}")
                continue
            name = r.get("alert") or r.get("record")
            where = f"{source} alert {name}" if "alert" in r else f"{source} record {name}"
            if not name:
                report.fail(f"{source} group {gname}: a rule with neither alert nor record")
                continue
            expr = r.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                report.fail(f"{where}: no expr")
            else:
                queries.append(Query(where, expr, "rule"))
            if "record" in r:
                continue
            report.alerts += 1
            if name in alert_names:
                report.fail(f"{where}: alert name used twice")
            alert_names.add(name)
            dur = r.get("for")
            if not dur:
                report.fail(f"{where}: no `for:` (an alert should survive one bad scrape)")
            else:
                try:
                    promql_parser.parse_duration(str(dur))
                except ValueError as e:
                    report.fail(f"{where}: for: {dur!r} is not a duration ({e})")
            sev = (r.get("labels") or {}).get("severity")
            if sev not in SEVERITIES:
                report.fail(f"{where}: labels.severity is {sev!r}, want one of {sorted(SEVERITIES)}")
            ann = r.get("annotations") or {}
            for key in ("summary", "description", "runbook_url"):
                if not str(ann.get(key) or "").strip():
                    report.fail(f"{where}: no annotations.{key}")
            for key, value in ann.items():
                if str(value).count("{{") != str(value).count("}}"):
                    report.fail(f"{where}: annotations.{key} has unbalanced {{{{ }}}}")
            url = str(ann.get("runbook_url") or "")
            if url:
                base, _, anchor = url.partition("#")
                if base != values["__RUNBOOK_URL__"]:
                    report.fail(f"{where}: runbook_url {url!r} does not start with __RUNBOOK_URL__#")
                if anchor != name.lower():
                    report.fail(f"{where}: runbook_url anchor is {anchor!r}, want {name.lower()!r}")
                if anchors is not None and anchor not in anchors:
                    report.fail(f"{where}: docs/runbooks.md has no heading with the anchor #{anchor}")
    return queries


# ------------------------------------------------------------------- PromQL

def parse_queries(queries: list[Query], report: Report) -> list[Selector]:
    """Parses every expression; returns every selector with its metric name."""
    selectors: list[Selector] = []
    for q in queries:
        report.queries += 1
        try:
            ast = promql_parser.parse(q.expr)
        except Exception as e:  # the bindings raise ValueError; be safe with the rest
            one_line = " ".join(q.expr.split())
            report.fail(f"{q.where}: PromQL syntax error: {e}\n      in: {one_line}")
            continue
        found: list = []

        def visit(node, found=found):
            if isinstance(node, promql_parser.VectorSelector):
                found.append(node)
            return True

        promql_parser.walk(ast, visit)
        for vs in found:
            matchers = [(m.name, str(m.op).rsplit(".", 1)[-1], m.value) for m in vs.matchers.matchers]
            for group in vs.matchers.or_matchers or []:
                matchers += [(m.name, str(m.op).rsplit(".", 1)[-1], m.value) for m in group]
            name = vs.name
            for mname, op, value in matchers:
                if mname == "__name__":
                    if op == "Equal" and name is None:
                        name = value
                    elif op != "Equal":
                        report.fail(f"{q.where}: a metric name chosen by a regular expression ({value!r}) cannot be checked")
            if not name:
                report.fail(f"{q.where}: a selector without a metric name ({vs})")
                continue
            report.names.setdefault(name, set()).add(q.where)
            selectors.append(Selector(q.where, name, matchers, q.kind))
    return selectors


def check_panel_scoping(selectors: list[Selector], report: Report) -> None:
    """Every panel query must follow the namespace and pod variables."""
    for s in selectors:
        if s.kind != "panel":
            continue
        have = {(n, v) for n, _, v in s.matchers}
        for label, value in DASHBOARD_VALUES.items():
            if (label, value) not in have:
                report.fail(f'{s.where}: {s.metric} does not select {label}=~"${label}"')


def error_reasons() -> set | None:
    try:
        text = ERROR_RS.read_text()
    except OSError:
        return None
    return set(re.findall(r'^\s*\w+\s*=\s*"([A-Z][A-Z0-9_]*)"\s*=>', text, re.M))


# Labels whose values are ErrorInfo reasons, per metric.
REASON_LABELS = {
    ("ekyc_errors_total", "reason"): set(),
    ("ekyc_verify_calls_total", "outcome"): {"answered"},
}


def check_reason_values(selectors: list[Selector], report: Report) -> None:
    reasons = error_reasons()
    if reasons is None:
        report.notes.append(f"{ERROR_RS} not found: reason values not checked")
        return
    for s in selectors:
        for label, op, value in s.matchers:
            extra = REASON_LABELS.get((s.metric, label))
            if extra is None:
                continue
            allowed = reasons | extra
            if op in ("Equal", "NotEqual"):
                values = [value]
            elif re.fullmatch(r"[A-Za-z0-9_|]+", value):
                values = value.split("|")
            else:
                report.notes.append(f"{s.where}: {label}=~{value!r} not checked (not a plain alternation)")
                continue
            for v in values:
                if v not in allowed:
                    report.fail(f"{s.where}: {s.metric}{{{label}=...}} value {v!r} is no ErrorInfo reason "
                                f"of service/src/error.rs")


# ------------------------------------------------------------------ scrape

@dataclass
class Scrape:
    families: dict  # family name -> type
    samples: dict  # sample name -> list of label dicts
    text: str


LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_scrape(text: str) -> Scrape:
    families: dict = {}
    samples: dict = {}
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                families[parts[2]] = parts[3].strip()
            continue
        if not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s", line)
        if not m:
            continue
        labels = dict(LABEL_RE.findall(m.group(2) or ""))
        samples.setdefault(m.group(1), []).append(labels)
    return Scrape(families, samples, text)


SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def exposed_names(scrape: Scrape) -> dict:
    """Every series name the scrape can produce -> its family."""
    names = {}
    for fam, kind in scrape.families.items():
        for suffix in SUFFIXES.get(kind, ("",)):
            names[fam + suffix] = fam
    for name in scrape.samples:
        names.setdefault(name, name)
    return names


def check_names(selectors: list[Selector], report: Report, scrape: Scrape) -> tuple[int, list]:
    exposed = exposed_names(scrape)
    missing = []
    for name in sorted(report.names):
        users = sorted(report.names[name])
        if name in PROMETHEUS_SYNTHETIC:
            report.notes.append(f"{name}: made by Prometheus for every target, not by ekycd (not checked)")
            continue
        if name not in exposed:
            missing.append(name)
            shown = "; ".join(users[:3]) + (f"; and {len(users) - 3} more" if len(users) > 3 else "")
            report.fail(f"metric {name} is not exported by ekycd (used by {shown})")
            continue
        fam = exposed[name]
        if not any(n in scrape.samples for n in (name, fam) if n):
            report.notes.append(f"{name}: family {fam} declared, no samples yet in this scrape")
    # Label names, where the scrape has samples to compare with.
    for s in selectors:
        rows = scrape.samples.get(s.metric)
        if not rows:
            continue
        known = set().union(*(r.keys() for r in rows)) | TARGET_LABELS | {"__name__"}
        for label, _, _ in s.matchers:
            if label not in known:
                report.fail(f"{s.where}: {s.metric} has no label {label!r} (it has: {', '.join(sorted(set().union(*(r.keys() for r in rows))) or 'none')})")
    return len([n for n in report.names if n not in PROMETHEUS_SYNTHETIC]), missing


# ------------------------------------------------------------ ekycd server

def make_certificate(directory: Path) -> tuple[Path, Path] | None:
    """A self-signed X.509 v3 certificate for 127.0.0.1, or None."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        import datetime
        import ipaddress

        k = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.timezone.utc)
        c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now)
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
             .sign(k, hashes.SHA256()))
        cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        return cert, key
    except ImportError:
        pass
    openssl = shutil.which("openssl")
    if not openssl:
        return None
    run = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        capture_output=True, text=True)
    if run.returncode != 0:
        print(f"openssl could not make a certificate: {run.stderr.strip()}", file=sys.stderr)
        return None
    return cert, key


# A minimal gRPC client (HTTP/2 by hand, stdlib only): ekycd creates some
# metric families only with their first sample (an RPC, a Verify outcome, a
# tenant's guard counts), so the check makes calls of each kind first.

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _hpack_int(value: int, prefix_bits: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = [limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(out + [value])


def _hpack_literal(name: str, value: str) -> bytes:
    # "Literal Header Field without Indexing -- New Name" (RFC 7541, 6.2.2),
    # no Huffman coding: no table state to keep.
    n, v = name.encode(), value.encode()
    return b"\x00" + _hpack_int(len(n), 7) + n + _hpack_int(len(v), 7) + v


def _pb_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _pb_bytes(field_number: int, value: bytes | str) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    return _pb_varint(field_number << 3 | 2) + _pb_varint(len(value)) + value


CLAIM_FIELDS = ("full_name", "date_of_birth", "gender", "nationality", "place_of_origin",
                "place_of_residence", "id_issue_date", "id_expiry_date", "phone_number")


def verify_request(request_id: str, id_number: str, claims: dict) -> bytes:
    """An ekyc.v1.VerifyRequest in protobuf wire format."""
    encoded = b"".join(_pb_bytes(i + 1, claims[f]) for i, f in enumerate(CLAIM_FIELDS) if f in claims)
    return (_pb_bytes(1, request_id) + _pb_bytes(2, id_number) + _pb_bytes(3, encoded)
            + _pb_bytes(4, "OBSERVABILITY_CHECK") + _pb_bytes(5, "check-observability"))


def grpc_call(address: str, tls: bool, path: str, message: bytes, metadata=(), timeout: float = 10.0) -> None:
    """Sends one unary gRPC call and reads until its stream ends.

    The answer is not decoded (that would need HPACK's Huffman tables): the
    server counts the call whatever it answers, which is all this is for.
    """
    import socket
    import ssl

    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # our own throw-away certificate
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        headers = [(":method", "POST"), (":scheme", "https" if tls else "http"), (":path", path),
                   (":authority", address), ("content-type", "application/grpc"), ("te", "trailers"),
                   *metadata]
        block = b"".join(_hpack_literal(n, v) for n, v in headers)
        body = b"\x00" + len(message).to_bytes(4, "big") + message
        sock.sendall(H2_PREFACE + _h2_frame(4, 0, 0) + _h2_frame(1, 0x4, 1, block) + _h2_frame(0, 0x1, 1, body))
        buf = b""

        def read(n: int) -> bytes:
            nonlocal buf
            while len(buf) < n:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed before the call ended")
                buf += chunk
            out, buf = buf[:n], buf[n:]
            return out

        while True:
            head = read(9)
            kind, flags = head[3], head[4]
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            payload = read(int.from_bytes(head[:3], "big"))
            if kind == 4 and not flags & 0x1:  # SETTINGS: acknowledge
                sock.sendall(_h2_frame(4, 0x1, 0))
            elif kind == 6 and not flags & 0x1:  # PING: answer
                sock.sendall(_h2_frame(6, 0x1, 0, payload))
            elif kind == 7:  # GOAWAY
                raise ConnectionError("the server sent GOAWAY")
            elif stream == 1 and kind == 3:  # RST_STREAM
                return
            elif stream == 1 and kind in (0, 1) and flags & 0x1:  # END_STREAM
                return
    finally:
        sock.close()


def exercise(server: "Ekycd") -> list[str]:
    """Calls of each kind, so that every family has samples."""
    assert server.tmp is not None
    key = (server.tmp / "demo" / "api-key").read_text().strip()
    samples = json.loads((server.tmp / "demo" / "citizens.json").read_text())
    auth = [("authorization", f"Bearer {key}")]
    verify = "/ekyc.v1.VerificationService/Verify"
    right = samples[0]["claims"]
    wrong = dict(samples[1]["claims"])
    wrong["date_of_birth"] = "1901-01-01"
    calls = [
        ("health check", "/grpc.health.v1.Health/Check", b"", []),
        ("ListSigningKeys", "/ekyc.v1.VerificationService/ListSigningKeys", b"", []),
        ("Verify without a key", verify, b"", []),
        ("Verify, invalid request", verify, b"", auth),
        ("Verify, every claim right", verify,
         verify_request("obs-right", right["id_number"], {f: right[f] for f in ("full_name", "date_of_birth")}), auth),
    ]
    # max_failures (5) wrong answers lock the subject out; the next is refused.
    for i in range(7):
        calls.append((f"Verify, wrong birth date #{i + 1}", verify,
                      verify_request(f"obs-wrong-{i}", wrong["id_number"],
                                     {f: wrong[f] for f in ("full_name", "date_of_birth")}), auth))
    done = []
    for what, path, message, metadata in calls:
        grpc_call(server.listen, server.tls_used, path, message, metadata)
        done.append(what)
    return done


class Ekycd:
    """`ekycd demo` on loopback in a temporary directory, stopped on exit."""

    def __init__(self, binary: Path, tls: bool = True, timeout: float = 120.0, extra_env: dict | None = None):
        self.binary, self.tls, self.timeout = binary, tls, timeout
        self.extra_env = extra_env or {}
        self.tmp: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.metrics_url = ""
        self.listen = ""
        self.tls_used = False
        self.exit_code: int | None = None

    def start(self) -> "Ekycd":
        """Starts ekycd and waits until it serves; stops it again on failure."""
        if self.proc is not None:
            raise RuntimeError("this ekycd was already started")
        self.tmp = Path(tempfile.mkdtemp(prefix="ekyc-observability-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> "Ekycd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self) -> None:
        assert self.tmp is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("EKYCD_")}
        env.update({
            "EKYCD_LISTEN": "127.0.0.1:0",
            "EKYCD_METRICS_LISTEN": "127.0.0.1:0",
            "EKYCD_ARGON2__PARAMS_ID": "2",
            "EKYCD_ARGON2__MEMORY_KIB": "8",
            "EKYCD_ARGON2__ITERATIONS": "1",
            "EKYCD_ARGON2__PARALLELISM": "1",
            "EKYCD_SHUTDOWN_GRACE_SECS": "2",
            "EKYCD_LOG__FORMAT": "text",
            # anyhow's error backtraces would bury the message (panics keep theirs).
            "RUST_LIB_BACKTRACE": "0",
        })
        env.update(self.extra_env)
        if self.tls:
            pair = make_certificate(self.tmp)
            if pair:
                env["EKYCD_TLS__CERT_FILE"], env["EKYCD_TLS__KEY_FILE"] = str(pair[0]), str(pair[1])
                self.tls_used = True
        self.log = open(self.tmp / "ekycd.log", "w+")
        self.proc = subprocess.Popen(
            [str(self.binary), "--data-dir", str(self.tmp / "data"), "demo", "--citizens", "20",
             "--out", str(self.tmp / "demo")],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        lines: queue.Queue = queue.Queue()

        def pump(stream=self.proc.stdout):
            for line in stream:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.timeout
        demo_ready = False  # "demo ready: ..." follows the two address lines
        while not (self.metrics_url and self.listen and demo_ready):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"ekycd printed no listening lines within {self.timeout:.0f} s{self._log_tail()}")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"ekycd exited with {self.proc.wait()} before serving{self._log_tail()}")
            if m := re.match(r"ekycd listening on (\S+)", line):
                self.listen = m.group(1)
            elif m := re.match(r"ekycd metrics on (http://\S+)", line):
                self.metrics_url = m.group(1)
            elif line.startswith("demo ready:"):
                demo_ready = True

    def _log_tail(self) -> str:
        try:
            self.log.flush()
            tail = (self.tmp / "ekycd.log").read_text()[-3000:]
            return "\n--- ekycd stderr (tail) ---\n" + tail
        except (OSError, AttributeError):
            return ""

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            return r.read().decode()

    def stop(self) -> None:
        """SIGTERM, wait (then SIGKILL after 30 s), and remove the directory."""
        try:
            if self.proc and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.exit_code = self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.exit_code = self.proc.wait()
            elif self.proc:
                self.exit_code = self.proc.returncode
            if getattr(self, "log", None):
                self.log.close()
        finally:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)


def get_scrape(args) -> tuple[Scrape | None, str]:
    if args.metrics_file:
        return parse_scrape(Path(args.metrics_file).read_text()), f"scrape file {args.metrics_file}"
    binary = Path(os.environ.get("EKYCD_BIN", ROOT / "target" / "debug" / "ekycd"))
    if not binary.is_file():
        raise SystemExit(f"check_observability: no ekycd at {binary}: build it "
                         f"(cargo build -p ekyc-service --bin ekycd) or set EKYCD_BIN")
    extra = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"check_observability: --env wants KEY=VALUE, got {item!r}")
        extra[key] = value
    server = Ekycd(binary, tls=not args.no_tls, extra_env=extra)
    try:
        server.start()
    except RuntimeError as e:
        raise SystemExit(f"check_observability: FAIL: {e}")
    try:
        try:
            calls = exercise(server)
            made = f"{len(calls)} calls made first"
        except (OSError, ValueError, KeyError, IndexError) as e:
            made = f"calls made first failed: {e}"
            print(f"warning: could not call ekycd ({e}): families created by calls will be missing",
                  file=sys.stderr)
        text = server.scrape()
        how = f"{binary} ({'TLS' if server.tls_used else 'no TLS'}, {made}, metrics {server.metrics_url})"
    finally:
        server.stop()
    how += f", stopped with exit code {server.exit_code}"
    if server.exit_code != 0:
        print(f"warning: ekycd exited with {server.exit_code} after SIGTERM", file=sys.stderr)
    return parse_scrape(text), how


# -------------------------------------------------------------------- main

def run_checks(dashboard, rules_text: str, template: str | None, runbooks: str | None,
               scrape: Scrape | None) -> Report:
    report = Report()
    queries = check_dashboard(dashboard, report)
    queries += check_rules(rules_text, template, runbooks, report)
    selectors = parse_queries(queries, report)
    check_panel_scoping(selectors, report)
    check_reason_values(selectors, report)
    if scrape is not None:
        checked, _ = check_names(selectors, report, scrape)
        report.notes.append(f"{checked} metric names checked against the scrape")
    return report


def load_inputs(args):
    try:
        dashboard = json.loads(Path(args.dashboard).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"check_observability: cannot read the dashboard {args.dashboard}: {e}")
    try:
        rules_text = Path(args.rules).read_text()
    except OSError as e:
        raise SystemExit(f"check_observability: cannot read the rules {args.rules}: {e}")
    template = RULE_TEMPLATE.read_text() if RULE_TEMPLATE.is_file() else None
    runbooks = RUNBOOKS.read_text() if RUNBOOKS.is_file() else None
    return dashboard, rules_text, template, runbooks


def first_target(dash):
    for p in all_panels(dash["panels"]):
        for t in p.get("targets") or []:
            if t.get("expr"):
                return p, t
    raise AssertionError("no target")


def self_test(dashboard, rules_text, template, runbooks, scrape: Scrape | None) -> int:
    """Breaks copies on purpose; every break must be reported."""
    baseline = set(run_checks(dashboard, rules_text, template, runbooks, scrape).problems)
    first_alert = re.search(r"- alert: (\w+)", rules_text).group(1)

    def dash_mut(fn):
        d = copy.deepcopy(dashboard)
        fn(d)
        return d

    def first_panel(d):
        return first_target(d)[0]

    def set_expr(d, expr_fn):
        _, t = first_target(d)
        t["expr"] = expr_fn(t["expr"])

    def hard_code_datasource(d):
        first_panel(d)["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}

    def duplicate_id(d):
        panels = [p for p in all_panels(d["panels"]) if p.get("type") != "row"]
        panels[1]["id"] = panels[0]["id"]

    def drop_description(d):
        first_panel(d)["description"] = ""

    def set_rule_expr(new_expr_fn):
        # Changes the first alert's expression (a block scalar) in the text.
        m = re.search(r"- alert: " + first_alert + r"\n +expr: \|\n((?: {10,}.*\n)+)", rules_text)
        return rules_text[:m.start(1)] + new_expr_fn(m.group(1)) + rules_text[m.end(1):]

    p0, _ = first_target(dashboard)
    p0_where = f'panel {p0["id"]} "{p0["title"]}"'
    cases = [
        ("dashboard: PromQL syntax error (unclosed parenthesis)",
         dash_mut(lambda d: set_expr(d, lambda e: "sum(" + e)), rules_text,
         [p0_where, "syntax error"], False),
        ("dashboard: unknown function",
         dash_mut(lambda d: set_expr(d, lambda e: "ratee(" + e + ")")),
         rules_text, [p0_where, "syntax error", "ratee"], False),
        ("dashboard: unknown metric name",
         dash_mut(lambda d: set_expr(d, lambda e: re.sub(r"ekyc_\w+", "ekyc_no_such_metric_total", e, count=1))),
         rules_text, ["ekyc_no_such_metric_total", "not exported"], True),
        ("dashboard: undefined Grafana variable",
         dash_mut(lambda d: set_expr(d, lambda e: e.replace("$namespace", "$namepsace", 1))),
         rules_text, ["$namepsace"], False),
        ("dashboard: hard-coded data source", dash_mut(hard_code_datasource),
         rules_text, [p0_where, "datasource"], False),
        ("dashboard: duplicate panel id", dash_mut(duplicate_id),
         rules_text, [f"id {p0['id']}"], False),
        ("dashboard: panel without description", dash_mut(drop_description),
         rules_text, [p0_where, "no description"], False),
        ("rules: PromQL syntax error",
         dashboard, set_rule_expr(lambda body: body.replace("(", "((", 1)),
         [f"alert {first_alert}", "syntax error"], False),
        ("rules: unknown metric name",
         dashboard, set_rule_expr(lambda body: re.sub(r"ekyc_\w+", "ekyc_no_such_alert_metric", body, count=1)),
         [f"alert {first_alert}", "ekyc_no_such_alert_metric", "not exported"], True),
        ("rules: unknown ErrorInfo reason",
         dashboard, rules_text.replace('reason="STORE_UNAVAILABLE"', 'reason="DATABASE_DOWN"'),
         ["DATABASE_DOWN", "no ErrorInfo reason"], False),
        ("rules: runbook_url anchor that is not the alert's",
         dashboard, rules_text.replace(f"#{first_alert.lower()}\"", "#no-such-section\"", 1),
         [f"alert {first_alert}", "anchor is 'no-such-section'"], False),
        ("runbooks: the section of an alert removed",
         dashboard, rules_text, [f"alert {first_alert}", f"no heading with the anchor #{first_alert.lower()}"],
         False, (runbooks or "").replace(f"## {first_alert}\n", f"## {first_alert} (renamed)\n")),
        ("rules: misspelt placeholder",
         dashboard, rules_text.replace("__EKYC_NAMESPACE__", "__EKYC_NAMESPAC__", 1),
         ["unknown placeholder __EKYC_NAMESPAC__"], False),
        ("template: a placeholder it no longer replaces",
         dashboard, rules_text, ["__SIGNING_KEY_MAX_AGE_DAYS__ is not replaced by templates/prometheusrule.yaml"],
         False, None, (template or "").replace('"__SIGNING_KEY_MAX_AGE_DAYS__"', '"__SIGNING_KEY_MAX_AGE__"')),
        ("dashboard: a label the metric does not have",
         dash_mut(lambda d: set_expr(d, lambda e: e.replace("ekyc_verify_calls_total{", 'ekyc_verify_calls_total{outcom="answered", ', 1))),
         rules_text, [p0_where, "no label 'outcom'"], True),
    ]
    failed = skipped = 0
    for title, dash, rules, expect, needs_scrape, *more in cases:
        books = more[0] if more and more[0] is not None else runbooks
        tmpl = more[1] if len(more) > 1 else template
        if needs_scrape and scrape is None:
            print(f"  skip  {title} (needs a scrape: not with --no-server)")
            skipped += 1
            continue
        if rules == rules_text and dash == dashboard and books == runbooks and tmpl == template:
            print(f"  FAIL  {title}: the mutation changed nothing")
            failed += 1
            continue
        problems = run_checks(dash, rules, tmpl, books, scrape).problems
        new = [p for p in problems if p not in baseline]
        hit = [p for p in new if all(s in p for s in expect)]
        if hit:
            print(f"  ok    {title}: {hit[0].splitlines()[0]}")
        else:
            failed += 1
            print(f"  FAIL  {title}: not caught (new problems: {new or 'none'})")
    tried = len(cases) - skipped
    print(f"self-test: {tried - failed} of {tried} deliberate breaks caught"
          + (f" ({skipped} skipped without a scrape)" if skipped else ""))
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dashboard", default=str(DASHBOARD))
    ap.add_argument("--rules", default=str(RULES))
    ap.add_argument("--no-server", action="store_true", help="do not start ekycd: skip the metric-name check")
    ap.add_argument("--no-tls", action="store_true", help="start ekycd without TLS (its certificate metric is then absent)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="an environment variable for the ekycd started (repeatable)")
    ap.add_argument("--metrics-file", help="check names against this saved /metrics text instead of starting ekycd")
    ap.add_argument("--self-test", action="store_true", help="check that deliberate breaks are caught")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the notes and every metric name")
    args = ap.parse_args()

    dashboard, rules_text, template, runbooks = load_inputs(args)
    if template is None:
        print(f"warning: {RULE_TEMPLATE} missing: placeholders not cross-checked", file=sys.stderr)
    if runbooks is None:
        print(f"warning: {RUNBOOKS} missing: runbook anchors not checked", file=sys.stderr)

    scrape, how = (None, "no server (--no-server)") if args.no_server else get_scrape(args)
    if scrape is not None:
        print(f"scraped {len(scrape.families)} metric families from {how}")

    if args.self_test:
        return self_test(dashboard, rules_text, template, runbooks, scrape)

    report = run_checks(dashboard, rules_text, template, runbooks, scrape)
    if args.verbose:
        for n in report.notes:
            print(f"note: {n}")
        for name in sorted(report.names):
            print(f"  uses {name} ({len(report.names[name])} queries)")
    names = len(report.names)
    summary = (f"{report.panels} panels, {report.alerts} alert rules, {report.queries} PromQL expressions, "
               f"{names} metric names" + (" checked against ekycd's /metrics" if scrape is not None else " (not checked against ekycd)"))
    if report.problems:
        for p in report.problems:
            print(f"FAIL: {p}")
        print(f"check_observability: {len(report.problems)} problems; {summary}")
        return 1
    print(f"check_observability: ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
