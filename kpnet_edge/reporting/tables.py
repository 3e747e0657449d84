"""The report's tables as rows of text cells, built once from the report dict and rendered by both
the Markdown and the HTML writers."""

from __future__ import annotations

from dataclasses import dataclass

from kpnet_edge.evaluation.table import MISSING, percent
from kpnet_edge.reporting.accuracy import GATE_MIN_SIZE, MIN_SIZES
from kpnet_edge.reporting.gate import CRITERIA
from kpnet_edge.reporting.stages import HEADS

FPPI = ("0.1", "1")
PERCENTILES = ("p50", "p90", "p99")


@dataclass(frozen=True)
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""

    def numeric(self) -> list[bool]:
        """Per column: every cell a number (signed, or MISSING), so it aligns right."""
        columns = range(len(self.headers))
        return [bool(self.rows) and all(_is_number(row[i]) for row in self.rows) for i in columns]


def verdict_table(report: dict) -> Table:
    """Each candidate's verdict and, per gated figure, its value with the paired interval, the
    bound and PASS / FAIL / not decidable."""
    headers = ["model", "verdict"]
    for criterion in CRITERIA:
        headers += [criterion.label, "bound", "result"]
    rows = []
    for row in report["models"][1:]:
        verdict = row["verdict"]
        cells = [row["key"], verdict["verdict"]]
        for criterion in CRITERIA:
            check = verdict["checks"][criterion.name]
            cells += [_with_interval(check["value"], check["interval"], unit=criterion.unit),
                      _bound(check["bound"], criterion.unit), check["result"]]
        rows.append(cells)
    gate, settings = report["gate"], report["settings"]
    note = (f"Intervals: {100 * gate['confidence']:g} % paired bootstrap over images "
            f"({settings['bootstrap']['resamples']} resamples, seed {settings['bootstrap']['seed']}, the same for "
            "every model); latency: over interleaved rounds. PASS: the whole interval within the bound; FAIL: "
            "wholly beyond it; not decidable: it straddles the bound (--full scores more images). Drops in "
            f"percentage points, positive is worse; face recall at score >= {settings['operating_score']:g}. "
            f"Bounds from {gate['config']['source']}.")
    return Table("Verdict", headers, rows, note)


def accuracy_table(report: dict) -> Table:
    """Every model (and peer): AP50 and recall at 0.1 / 1 FPPI per size filter, face recall at the
    operating score, MTFL NME and misses, each with its interval (peers have none)."""
    score = report["settings"]["operating_score"]
    headers = ["model", *(f"AP50 >= {m} px" for m in MIN_SIZES),
               *(f"R@{p}FPPI >= {m} px" for m in MIN_SIZES for p in FPPI),
               f"recall@score {score:g} >= {GATE_MIN_SIZE} px", "MTFL NME", "MTFL miss"]
    rows = [[row["key"], *_accuracy_cells(row["accuracy"])] for row in report["models"]]
    peers = report.get("peers") or {}
    for name, peer in (peers.get("rows") or {}).items():
        rows.append([f"{name} (peer)", *_accuracy_cells(peer["accuracy"])])
    settings = report["settings"]
    wider, mtfl = settings["wider"], settings["mtfl"]
    note = (f"{wider['name']}, {wider['images']} of {wider.get('of', wider['images'])} images (not a WIDER FACE "
            f"score); MTFL test, {mtfl['images']} of {mtfl.get('of', mtfl['images'])} crops upscaled to "
            f"{mtfl['upscaled_to']} px, faces scoring >= {settings['operating_score']:g}. Percent, with 95 % "
            "bootstrap intervals; NME inter-ocular.")
    if peers:
        note += f" Peers from {peers['source']}" + _peer_caveat(peers, settings)
    return Table("Accuracy by model", headers, rows, note)


def drop_table(report: dict) -> Table:
    """Each candidate's change from the reference, in percentage points, positive = worse, with
    the paired interval."""
    gate = f"{GATE_MIN_SIZE:g}"
    score = report["settings"]["operating_score"]
    headers = ["model", "precision", *(f"AP50 drop >= {m} px" for m in MIN_SIZES),
               *(f"R@{p}FPPI drop >= {gate} px" for p in FPPI), f"recall@score {score:g} drop >= {gate} px",
               "NME increase", "miss increase"]
    rows = []
    for row in report["models"]:
        if row["drop"] is None:
            continue
        wider, mtfl = row["drop"]["wider"], row["drop"]["mtfl"]
        rows.append([row["key"], row["precision"],
                     *(_with_interval(wider[f"{m:g}"]["ap"], wider[f"{m:g}"].get("ap_ci")) for m in MIN_SIZES),
                     *(_with_interval(wider[gate][f"recall_at_{p}_fppi"], wider[gate].get(f"recall_at_{p}_fppi_ci"))
                       for p in FPPI),
                     _with_interval(wider[gate].get("recall_at_score"), wider[gate].get("recall_at_score_ci")),
                     _with_interval(mtfl["nme_increase"], mtfl.get("nme_increase_ci"), digits=3),
                     _with_interval(mtfl["miss_rate_increase"], mtfl.get("miss_rate_increase_ci"))])
    note = ("Percentage points, positive is worse, with 95 % paired bootstrap intervals (the same resampled "
            "images for the reference and the candidate). The verdict table judges them.")
    return Table("Accuracy drop vs the FP32 reference", headers, rows, note)


def faces_table(report: dict) -> Table:
    """Faces each candidate lost and gained against the reference, split by the ground truth."""
    headers = ["model", "true faces lost", "new false positives", "false positives removed", "true faces gained",
               "unlabelled lost / gained", "images changed"]
    rows = []
    for row in _candidates(report):
        faces = row["stages"]["faces"]
        rows.append([row["key"], str(faces.get("true_faces_lost", MISSING)),
                     str(faces.get("new_false_positives", MISSING)), str(faces.get("false_positives_removed", MISSING)),
                     str(faces.get("true_faces_gained", MISSING)),
                     f"{faces.get('unlabelled_lost', MISSING)} / {faces.get('unlabelled_gained', MISSING)}",
                     str(row["stages"]["images_changed"])])
    note = (f"On the WIDER images, faces scoring >= {report['settings']['operating_score']:g} that one model finds "
            "and the other does not (IoU < 0.5), checked against the labels: a true face overlaps a labelled face "
            "(IoU >= 0.5), an unlabelled region a face the labels mark as not judged, anything else is a false "
            "positive. The first two columns are harm, the next two improvement.")
    return Table("Faces lost and gained, by ground truth", headers, rows, note)


def head_table(report: dict) -> Table:
    """SQNR (dB) and cosine similarity of every output head against the reference."""
    headers = ["model", *(f"{h.replace('_', ' ')} SQNR" for h in HEADS), "min cosine"]
    rows = []
    for row in _candidates(report):
        heads = row["stages"]["heads"]
        cosines = [h["cosine"] for h in heads.values() if h["cosine"] is not None]
        rows.append([row["key"], *(_sqnr(heads[h]) for h in HEADS),
                     f"{min(cosines):.6f}" if cosines else MISSING])
    return Table("Per-head output agreement", headers, rows,
                 "SQNR = 10 log10(sum ref^2 / sum (cand - ref)^2) over the logits of all WIDER images, dB; "
                 "the scale map over all its scale channels, each landmark heatmap alone.")


def decoding_table(report: dict) -> Table:
    """Proposals, keypoints of matched faces and face-level changes against the reference."""
    settings = report["settings"]
    headers = ["model", "proposal recall", "matched faces", "keypoint shift mean px", "p90 px", "max px",
               "landmark head alone px", "faces lost", "faces gained",
               f"landmarks moved > {settings['moved_px']:g} px", "images changed"]
    rows = []
    for row in _candidates(report):
        stages = row["stages"]
        matched, faces = stages["matched_faces"], stages["faces"]
        rows.append([
            row["key"], percent(stages["proposals"]["recall"]), str(matched["count"]),
            _number(matched["keypoint_px_mean"]), _number(matched["keypoint_px_p90"]),
            _number(matched["keypoint_px_max"]), _number(stages["landmark_head_px_mean"]),
            f"{faces['lost']} / {faces['reference']}", str(faces["gained"]), str(matched["moved_faces"]),
            str(stages["images_changed"]),
        ])
    note = ("On the WIDER images. Proposal recall: share of the reference's proposals (scale-map local "
            "maxima) the candidate also proposes within one cell and one scale bin. Faces: those scoring >= "
            f"{settings['operating_score']:g}, matched at IoU >= 0.5; shifts in image pixels. Landmark head "
            "alone: keypoints of both models decoded in the windows of the reference's top proposals, mean "
            "over images.")
    return Table("Proposals, keypoints and faces", headers, rows, note)


def latency_table(report: dict) -> Table:
    """Model and end-to-end milliseconds at each batch, the spread and the ratio to the reference,
    with the runtime's settings and file size; inconsistent runs are flagged."""
    headers = ["model", "batch", "model p50", "p90", "p99", "end-to-end p50", "p90", "p99",
               "e2e IQR / p50", "e2e per image p50", "vs reference (batch 1)", "flag", "size MB", "runtime settings"]
    rows = []
    for row in report["models"]:
        for measured in row["latency"]:
            model, e2e = measured["model_ms"], measured["end_to_end_ms"]
            settings = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in measured["runtime"].items()
                                 if k != "backend" and v is not None)
            ratio = row.get("latency_ratio") if measured["batch"] == 1 else None
            spread = measured.get("spread", {}).get("end_to_end_iqr_over_p50")
            rows.append([row["key"], str(measured["batch"]), *(f"{model[p]:.2f}" for p in PERCENTILES),
                         *(f"{e2e[p]:.2f}" for p in PERCENTILES),
                         MISSING if spread is None else f"{100 * spread:.0f} %",
                         f"{e2e['p50'] / measured['batch']:.2f}",
                         _with_interval(ratio["value"], ratio["interval"], unit="ratio") if ratio else MISSING,
                         "" if measured.get("consistent", True) else "end to end < model: load changed",
                         f"{row['size_bytes'] / 1e6:.2f}", settings])
    settings = report["settings"]
    threads = settings["threads"] if settings["threads"] is not None else "each runtime's default"
    post = settings["latency_postprocess"]
    loads = [m["spread"] for r in report["models"] for m in r["latency"] if "spread" in m]
    load = (f" Load average (1, 5, 15 min) {_plain(loads[0]['load_before'])} before and "
            f"{_plain(loads[-1]['load_after'])} after." if loads and loads[0]["load_before"] else "")
    note = (f"{settings['repeats']} timed calls of each kind per model after {settings['warmup']} untimed, in "
            f"{settings.get('rounds', 1)} interleaved rounds (every model in each round, order rotated, model-only "
            f"and end-to-end calls alternated); the ratio is the median of per-round ratios with a bootstrap "
            f"interval over rounds.{load} Threads requested: "
            f"{threads}. End to end: letterbox, model, post-processing to image pixels at the detect "
            f"defaults (proposal threshold {post['proposal_threshold']:g}, score threshold "
            f"{post['score_threshold']:g}). Batch N only where the convert folder has a batch-N file "
            "(PyTorch at the same batches).")
    return Table("Latency (ms per call)", headers, rows, note)


def sweep_table(report: dict) -> Table:
    """INT8 accuracy per calibration-set size."""
    gate = f"{GATE_MIN_SIZE:g}"
    reference_ap = report["models"][0]["accuracy"]["wider"][gate]["ap"]
    headers = ["target", "calibration images", "set sha256", f"AP50 >= {gate} px", "AP50 drop", "MTFL NME",
               "note"]
    rows = []
    for row in report["calibration_sweep"] or []:
        if row["error"] is not None:
            rows.append([row["target"], str(row["requested_size"]), *[MISSING] * 4, row["error"]])
            continue
        ap = row["accuracy"]["wider"][gate]["ap"]
        drop = None if ap is None or reference_ap is None else reference_ap - ap
        asked = row["requested_size"]
        rows.append([row["target"], str(row["calibration_size"]), row["calibration_sha256"][:12], percent(ap),
                     _points(drop), percent(row["accuracy"]["mtfl"]["nme"], 2),
                     "" if row["calibration_size"] == asked else f"{asked} asked for"])
    return Table("INT8 accuracy vs calibration-set size", headers, rows,
                 "Each size re-quantized through the converters, scored like the models above.")


def environment_table(report: dict) -> Table:
    """Machine and tool versions."""
    machine, tools = report["environment"]["machine"], report["environment"]["tools"]
    rows = [[key.replace("_", " "), _plain(value)] for key, value in machine.items()]
    rows += [[name, version] for name, version in tools.items()]
    return Table("Hardware and versions", ["item", "value"], rows)


def _candidates(report: dict) -> list[dict]:
    return [row for row in report["models"] if row["stages"] is not None]


def _accuracy_cells(accuracy: dict) -> list[str]:
    wider, mtfl = accuracy["wider"], accuracy["mtfl"]
    gate = wider[f"{GATE_MIN_SIZE:g}"]
    return [*(_percent_ci(wider[f"{m:g}"]["ap"], wider[f"{m:g}"].get("ap_ci")) for m in MIN_SIZES),
            *(_percent_ci(wider[f"{m:g}"]["recall_at_fppi"][p], (wider[f"{m:g}"].get("recall_at_fppi_ci") or {}).get(p))
              for m in MIN_SIZES for p in FPPI),
            _percent_ci(gate.get("recall_at_score"), gate.get("recall_at_score_ci")),
            _percent_ci(mtfl["nme"], mtfl.get("nme_ci"), 2), _percent_ci(mtfl["miss_rate"], mtfl.get("miss_rate_ci"))]


def _percent_ci(value: float | None, interval: list[float] | None, digits: int = 1) -> str:
    if value is None:
        return MISSING
    text = percent(value, digits)
    return text if interval is None else f"{text} [{100 * interval[0]:.{digits}f}, {100 * interval[1]:.{digits}f}]"


def _with_interval(value: float | None, interval: list[float] | None, digits: int = 2, unit: str = "points") -> str:
    """'+0.52 [-0.10, +1.20]' (points) or '0.81x [0.78x, 0.85x]' (ratio)."""
    def one(v: float) -> str:
        return f"{v:.2f}x" if unit == "ratio" else f"{100 * v:+.{digits}f}"

    if value is None:
        return MISSING
    return one(value) if interval is None else f"{one(value)} [{one(interval[0])}, {one(interval[1])}]"


def _bound(bound: float | None, unit: str) -> str:
    if bound is None:
        return "not gated"
    return f"<= {bound:.2f}x" if unit == "ratio" else f"<= {100 * bound:.2f}"


def _peer_caveat(peers: dict, settings: dict) -> str:
    """A warning when the peers were scored on other images than the models (e.g. under --limit)."""
    wider = sorted({peer["num_images"] for peer in peers["rows"].values()})
    mtfl = sorted({peer["accuracy"]["mtfl"]["num_images"] for peer in peers["rows"].values()})
    if set(wider) - {settings["wider"]["images"]} or set(mtfl) - {settings["mtfl"]["images"]}:
        return (f", on {'/'.join(map(str, wider))} WIDER images and {'/'.join(map(str, mtfl))} MTFL crops: "
                "NOT the same images as the models above.")
    return "."


def _points(value: float | None, digits: int = 2) -> str:
    return MISSING if value is None else f"{100 * value:+.{digits}f}"


def _number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _plain(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == MISSING
    return True


def _sqnr(head: dict) -> str:
    if head["identical"]:
        return "identical"
    return MISSING if head["sqnr_db"] is None else f"{head['sqnr_db']:.1f}"
