"""Build the report of a study: figures (PNG, SVG and CSV on disk) and one self-contained HTML page.

Layout written under ``OUT`` (default ``RUN_DIR/report``): ``report.html`` and ``figures/`` with
``<key>.png``, ``<key>.svg`` (charts) and ``<key>.csv`` (the numbers behind each figure).
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from wmprobe.constants import THRESHOLDS
from wmprobe.probes.images import scan_folder
from wmprobe.reporting import figures, sheets
from wmprobe.reporting.html import Section, esc, figure_html, image_bytes, page_html, table_html
from wmprobe.reporting.localization import localization_section
from wmprobe.study import analysis

log = logging.getLogger(__name__)


@dataclass
class Report:
    """What :func:`build_report` wrote: the page, each figure's files, notes on what is missing."""

    html: Path
    figures: dict[str, dict[str, Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class _Writer:
    """Saves each chart as PNG, SVG and CSV (photo sheets as JPEG and CSV); renders its HTML."""

    def __init__(self, folder: Path, report: Report):
        self.folder = folder
        self.report = report
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():  # figures of an earlier build would look current
            if old.is_file() and old.suffix in (".png", ".svg", ".jpg", ".csv"):
                old.unlink()

    def add(
        self,
        key: str,
        title: str,
        fig: Figure,
        data: pd.DataFrame,
        caption: str = "",
        photo: bool = False,
    ) -> str:
        fmt = "jpeg" if photo else "png"
        image = image_bytes(fig, fmt)
        suffix = "jpg" if photo else "png"
        paths = {suffix: self.folder / f"{key}.{suffix}", "csv": self.folder / f"{key}.csv"}
        paths[suffix].write_bytes(image)
        data.to_csv(paths["csv"], index=False)
        if not photo:
            paths["svg"] = self.folder / f"{key}.svg"
            fig.savefig(paths["svg"], format="svg")
        self.report.figures[key] = paths
        return figure_html(key, title, image, data, caption, fmt)


def _note(report: Report, text: str) -> str:
    report.notes.append(text)
    log.info(text)
    return f'<p class="note">{esc(text)}</p>'


def _overview(study: analysis.Study) -> pd.DataFrame:
    rows = []
    acc = study.accuracy()
    for run in study.runs:
        row = {
            "model": run.name,
            "status": study.manifest.get("statuses", {}).get(run.name, {}).get("status", ""),
            "images": int(run.config.get("images_used", 0)),
            "seconds": float(run.config.get("seconds", float("nan"))),
        }
        clean = acc[(acc["model"] == run.name) & (acc["variant"] == "clean")]["top1"]
        row["clean top-1"] = float(clean.iloc[0]) if len(clean) else float("nan")
        table = run.table[run.table["layer"] == "logits"]
        for scenario, group in table.groupby("scenario", sort=False):
            row[f"max logit d: {scenario}"] = float(group["d"].max())
        rows.append(row)
    return pd.DataFrame(rows)


def _ranking_wide(ranking: pd.DataFrame, scenario: str) -> pd.DataFrame:
    part = ranking[ranking["scenario"] == scenario]
    wide = part.pivot_table(
        index=["side", "rank", "unit", "class_name", "mean_auc"],
        columns="model",
        values="auc",
        aggfunc="first",
        sort=False,
    )
    models = list(dict.fromkeys(part["model"]))
    return wide[models].reset_index()


def _provenance(study: analysis.Study, command: str) -> str:
    manifest = study.manifest
    first = study.runs[0].config
    facts = {
        "report command": command,
        "study command": manifest.get("command", ""),
        "images": manifest.get("images", first.get("images", "")),
        "seed": manifest.get("seed", first.get("seed", "")),
        "scenarios": ", ".join(manifest.get("scenarios", first.get("scenarios", []))),
        "limit": manifest.get("limit", first.get("limit")),
    }
    versions = manifest.get("versions") or {
        "wmprobe": first.get("wmprobe_version", ""),
        "python": first.get("python", ""),
    }
    for name, version in versions.items():
        facts[f"version: {name}"] = version
    body = table_html(
        pd.DataFrame({"what": list(facts), "value": [str(v) for v in facts.values()]})
    )
    for run in study.runs:
        body += (
            f"<details><summary>{esc(run.name)}: run.json (audit command: "
            f"<code>{esc(run.config.get('command', 'not recorded'))}</code>)</summary>"
            f"<pre>{esc(json.dumps(run.config, indent=2))}</pre></details>"
        )
    return body


def build_report(
    root: str | Path,
    out: str | Path | None = None,
    *,
    k: int = 10,
    sheet_images: int = 8,
    units_per_layer: int = 2,
    command: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Write the report of the study at ``root`` (one audit run folder, or ``models/<model>/``).

    ``k`` classes on each side of the class rankings; ``sheet_images`` probe images per scenario
    contact sheet; ``units_per_layer`` most sensitive units of each layer of each model, shown
    with the images that move them most.

    Example:
        >>> report = build_report("RUN")  # doctest: +SKIP
        >>> report.html  # doctest: +SKIP
        PosixPath('RUN/report/report.html')
    """
    say = progress or log.info
    study = analysis.load_study(root)
    out_dir = Path(out) if out is not None else study.root / "report"
    report = Report(html=out_dir / "report.html")
    w = _Writer(out_dir / "figures", report)
    command = command or shlex.join(["wmprobe", "report", str(root)])
    units = study.units()
    counts = analysis.sensitive_counts(units, THRESHOLDS)
    sections: list[Section] = []

    say("report: overview and counts")
    body = table_html(_overview(study))
    if study.skipped:
        skipped = pd.DataFrame(
            {"model": list(study.skipped), "reason": list(study.skipped.values())}
        )
        body += f"<h3>Skipped models ({len(skipped)})</h3>" + table_html(skipped)
    mitigation = study.manifest.get("mitigation")
    if mitigation:
        status = mitigation.get("status", "")
        body += f"<h3>Mitigation</h3><p>{esc(status)}: {esc(mitigation.get('reason', ''))}</p>"
        if status == "done":
            details = json.dumps(mitigation, indent=2, default=str)
            body += f"<pre>{esc(details)}</pre>"
    sections.append(Section("overview", "Models", body))

    body = ""
    logit_counts = counts[counts["layer"] == "logits"]
    if len(logit_counts):
        fig = figures.sensitive_units_figure(logit_counts, "logits", "count")
        body += w.add(
            "sensitive_logits",
            "Sensitive logit units (Figure 3 left)",
            fig,
            logit_counts,
            "Number of output classes whose logit has d above each threshold.",
        )
    feature_counts = counts[counts["layer"] == "features"]
    if len(feature_counts):
        fig = figures.sensitive_units_figure(feature_counts, "features", "share")
        body += w.add(
            "sensitive_features",
            "Sensitive feature units (Figure 3 right)",
            fig,
            feature_counts,
            "Share of the units feeding the classifier with d above each threshold.",
        )
    body += "<h3>All counts</h3>" + table_html(counts, scroll=True)
    sections.append(Section("sensitive", "Sensitive units", body))

    say("report: class rankings")
    ranking = analysis.class_ranking(units, k=k)
    body = ""
    for scenario in dict.fromkeys(ranking["scenario"]):
        fig = figures.class_auc_figure(ranking, scenario)
        data = ranking[ranking["scenario"] == scenario]
        body += w.add(
            f"classes_{scenario}",
            f"Classes by mean AUC: {scenario}",
            fig,
            data,
            "Bars: mean AUC over models; dots: each model (Figures 2, 6, 7).",
        )
        body += table_html(_ranking_wide(ranking, scenario), scroll=True)
    if not body:
        body = _note(report, "No logits were audited, so there is no class ranking.")
    sections.append(Section("classes", "Classes acting as watermark detectors", body))

    say("report: accuracy and flips")
    body = ""
    acc = study.accuracy()
    if len(acc):
        drops = analysis.accuracy_drops(acc)
        body += w.add(
            "accuracy", "Top-1 accuracy, clean and watermarked", figures.accuracy_figure(acc), drops
        )
        body += table_html(drops)
    else:
        body += _note(report, "No accuracy.csv in the run folders (labels unknown): no accuracy.")
    flips = []
    for run in study.runs:
        if run.predictions is None:
            continue
        names = run.table[run.table["layer"] == "logits"].drop_duplicates("unit")
        names = names.sort_values("unit")["class_name"].tolist()
        flips.append(analysis.prediction_flips(run.predictions, run.name, names))
    if flips:
        body += "<h3>Prediction flips</h3>" + table_html(pd.concat(flips, ignore_index=True))
    else:
        body += _note(report, "No predictions.parquet in the run folders: no prediction flips.")
    sections.append(Section("accuracy", "Accuracy drops and flips", body))

    profile = analysis.depth_profile(units, 0.9)
    if len(profile):
        say("report: depth profile")
        body = w.add(
            "depth_profile",
            "Depth profile",
            figures.depth_profile_figure(profile),
            profile,
            "Share of units with d > 0.9 per block layer.",
        )
    else:
        body = _note(report, "Only the logits and features layers were audited: no depth profile.")
    sections.append(Section("depth", "Depth profile", body))

    say("report: contact sheets")
    sections.append(Section("sheets", "Probe images", _sheets_body(study, w, report, sheet_images)))
    say("report: most sensitive units")
    sections.append(
        Section("units", "Most sensitive units", _units_body(study, w, report, units_per_layer))
    )
    sections.append(localization_section(study, w, lambda text: _note(report, text)))
    sections.append(Section("provenance", "How this was made", _provenance(study, command)))

    intro = (
        f"<p>{len(study.runs)} model(s) audited: {esc(', '.join(study.models))}"
        + (f"; {len(study.skipped)} skipped (see Models)" if study.skipped else "")
        + ". AUC: clean images 0, watermarked 1; d = max(AUC, 1 - AUC).</p>"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    report.html.write_text(page_html("wmprobe report", intro, sections), encoding="utf-8")
    return report


def _sheets_body(study: analysis.Study, w: _Writer, report: Report, n: int) -> str:
    config = study.runs[0].config
    root = Path(str(config.get("images", "")))
    if not root.is_dir():
        return _note(report, f"The image folder {root} is not here: no contact sheets.")
    images = scan_folder(root, keep_watermarked=bool(config.get("keep_watermarked")), limit=n)
    body = ""
    seed = int(config.get("seed", 0))
    for scenario in config.get("scenarios", []):
        fig, data = sheets.scenario_sheet(images.records, scenario, seed=seed, n=n)
        body += w.add(
            f"sheet_{scenario}",
            f"Probe images: {scenario}",
            fig,
            data,
            "The first images of the set as the model saw them.",
            photo=True,
        )
    return body


def _units_body(study: analysis.Study, w: _Writer, report: Report, n: int) -> str:
    body = ""
    for run in study.runs:
        if run.top_images is None or run.top_images.empty:
            body += _note(report, f"{run.name}: no top_images.parquet, so no unit images.")
            continue
        paths = run.top_images["path"].map(lambda p: Path(str(p)).is_file())
        if not paths.all():
            body += _note(report, f"{run.name}: image files of its top images are not here.")
            continue
        units = analysis.most_sensitive_units(run.top_images, n)
        seed = int(run.config.get("seed", 0))
        fig, data = sheets.unit_sheet(run.top_images, units, seed=seed)
        if not data["text_matches"].all():
            body += _note(report, f"{run.name}: a redrawn probe differs from the audited one.")
        body += w.add(
            f"units_{run.name}",
            f"{run.name}: images that move its top units most",
            fig,
            data,
            "Each pair: clean frame, then its probe, with the unit's "
            "activation; images ranked by the change in the watermark's direction.",
            photo=True,
        )
    return body
