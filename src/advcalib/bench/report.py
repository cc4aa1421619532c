"""Targets of the benchmark (met or not, with the numbers) and the Markdown tables of a report."""

from __future__ import annotations

from typing import Any

#: Largest growth of the peak worker memory, from the fewest to the most files, still called flat.
FLAT_MEMORY_GROWTH = 0.10
TORCH_VARIANTS = ("torch-eager", "torch-trace", "torch-script", "torch-folded", "torch-bucketed", "torch-fast")


def _rate(rows: list[dict[str, Any]], variant: str, threads: int, batch: int) -> float | None:
    for row in rows:
        if row["variant"] == variant and row["threads"] == threads and row["batch_size"] == batch:
            return row["jets_per_s"]
    return None


def _target(name: str, value: float | None, goal: str, met: bool | None, detail: str) -> dict[str, Any]:
    return {"target": name, "value": value, "goal": goal, "met": met, "detail": detail}


def inference_targets(inference: dict[str, Any], roofline: dict[str, Any]) -> list[dict[str, Any]]:
    """Torch against onnxruntime at every common (threads, batch) point, and the roofline fraction."""
    rows = inference.get("rows", [])
    targets = []
    for network in ("Run3", "Run2"):
        ort = f"onnxruntime-{network}"
        ratios = []
        for row in (r for r in rows if r["variant"] == ort):
            best = max(TORCH_VARIANTS, key=lambda v: _rate(rows, v, row["threads"], row["batch_size"]) or 0.0)
            torch_rate = _rate(rows, best, row["threads"], row["batch_size"])
            if torch_rate:
                ratios.append((torch_rate / row["jets_per_s"], best, row["threads"], row["batch_size"]))
        if ratios:
            low = min(ratios)
            detail = f"lowest ratio at {low[2]} threads, batch {low[3]} ({low[1]}); {len(ratios)} points compared"
            targets.append(_target(f"torch / onnxruntime {network}", low[0], ">= 1.5 at every point", low[0] >= 1.5, detail))
    flops = roofline.get("deepjet_flops_per_jet", {}).get("total")
    peaks = roofline.get("matmul_flops_per_s", {})
    if flops and peaks and rows:
        targets += _roofline_targets(rows, inference, flops, peaks)
    return targets


def _executed_flops(variant: str, inference: dict[str, Any], dense_flops: float, lstm_flops: float) -> float:
    # Bucketed variants skip padded LSTM steps; the steps of shorter jets in a group are
    # not counted, so their executed FLOPs are a lower bound.
    if variant in ("torch-bucketed", "torch-fast") and "bucketed_lstm_flops_per_jet" in inference:
        return dense_flops - lstm_flops + inference["bucketed_lstm_flops_per_jet"]
    return dense_flops


def _roofline_targets(rows: list[dict[str, Any]], inference: dict[str, Any], flops: float, peaks: dict[str, float]) -> list[dict[str, Any]]:
    """Best fraction of the matmul rate reached by a torch variant, in executed and in dense FLOPs.

    Executed FLOPs count only the LSTM steps a bucketed variant runs; this is the target.
    Dense FLOPs count every padded step, as the network is defined, and are given for
    comparison with onnxruntime and the eager path, which run them all.
    """
    lstm = inference.get("dense_lstm_flops_per_jet", 0.0)
    best: dict[str, tuple[float, dict[str, Any]]] = {}
    for row in rows:
        peak = peaks.get(str(row["threads"]))
        if not peak or row["variant"] not in TORCH_VARIANTS:
            continue
        for kind, per_jet in (("executed", _executed_flops(row["variant"], inference, flops, lstm)), ("dense", flops)):
            fraction = row["jets_per_s"] * per_jet / peak
            if kind not in best or fraction > best[kind][0]:
                best[kind] = (fraction, row)
    targets = []
    for kind, (fraction, row) in best.items():
        detail = f"{row['variant']}, {row['threads']} threads, batch {row['batch_size']}; {kind} FLOPs per jet"
        met = fraction >= 0.60 if kind == "executed" else None
        targets.append(_target(f"fraction of matmul roofline ({kind} FLOPs)", fraction, ">= 0.60" if met is not None else "-", met, detail))
    return targets


def evaluate_targets(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Compare the measured ratios with the performance targets; sections missing give no entry."""
    targets = []
    if "inference" in sections and "rows" in sections["inference"]:
        targets += inference_targets(sections["inference"], sections.get("roofline", {}))
    targets += _processor_target(sections.get("processor", {}))
    targets += _input_target(sections.get("inputs", {}), sections.get("inference", {}))
    training = sections.get("training", {})
    if "ratio" in training:
        targets.append(_target("adversarial / nominal epoch time", training["ratio"], "<= 2.1", training["ratio"] <= 2.1,
                               f"{training['jets']} jets, batch {training['batch_size']}, {training['threads']} threads"))
    targets += _scaling_targets(sections.get("scaling", {}))
    return targets


def _processor_target(section: dict[str, Any]) -> list[dict[str, Any]]:
    rates = {row["configuration"]: row["events_per_s"] for row in section.get("rows", [])}
    if "two models" not in rates or "no model" not in rates:
        return []
    ratio = rates["two models"] / rates["no model"]
    detail = f"{rates['two models']:.0f} vs {rates['no model']:.0f} events/s per core"
    targets = [_target("processor two models / no model", ratio, ">= 0.30", ratio >= 0.30, detail)]
    eager = rates.get("two models, eager")
    if eager:
        detail = f"{eager:.0f} vs {rates['no model']:.0f} events/s per core; taggers with Tagger.fast off"
        targets.append(_target("processor two models, eager / no model", eager / rates["no model"], "-", None, detail))
    return targets


def _input_target(inputs: dict[str, Any], inference: dict[str, Any]) -> list[dict[str, Any]]:
    """Input building time per jet over the inference time per jet of ``Tagger.predict``'s path.

    The reference inference is ``torch-fast``, one thread, batch 4096 (what the processor
    runs per core); a faster inference makes the share larger.
    """
    reference = _rate(inference.get("rows", []), "torch-fast", 1, 4096)
    targets = []
    for row in inputs.get("rows", []):
        if not reference or not row.get("jets_per_s"):
            continue
        share = reference / row["jets_per_s"]
        targets.append(_target(f"input building ({row['source']}) / inference time", share, "<= 0.25", share <= 0.25,
                               f"{row['jets_per_s']:.0f} jets/s building vs {reference:.0f} jets/s torch-fast, 1 thread, batch 4096"))
    return targets


def _scaling_targets(section: dict[str, Any]) -> list[dict[str, Any]]:
    if "speedup_2_workers" not in section:
        return []
    speedup = section["speedup_2_workers"]
    targets = [_target("Dask 2 workers / 1 worker", speedup, ">= 1.7", speedup >= 1.7, "events/s, LocalCluster, 1 thread per worker")]
    peaks = [m["peak_rss_mb"] for m in section.get("memory", []) if m.get("peak_rss_mb")]
    if len(peaks) >= 2:
        growth = peaks[-1] / peaks[0] - 1.0
        files = [m["files"] for m in section["memory"]]
        targets.append(_target("worker memory growth with files", growth, f"<= {FLAT_MEMORY_GROWTH:.2f} (flat)",
                               growth <= FLAT_MEMORY_GROWTH, f"peak RSS {peaks[0]:.0f} MB at {files[0]} files, {peaks[-1]:.0f} MB at {files[-1]}"))
    return targets


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(_format(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_report(report: dict[str, Any]) -> str:
    """Render a report (the content of bench.json) as Markdown tables."""
    machine = report["machine"]
    sections = report["sections"]
    parts = [
        "# advcalib benchmark\n",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, device {machine['device']}; torch {machine['torch']}, "
        f"onnxruntime {machine.get('onnxruntime')}. Load average (1, 5, 15 min) at start "
        f"{_loads(machine['load_average_start'])}, at end {_loads(machine.get('load_average_end'))}. "
        f"Total {report.get('total_wall_s', 0):.0f} s.\n",
        "## Targets\n",
        _table(["target", "value", "goal", "met", "detail"],
               [[t["target"], t["value"], t["goal"], {True: "yes", False: "no", None: "-"}[t["met"]], t["detail"]]
                for t in report.get("targets", [])]),
    ]
    for name, section in sections.items():
        parts.append(f"## {name}\n")
        parts.append(_section_markdown(name, section))
    return "\n".join(parts)


def _loads(values: list[float] | None) -> str:
    return "-" if not values else ", ".join(f"{v:.2f}" for v in values)


def _section_markdown(name: str, section: dict[str, Any]) -> str:
    if "error" in section:
        return f"Failed: {section['error']}\n"
    if name == "roofline":
        rows = [[threads, rate / 1e9] for threads, rate in section["matmul_flops_per_s"].items()]
        flops = section["deepjet_flops_per_jet"]
        text = _table(["threads", "matmul GFLOP/s"], rows)
        return text + "\n" + _table(["DeepJet FLOPs per jet", "conv", "LSTM", "dense", "total"],
                                    [["padded to every slot", flops["conv"], flops["lstm"], flops["dense"], flops["total"]]])
    if name == "inference":
        rows = [[r["variant"], r["threads"], r["batch_size"], r["jets_per_s"]] for r in section["rows"]]
        return _table(["variant", "threads", "batch", "jets/s"], rows) + (
            f"\nInputs: {section.get('inputs')}; mean filled slots {section.get('mean_filled_slots')}; "
            f"torch weights: {section.get('torch_weights')}; largest probability difference to onnxruntime Run 3: "
            f"{section.get('max_abs_difference_to_onnxruntime_Run3')}.\n"
        )
    if name == "inputs":
        rows = [[r["source"], r.get("jets"), r.get("jets_per_s"), r.get("skipped", "")] for r in section["rows"]]
        return _table(["source", "jets", "jets/s", "note"], rows)
    if name == "processor":
        from advcalib.bench.stages import STAGES

        rows = [[r["configuration"], r["events"], r["events_per_s"], *(r["stage_share"].get(s) for s in STAGES)] for r in section["rows"]]
        return _table(["configuration", "events", "events/s per core", *(f"{s} share" for s in STAGES)], rows) + (
            f"\nModels: {section.get('models_used')}.\n"
        )
    if name == "training":
        return _table(["jets", "batch", "threads", "nominal epoch s", "FGSM epoch s", "ratio"],
                      [[section["jets"], section["batch_size"], section["threads"], section["nominal_epoch_s"],
                        section["adversarial_epoch_s"], section["ratio"]]])
    if name == "scaling":
        speed = _table(["workers", "events", "seconds", "events/s"],
                       [[r["workers"], r["events"], r["seconds"], r["events_per_s"]] for r in section["speed"]])
        memory = _table(["files", "peak worker RSS MB"], [[m["files"], m["peak_rss_mb"]] for m in section["memory"]])
        return speed + "\n" + memory
    return ""
