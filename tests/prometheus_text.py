"""A strict reader of Prometheus' text exposition format 0.0.4, for judging what bpfoom writes
(no prometheus_client needed)."""
from __future__ import annotations

import re

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[str, dict]:
    """A strict reader of the text format 0.0.4: {name: {"type", "help", "samples": {labels: value}}}."""
    assert text.endswith("\n")
    metrics: dict[str, dict] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            metrics.setdefault(name, {"samples": {}})["help"] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge"), line
            assert "samples" in metrics.get(name, {}) and not metrics[name]["samples"], \
                f"TYPE after samples: {line}"
            metrics[name]["type"] = kind
        else:
            match = re.fullmatch(rf"({NAME.pattern})(?:\{{(.*)\}})? (\S+)", line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            assert metrics.get(name, {}).get("type"), f"sample before its TYPE: {line}"
            pairs = LABEL.findall(labels or "")
            assert ",".join(f'{k}="{v}"' for k, v in pairs) == (labels or ""), line
            key = tuple((k, re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), v)) for k, v in pairs)
            assert key not in metrics[name]["samples"], f"duplicate series: {line}"
            metrics[name]["samples"][key] = float(value)
    for name, metric in metrics.items():
        assert NAME.fullmatch(name) and metric.get("help") and metric.get("type"), name
        if metric["type"] == "counter":
            assert name.endswith("_total"), name
    return metrics
