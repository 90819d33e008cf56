"""Statistics, ratios and output: the Markdown tables, the results JSON and the PNG chart.

Everything here works on plain dicts (a row per run and target, as written to the JSON), so
`python -m bench.report RESULTS.json` can redo the tables and the chart from a saved run.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

Row = dict[str, Any]
BASELINES = ("direct", "relay")
FLAT_MB = 5.0  # "RSS flat (within 5 MB)"
OBSERVED, PLAIN = "gateway", "gateway-plain"  # metrics and access log on, and off
REFERENCE = OBSERVED  # the gateway every other proxy is also put beside (X ÷ gateway)
OBSERVABILITY_BUDGET = 1.05  # on may cost at most 5 % more CPU per request than off
# Quantiles kept per row for the chart (and for anyone re-plotting from the JSON).
DIST_POINTS = (*range(0, 100), 99.5, 99.9, 100)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) of sorted data, interpolating linearly between ranks."""
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Iterable[float], scale: float = 1.0) -> dict[str, float | None]:
    ordered = sorted(v * scale for v in values)
    out = {f"p{q}".replace(".", "_"): percentile(ordered, q) for q in (50, 90, 99, 99.9)}
    out["max"] = ordered[-1] if ordered else None
    out["n"] = len(ordered)
    return out


def distribution(values: Iterable[float], scale: float = 1.0) -> list[float]:
    ordered = sorted(v * scale for v in values)
    if not ordered:
        return []
    return [percentile(ordered, q) or 0.0 for q in DIST_POINTS]


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0 or value < 0:
        return None
    return value / base


# What a row shows: (key in the metrics dict, label, higher is better).
METRICS: dict[str, tuple[str, bool]] = {
    "ttft_p50": ("TTFT p50 ms", False),
    "ttft_p99": ("TTFT p99 ms", False),
    "itl_p50": ("inter-token p50 ms", False),
    "itl_p99": ("inter-token p99 ms", False),
    "total_p50": ("latency p50 ms", False),
    "total_p99": ("latency p99 ms", False),
    "chunks_s": ("chunks/s", True),
    "req_s": ("requests/s", True),
    "cpu_per_req_ms": ("CPU ms / request", False),
    "cpu_per_1k_chunks_ms": ("CPU ms / 1,000 chunks", False),
    "cpu_pct": ("CPU % of its core", False),
    "rss_start_mb": ("RSS at start MB", False),
    "rss_peak_mb": ("RSS peak MB", False),
    "rss_end_mb": ("RSS at end MB", False),
    "rss_growth_mb": ("RSS peak - start MB", False),
    "errors": ("failed requests", False),
}
# Metrics without a meaning for `direct` (no process in the middle).
PROCESS_METRICS = {k for k in METRICS if k.startswith(("cpu", "rss"))}


def metrics(row: Row) -> dict[str, float | None]:
    """The flat figures of one row, by METRICS key."""
    cpu = row.get("cpu") or {}
    rss = row.get("rss_mb") or {}
    return {
        "ttft_p50": (row.get("ttft_ms") or {}).get("p50"),
        "ttft_p99": (row.get("ttft_ms") or {}).get("p99"),
        "itl_p50": (row.get("itl_ms") or {}).get("p50"),
        "itl_p99": (row.get("itl_ms") or {}).get("p99"),
        "total_p50": (row.get("total_ms") or {}).get("p50"),
        "total_p99": (row.get("total_ms") or {}).get("p99"),
        "chunks_s": row.get("chunks_s"),
        "req_s": row.get("req_s"),
        "cpu_per_req_ms": cpu.get("per_req_ms"),
        "cpu_per_1k_chunks_ms": cpu.get("per_1k_chunks_ms"),
        "cpu_pct": cpu.get("target_pct"),
        "rss_start_mb": rss.get("start"),
        "rss_peak_mb": rss.get("peak"),
        "rss_end_mb": rss.get("end"),
        "rss_growth_mb": rss.get("peak_growth"),
        "errors": row.get("errors"),
    }


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{max(0, digits - 1 - math.floor(math.log10(abs(value))))}f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def run_key(row: Row) -> tuple[str, str]:
    return row["scenario"], row["label"]


def grouped(rows: list[Row]) -> dict[tuple[str, str], dict[str, Row]]:
    """{(scenario, label): {target: row}} in the order the runs were measured."""
    out: dict[tuple[str, str], dict[str, Row]] = {}
    for row in rows:
        out.setdefault(run_key(row), {})[row["target"]] = row
    return out


def peers(results: dict[str, Any]) -> list[str]:
    """The targets that are not ours (--peer): reported, never judged by our goals."""
    meta = results["meta"]
    return [t for t in meta["targets"] if t in meta.get("peers", ())]


def ours(results: dict[str, Any]) -> list[str]:
    """The gateway's own variants in this run."""
    others = set(peers(results))
    return [t for t in results["meta"]["targets"] if t not in BASELINES and t not in others]


def main_table(results: dict[str, Any]) -> str:
    """One row per (scenario, run, metric); a column per target; the proxies' ratios to
    direct and relay, and every other proxy's to the gateway."""
    targets: list[str] = results["meta"]["targets"]
    proxies = [t for t in targets if t not in BASELINES]
    beside = [p for p in proxies if p != REFERENCE] if REFERENCE in targets else []
    head = ["scenario", "run", "metric", *targets]
    for p in proxies:
        head += [f"{p} ÷ direct", f"{p} ÷ relay"]
    head += [f"{p} ÷ {REFERENCE}" for p in beside]
    lines = [_md_row(head), _md_row(["---"] * 3 + ["---:"] * (len(head) - 3))]
    shows: dict[str, list[str]] = results["meta"]["shows"]
    for (scenario, label), by_target in grouped(results["rows"]).items():
        figures = {t: metrics(r) for t, r in by_target.items()}
        for key in shows.get(scenario, list(METRICS)):
            cells = [scenario, label, METRICS[key][0]]
            cells += [fmt((figures.get(t) or {}).get(key)) for t in targets]
            for p in proxies:
                mine = (figures.get(p) or {}).get(key)
                for base in BASELINES:
                    if key == "errors" or (base == "direct" and key in PROCESS_METRICS):
                        cells.append("")
                        continue
                    cells.append(fmt_ratio(ratio(mine, (figures.get(base) or {}).get(key))))
            reference = (figures.get(REFERENCE) or {}).get(key)
            for p in beside:
                mine = (figures.get(p) or {}).get(key)
                cells.append("" if key == "errors" else fmt_ratio(ratio(mine, reference)))
            lines.append(_md_row(cells))
    return "\n".join(lines)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _find(rows: list[Row], scenario: str, target: str, pick: Callable[[Row], bool]) -> Row | None:
    found = [r for r in rows if r["scenario"] == scenario and r["target"] == target and pick(r)]
    return found[-1] if found else None


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary figures of each proxy (the gateway's variants, and peers: a peer's carry
    no verdict)."""
    rows: list[Row] = results["rows"]
    proxies = [t for t in results["meta"]["targets"] if t not in BASELINES]
    judged = set(ours(results))
    out: list[dict[str, Any]] = []

    def conc(n: int | None = None) -> Callable[[Row], bool]:
        return lambda r: n is None or r["run"]["concurrency"] == n

    def top_c(scenario: str) -> int | None:
        cs = [r["run"]["concurrency"] for r in rows if r["scenario"] == scenario]
        return max(cs) if cs else None

    def add(target: str, what: str, value: str, verdict: str = "") -> None:
        out.append({"target": target, "check": what, "value": value, "verdict": verdict})

    for t in proxies:
        c = top_c("throughput")
        me = _find(rows, "throughput", t, conc(c))
        relay = _find(rows, "throughput", "relay", conc(c))
        if me and relay:
            a = metrics(me)["cpu_per_req_ms"]
            b = metrics(relay)["cpu_per_req_ms"]
            add(
                t,
                f"CPU per streamed request vs raw relay (throughput C={c})",
                f"{fmt(a)} ms vs {fmt(b)} ms = {fmt_ratio(ratio(a, b))}",
            )
            a, b = metrics(me)["chunks_s"], metrics(relay)["chunks_s"]
            add(
                t,
                f"throughput vs raw relay (chunks/s, C={c}, 0 ms)",
                f"{fmt(a)} vs {fmt(b)} = {fmt_ratio(ratio(a, b))}",
            )
        me = _find(rows, "nonstream", t, conc(1)) or _find(rows, "nonstream", t, conc())
        direct = me and _find(rows, "nonstream", "direct", conc(me["run"]["concurrency"]))
        if me and direct:
            added = _minus(metrics(me)["total_p50"], metrics(direct)["total_p50"])
            add(
                t,
                f"non-streamed: added latency over direct p50 (C={me['run']['concurrency']})",
                f"{fmt(added)} ms",
            )
            add(t, "non-streamed: CPU per request", f"{fmt(metrics(me)['cpu_per_req_ms'])} ms")
        me = _find(rows, "throughput", t, conc(1))
        direct = _find(rows, "throughput", "direct", conc(1))
        if me and direct:
            added = _minus(metrics(me)["ttft_p50"], metrics(direct)["ttft_p50"])
            add(t, "added TTFT over direct, C=1 p50", f"{fmt(added)} ms")
        c = top_c("latency")
        me = _find(rows, "latency", t, conc(c))
        direct = _find(rows, "latency", "direct", conc(c))
        if me and direct:
            added = _minus(metrics(me)["itl_p99"], metrics(direct)["itl_p99"])
            delay = me["run"]["delay_ms"]
            add(
                t,
                f"added inter-token p99 over direct, C={c}, {delay:g} ms tokens",
                f"{fmt(added)} ms",
            )
        for scenario, what in (("long", "a long stream"), ("soak", "many requests")):
            me = _find(rows, scenario, t, conc())
            if me and me.get("rss_mb"):
                rss = me["rss_mb"]
                n = me["run"]["tokens"] if scenario == "long" else me["requests"]
                unit = "tokens" if scenario == "long" else "requests"
                growth = rss.get("peak_growth")
                verdict = (
                    ""
                    if growth is None or t not in judged
                    else (f"flat (≤ {FLAT_MB:g} MB)" if growth <= FLAT_MB else "GROWS")
                )
                add(
                    t,
                    f"RSS across {what} ({n:,} {unit}): start → peak → end",
                    f"{fmt(rss.get('start'))} → {fmt(rss.get('peak'))} → {fmt(rss.get('end'))} MB"
                    f" (+{fmt(growth)} MB)",
                    verdict,
                )
    out += observability_cost(rows, _on_vs_off(results))
    paired = results.get("paired")
    if paired and paired.get("ratio_median") is not None:
        rounds = sorted(
            (r for r in paired["rounds"] if r["ratio"] is not None), key=lambda r: r["ratio"]
        )
        ratios = [r["ratio"] for r in rounds]
        median = paired["ratio_median"]
        middle = rounds[len(rounds) // 2]  # the figures of one round, so that on/off is its ratio
        on, off = middle["on_ms"], middle["off_ms"]
        out.append(
            {
                "target": OBSERVED,
                "check": f"{_on_vs_off(results)}: CPU per request, both gateways "
                f"loaded at once (C={paired['run']['concurrency']} each, "
                f"{paired['run']['tokens']} tokens), median of {len(ratios)} rounds",
                "value": f"{fmt(on)} ms vs {fmt(off)} ms = {fmt_ratio(median)} (rounds: "
                + ", ".join(f"{r:.3f}" for r in ratios)
                + ")",
                "verdict": "within 5 %" if median <= OBSERVABILITY_BUDGET else "OVER 5 %",
            }
        )
    return out


def _on_vs_off(results: dict[str, Any]) -> str:
    """What `gateway` has on that `gateway-plain` has off, in this run."""
    if "--features" in results["meta"].get("argv", ()):
        return "every feature (key, limits, alias, metrics, access log) on vs off"
    return "metrics + access log on vs off"


def observability_cost(rows: list[Row], on_vs_off: str) -> list[dict[str, Any]]:
    """CPU per request of the gateway with metrics and access log on beside off, both
    also as a ratio to the raw relay, at the top concurrency of each CPU-bound scenario."""
    out = []
    for scenario in ("throughput", "latency", "nonstream"):
        cs = [r["run"]["concurrency"] for r in rows if r["scenario"] == scenario]
        if not cs:
            continue
        top = max(cs)
        found = {
            t: _find(rows, scenario, t, _at_concurrency(top)) for t in (OBSERVED, PLAIN, "relay")
        }
        cpu = {t: metrics(r)["cpu_per_req_ms"] if r else None for t, r in found.items()}
        on_off = ratio(cpu[OBSERVED], cpu[PLAIN])
        if on_off is None:
            continue
        value = f"{fmt(cpu[OBSERVED])} ms vs {fmt(cpu[PLAIN])} ms = {fmt_ratio(on_off)}"
        if cpu["relay"]:
            value += (
                f"; ÷ relay {fmt_ratio(ratio(cpu[OBSERVED], cpu['relay']))} vs "
                f"{fmt_ratio(ratio(cpu[PLAIN], cpu['relay']))}"
            )
        out.append(
            {
                "target": OBSERVED,
                "check": f"{on_vs_off}: CPU per request ({scenario} C={top})",
                "value": value,
                "verdict": "within 5 %" if on_off <= OBSERVABILITY_BUDGET else "OVER 5 %",
            }
        )
    return out


def hot_path_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The gateway's variants against the gateway's own performance goals (ratios to the
    raw relay, or to direct, taken in this one run), with a verdict each. Peers are not
    judged by them: their figures are in the other tables."""
    rows: list[Row] = results["rows"]
    out: list[dict[str, Any]] = []

    def figure(scenario: str, target: str, c: int, name: str, api: str | None = None) -> Any:
        found = [
            r
            for r in rows
            if r["scenario"] == scenario
            and r["target"] == target
            and r["run"]["concurrency"] == c
            and (api is None or r["run"].get("api") == api)
        ]
        return metrics(found[-1])[name] if found else None

    def check(t: str, what: str, value: float | None, base: float | None, most: float) -> None:
        """`value / base` must stay at or under `most` (or over it, when `most` < 0)."""
        r = ratio(value, base)
        if r is None:
            return
        met = r >= -most if most < 0 else r <= most
        bound = f"≥ {-most:g}x" if most < 0 else f"≤ {most:g}x"
        out.append(
            {
                "target": t,
                "check": what,
                "value": f"{fmt(value)} vs {fmt(base)} = {fmt_ratio(r)} (goal {bound})",
                "verdict": "met" if met else "MISSED",
            }
        )

    for t in ours(results):
        cpu, per_1k = "cpu_per_req_ms", "cpu_per_1k_chunks_ms"
        check(
            t,
            "CPU per streamed request, throughput C=100 0 ms, vs relay",
            figure("throughput", t, 100, cpu),
            figure("throughput", "relay", 100, cpu),
            1.3,
        )
        check(
            t,
            "chunks/s, throughput C=100 0 ms, vs relay",
            figure("throughput", t, 100, "chunks_s"),
            figure("throughput", "relay", 100, "chunks_s"),
            -0.75,
        )
        for c in (10, 100):
            check(
                t,
                f"CPU per 1,000 chunks, latency C={c} 20 ms, vs relay",
                figure("latency", t, c, per_1k),
                figure("latency", "relay", c, per_1k),
                1.2,
            )
        check(
            t,
            "TTFT p99, latency C=100 20 ms, vs relay",
            figure("latency", t, 100, "ttft_p99"),
            figure("latency", "relay", 100, "ttft_p99"),
            1.2,
        )
        itl, itl_direct = (
            figure("latency", t, 100, "itl_p99"),
            figure("latency", "direct", 100, "itl_p99"),
        )
        added = _minus(itl, itl_direct)
        if added is not None:
            out.append(
                {
                    "target": t,
                    "check": "added inter-token p99 over direct, latency C=100 20 ms",
                    "value": f"{fmt(added)} ms (goal ≤ 1 ms)",
                    "verdict": "met" if added <= 1.0 else "MISSED",
                }
            )
        for c in (1, 10):
            check(
                t,
                f"non-streamed CPU per request, C={c}, vs relay",
                figure("nonstream", t, c, cpu),
                figure("nonstream", "relay", c, cpu),
                1.1,
            )
            direct = figure("nonstream", "direct", c, "total_p50")
            check(
                t,
                f"non-streamed added latency p50 over direct, C={c}, vs the relay's",
                _minus(figure("nonstream", t, c, "total_p50"), direct),
                _minus(figure("nonstream", "relay", c, "total_p50"), direct),
                1.1,
            )
        check(
            t,
            "translate (Anthropic upstream) CPU per request, C=10, vs pass-through (throughput)",
            figure("translate", t, 10, cpu),
            figure("throughput", t, 10, cpu),
            2.0,
        )
        check(
            t,
            "/v1/messages passed through to Anthropic, CPU per request C=10, vs relay",
            figure("messages", t, 10, cpu, "anthropic"),
            figure("messages", "relay", 10, cpu, "anthropic"),
            1.3,
        )
    return out


def _at_concurrency(c: int) -> Callable[[Row], bool]:
    return lambda r: r["run"]["concurrency"] == c


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def checks_table(found: list[dict[str, Any]]) -> str:
    lines = [_md_row(["target", "figure", "value", "verdict"])]
    lines.append(_md_row(["---", "---", "---:", "---"]))
    lines += [_md_row([c["target"], c["check"], c["value"], c["verdict"]]) for c in found]
    return "\n".join(lines)


def load_table(results: dict[str, Any]) -> str:
    """Who was busy during each run: the answer to "was the load generator the bottleneck?"."""
    head = [
        "scenario",
        "run",
        "target",
        "target CPU %",
        "load gen CPU %",
        "upstream CPU %",
        "target core busy %",
        "client core busy %",
        "other processes CPU %",
        "bound by",
    ]
    lines = [_md_row(head), _md_row(["---"] * 3 + ["---:"] * 6 + ["---"])]
    for row in results["rows"]:
        cpu = row.get("cpu") or {}
        lines.append(
            _md_row(
                [
                    row["scenario"],
                    row["label"],
                    row["target"],
                    fmt(cpu.get("target_pct")),
                    fmt(cpu.get("loadgen_pct")),
                    fmt(cpu.get("upstream_pct")),
                    fmt(cpu.get("target_core_busy_pct")),
                    fmt(cpu.get("client_core_busy_pct")),
                    fmt(cpu.get("others_pct")),
                    row.get("bound_by", ""),
                ]
            )
        )
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    parts = [
        f"# python -m bench — {meta['started']}{' (quick)' if meta.get('quick') else ''}",
        "",
        f"commit {meta.get('commit', '?')} · Python {meta['python']} · {meta['cpus']} CPUs · "
        f"pinning: {meta['pinning']} · upstream {meta['upstream_url']}",
        "",
        "## Every figure, per run and target",
        "",
        "A column per target; then each proxy's figure divided by direct's and by the raw "
        "relay's, and every other proxy's divided by the gateway's (for CPU, memory and "
        "latency, below 1 is less; for chunks/s and requests/s, above 1 is more).",
        "",
        main_table(results),
        "",
        "## Summary per proxy",
        "",
        checks_table(checks(results)),
        "",
        "## The gateway against its performance goals",
        "",
        "Ratios taken in this run; peers are not judged by the gateway's goals.",
        "",
        checks_table(hot_path_targets(results)),
        "",
        "## Who was busy during each run (was the load generator the limit?)",
        "",
        load_table(results),
    ]
    if results.get("skipped"):
        parts += ["", "## Skipped", ""] + [f"- {s}" for s in results["skipped"]]
    if results.get("warnings"):
        parts += ["", "## Warnings", ""] + [f"- {w}" for w in results["warnings"]]
    return "\n".join(parts) + "\n"


def scrub(value: Any, secrets: Sequence[str]) -> Any:
    """`value` with every secret in its strings (keys, dict keys included) replaced by
    [redacted]."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "[redacted]")
        return value
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return value


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


def load_pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or None. Importing takes about a second: the
    orchestrator calls this while its children start, when it has nothing else to do."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def chart(results: dict[str, Any], path: Path) -> str | None:
    """TTFT and inter-token CDFs per target for every streamed run (and RSS over the long
    stream). Returns why it was not drawn, or None. matplotlib is an optional extra."""
    plt = load_pyplot()
    if plt is None:
        return "no chart: matplotlib is not installed (pip install -e '.[bench]')"
    # One row of panels per scenario, for its busiest streamed run: enough to compare the
    # targets' shapes, and cheap to draw (matplotlib is most of a quick run's chart time).
    runs_by_scenario: dict[str, tuple[tuple[str, str], dict[str, Row]]] = {}
    for key, by_target in grouped(results["rows"]).items():
        if any((r.get("dist") or {}).get("ttft_ms") for r in by_target.values()):
            runs_by_scenario[key[0]] = (key, by_target)
    runs = list(runs_by_scenario.values())
    series = [r for r in results["rows"] if r.get("rss_series")]
    n = len(runs) + (1 if series else 0)
    if not n:
        return "no chart: no streamed run"
    fig, axes = plt.subplots(n, 2, figsize=(12, 2.8 * n), squeeze=False)
    ys = [q / 100 for q in DIST_POINTS]
    for i, ((scenario, label), by_target) in enumerate(runs):
        for j, (key, title) in enumerate((("ttft_ms", "TTFT"), ("itl_ms", "inter-token gap"))):
            ax = axes[i][j]
            curves = {t: (r.get("dist") or {}).get(key) or [] for t, r in by_target.items()}
            if not any(xs and xs[-1] > 0 for xs in curves.values()):
                ax.text(0.5, 0.5, f"{scenario} {label}: every {title} is 0", ha="center")
                ax.axis("off")
                continue
            for target, xs in curves.items():
                if xs:
                    # Gaps of 0 (tokens read together) sit at 1 µs on the log axis.
                    ax.plot([max(x, 1e-3) for x in xs], ys, label=target)
            ax.set_xscale("log")
            ax.set_title(f"{scenario} {label}: {title} CDF", fontsize=9)
            ax.set_xlabel("ms (log)", fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    if series:
        ax = axes[-1][0]
        for row in series:
            pts = row["rss_series"]
            base = pts[0][1]
            label = f"{row['scenario']} {row['target']} (from {base:.1f} MB)"
            ax.plot([p[0] for p in pts], [p[1] - base for p in pts], label=label)
        ax.axhline(FLAT_MB, color="red", linestyle="--", linewidth=0.8, label=f"+{FLAT_MB:g} MB")
        ax.set_title("RSS growth during the memory runs", fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.set_ylabel("MB above the start", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        axes[-1][1].axis("off")
    fig.subplots_adjust(left=0.06, right=0.98, top=1 - 0.25 / n, bottom=0.35 / n, hspace=0.6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("results", type=Path, help="a results JSON written by python -m bench")
    parser.add_argument("--png", type=Path, help="also draw the chart to this file")
    args = parser.parse_args(argv)
    results = orjson.loads(args.results.read_bytes())
    sys.stdout.write(render(results))
    if args.png:
        why = chart(results, args.png)
        print(why or f"chart: {args.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
