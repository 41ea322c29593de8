"""The plain-text summary of an audit, as ``wmprobe audit`` prints it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from wmprobe.auditing.run import AuditResult


def format_summary(result: AuditResult, top_k: int = 5) -> str:
    """Counts of units above the paper's d thresholds, and the top logit classes by AUC."""
    acts = result.activations
    lines = [
        f"wmprobe audit: {result.model} on {len(acts.image_ids)} images "
        f"({', '.join(result.config.get('scenarios', []))}; seed {result.config.get('seed')})",
    ]
    if result.config.get("labels_dropped"):
        lines.append(result.config["labels_dropped"])
    if result.images.excluded:
        lines.append(f"left out {len(result.images.excluded)} image(s):")
        lines += [f"  {i}: {why}" for i, why in list(result.images.excluded.items())[:20]]
        if len(result.images.excluded) > 20:
            lines.append(f"  ... and {len(result.images.excluded) - 20} more (see run.json)")
    if acts.skipped:
        lines.append(f"skipped {len(acts.skipped)} unreadable image(s):")
        lines += [f"  {i}: {why}" for i, why in list(acts.skipped.items())[:20]]
        if len(acts.skipped) > 20:
            lines.append(f"  ... and {len(acts.skipped) - 20} more (see run.json)")
    lines += ["", "units with d above each threshold:", result.counts().to_string(index=False)]
    top = result.top_classes(top_k)
    if len(top):
        lines += ["", f"top {top_k} logit classes by AUC (the watermark raises them most):"]
        for scenario, group in top.groupby("scenario", sort=False):
            items = ", ".join(f"{r.class_name} ({r.auc:.3f})" for r in group.itertuples())
            lines.append(f"  {scenario}: {items}")
    outputs = result.outputs
    if outputs is not None and len(outputs) and outputs["acc_clean"].notna().all():
        lines += ["", "predictions (top-1 %, in_w_gap = probe - clean; flips: share of images):"]
        for r in outputs.itertuples():
            carton = "" if np.isnan(r.carton_gap) else f", carton_gap {r.carton_gap:+.1f}"
            lines.append(
                f"  {r.scenario}: clean {r.acc_clean:.1f}, probe {r.acc_probe:.1f}, "
                f"in_w_gap {r.in_w_gap:+.1f}{carton}; flips to {r.top_flips or 'none'}"
            )
    if result.config.get("baseline_check"):  # wmprobe audit --check-baseline
        lines += ["", *result.config["baseline_check"]]
    lines += ["", f"took {result.seconds:.1f} s"]
    return "\n".join(lines)
