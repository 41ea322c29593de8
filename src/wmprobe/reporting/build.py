"""Build the report of a run folder: figures (PNG, SVG, CSV on disk) and one self-contained page.

One function per section of the page (``_overview_body``, ``_sensitive_body``, ...), each
returning its HTML and saving its figures through ``_Writer``.

Layout written under ``OUT`` (default ``RUN_DIR/report``): ``report.html`` and ``figures/`` with
``<key>.png``, ``<key>.svg`` (charts) and ``<key>.csv`` (the numbers behind each figure).
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from wmprobe.auditing import runfolder
from wmprobe.constants import THRESHOLDS
from wmprobe.errors import RunFolderError, WmprobeError
from wmprobe.extraction.cache import slug
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
        _mkdir(folder)
        runfolder.clear_report(folder.parent)  # figures of an earlier build would look current

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
        paths = {
            suffix: runfolder.write_file(self.folder, f"{key}.{suffix}", image),
            "csv": runfolder.write_file(self.folder, f"{key}.csv", data.to_csv(index=False)),
        }
        if not photo:
            paths["svg"] = runfolder.write_file(
                self.folder, f"{key}.svg", lambda p: fig.savefig(p, format="svg")
            )
        self.report.figures[key] = paths
        return figure_html(key, title, image, data, caption, fmt)

    def note(self, text: str) -> str:
        """Record what the report lacks and why; returns it as a paragraph of the page."""
        self.report.notes.append(text)
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
    """Write the report of the run folder at ``root``: one audit, several (``models/<model>/``,
    as ``wmprobe audit --model a,b`` and ``wmprobe reproduce`` write them) or a mitigation run.

    ``k`` classes on each side of the class rankings; ``sheet_images`` probe images per scenario
    contact sheet; ``units_per_layer`` most sensitive units of each layer of each model, shown
    with the images that move them most. Probes are redrawn with the scenarios stored in each
    run's run.json. An unfinished or damaged folder is a :class:`~wmprobe.errors.RunFolderError`.

    Example:
        >>> report = build_report("RUN")  # doctest: +SKIP
        >>> report.html  # doctest: +SKIP
        PosixPath('RUN/report/report.html')
    """
    say = progress or log.info
    command = command or shlex.join(["wmprobe", "report", str(root)])
    if runfolder.kind_of(Path(root).expanduser()) == "mitigation":
        return _mitigation_report(Path(root).expanduser(), out, command)
    study = analysis.load_study(root)
    out_dir = runfolder.check_writable(
        Path(out) if out is not None else study.root / runfolder.REPORT_DIR
    )
    report = Report(html=out_dir / "report.html")
    w = _Writer(out_dir / "figures", report)
    units = study.units()
    say("report: overview and counts")
    sections = [
        Section("overview", "Models", _overview_body(study)),
        Section("sensitive", "Sensitive units", _sensitive_body(units, w)),
    ]
    say("report: class rankings")
    sections.append(
        Section("classes", "Classes acting as watermark detectors", _classes_body(units, w, k))
    )
    say("report: accuracy and flips")
    sections.append(Section("accuracy", "Accuracy drops and flips", _accuracy_body(study, w)))
    say("report: depth profile")
    sections.append(Section("depth", "Depth profile", _depth_body(units, w)))
    say("report: contact sheets")
    sections.append(Section("sheets", "Probe images", _sheets_body(study, w, sheet_images)))
    say("report: most sensitive units")
    sections.append(
        Section("units", "Most sensitive units", _units_body(study, w, units_per_layer))
    )
    sections.append(localization_section(study, w))
    sections.append(Section("provenance", "How this was made", _provenance(study, command)))
    intro = (
        f"<p>{len(study.runs)} model(s) audited: {esc(', '.join(study.models))}"
        + (f"; {len(study.skipped)} skipped (see Models)" if study.skipped else "")
        + ". AUC: clean images 0, watermarked 1; d = max(AUC, 1 - AUC).</p>"
    )
    _write_page(report, page_html("wmprobe report", intro, sections))
    return report


def _write_page(report: Report, page: str) -> None:
    _mkdir(report.html.parent)
    runfolder.write_file(report.html.parent, report.html.name, page)


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise runfolder.write_error(folder, exc) from exc


def _overview_body(study: analysis.Study) -> str:
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
    return body


def _sensitive_body(units: pd.DataFrame, w: _Writer) -> str:
    counts = analysis.sensitive_counts(units, THRESHOLDS)
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
    return body + "<h3>All counts</h3>" + table_html(counts, scroll=True)


def _classes_body(units: pd.DataFrame, w: _Writer, k: int) -> str:
    ranking = analysis.class_ranking(units, k=k)
    body = ""
    for scenario in dict.fromkeys(ranking["scenario"]):
        fig = figures.class_auc_figure(ranking, scenario)
        data = ranking[ranking["scenario"] == scenario]
        body += w.add(
            f"classes_{slug(scenario)}",
            f"Classes by mean AUC: {scenario}",
            fig,
            data,
            "Bars: mean AUC over models; dots: each model (Figures 2, 6, 7).",
        )
        body += table_html(_ranking_wide(ranking, scenario), scroll=True)
    return body or w.note("No logits were audited, so there is no class ranking.")


def _accuracy_body(study: analysis.Study, w: _Writer) -> str:
    body = ""
    acc = study.accuracy()
    if len(acc):
        drops = analysis.accuracy_drops(acc)
        body += w.add(
            "accuracy", "Top-1 accuracy, clean and watermarked", figures.accuracy_figure(acc), drops
        )
        body += table_html(drops)
    else:
        body += w.note("No accuracy.csv in the run folders (labels unknown): no accuracy.")
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
        body += w.note("No predictions.parquet in the run folders: no prediction flips.")
    return body


def _depth_body(units: pd.DataFrame, w: _Writer) -> str:
    profile = analysis.depth_profile(units, 0.9)
    if not len(profile):
        return w.note("Only the logits and features layers were audited: no depth profile.")
    return w.add(
        "depth_profile",
        "Depth profile",
        figures.depth_profile_figure(profile),
        profile,
        "Share of units with d > 0.9 per block layer.",
    )


def _run_scenarios(run: analysis.ModelRun, w: _Writer) -> dict | None:
    """The scenarios of a run from its run.json, or None (with a note) when they cannot be had."""
    try:
        return runfolder.run_scenarios(run.config)
    except WmprobeError as exc:
        w.note(f"{run.name}: its scenarios cannot be redrawn here ({exc}).")
        return None


def _sheets_body(study: analysis.Study, w: _Writer, n: int) -> str:
    run = study.runs[0]
    config = run.config
    root = Path(str(config.get("images", "")))
    if not root.is_dir():
        return w.note(f"The image folder {root} is not here: no contact sheets.")
    scenarios = _run_scenarios(run, w)
    if scenarios is None:
        return ""
    excluded = set(config.get("images_excluded") or {}) | set(config.get("images_skipped") or {})
    images = scan_folder(root, keep_watermarked=bool(config.get("keep_watermarked")))
    records = [r for r in images.records if r.image_id not in excluded]
    body = ""
    seed = int(config.get("seed", 0))
    for name, scenario in scenarios.items():
        try:
            fig, data = sheets.scenario_sheet(records, scenario, seed=seed, n=n)
        except WmprobeError as exc:
            body += w.note(f"No contact sheet of {name}: {exc}")
            continue
        body += w.add(
            f"sheet_{slug(name)}",
            f"Probe images: {name}",
            fig,
            data,
            "The first images of the set as the model saw them.",
            photo=True,
        )
    return body


def _units_body(study: analysis.Study, w: _Writer, n: int) -> str:
    body = ""
    for run in study.runs:
        if run.top_images is None or run.top_images.empty:
            body += w.note(f"{run.name}: no top_images.parquet, so no unit images.")
            continue
        paths = run.top_images["path"].map(lambda p: Path(str(p)).is_file())
        if not paths.all():
            body += w.note(f"{run.name}: image files of its top images are not here.")
            continue
        scenarios = _run_scenarios(run, w)
        if scenarios is None:
            continue
        units = analysis.most_sensitive_units(run.top_images, n)
        seed = int(run.config.get("seed", 0))
        fig, data = sheets.unit_sheet(run.top_images, units, seed=seed, scenarios=scenarios)
        if len(data) and not data["text_matches"].all():
            body += w.note(f"{run.name}: a redrawn probe differs from the audited one.")
        body += w.add(
            f"units_{slug(run.name)}",
            f"{run.name}: images that move its top units most",
            fig,
            data,
            "Each pair: clean frame, then its probe, with the unit's "
            "activation; images ranked by the change in the watermark's direction.",
            photo=True,
        )
    return body


def _mitigation_report(root: Path, out: str | Path | None, command: str) -> Report:
    """The page of a ``wmprobe mitigate`` folder: its table, its two figures, its run.json."""
    config = runfolder.read_run_json(root)
    out_dir = runfolder.check_writable(
        Path(out) if out is not None else root / runfolder.REPORT_DIR
    )
    report = Report(html=out_dir / "report.html")
    table = analysis.read_table(root / "table.csv")
    if table.empty:
        raise RunFolderError(f"{str(root / 'table.csv')!r} has no rows; rerun the mitigation.")
    body = table_html(table, scroll=True)
    for stem in ("fraction_curves", "auc_distribution"):
        png = root / f"{stem}.png"
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode()
            body += f'<figure><img alt="{stem}" src="data:image/png;base64,{data}"></figure>'
            report.figures[stem] = {"png": png}
    facts = pd.DataFrame(
        {
            "what": ["report command", "mitigate command", "model", "downstream", "scenarios"],
            "value": [
                command,
                str(config.get("command", "not recorded")),
                str(config.get("model", "")),
                str(config.get("downstream", "")),
                ", ".join(map(str, config.get("scenarios", []))),
            ],
        }
    )
    provenance = table_html(facts) + f"<pre>{esc(json.dumps(config, indent=2, default=str))}</pre>"
    sections = [
        Section("mitigation", "Heads with the most sensitive units left out", body),
        Section("provenance", "How this was made", provenance),
    ]
    intro = (
        f"<p>Mitigation of {esc(str(config.get('model', '')))}: accuracy and the new head's "
        "watermark sensitivity per fraction of feature units left out.</p>"
    )
    _write_page(report, page_html("wmprobe mitigation report", intro, sections))
    return report
