"""Cross-model analysis: the tables behind the paper's figures, from any set of audit run folders.

A *study* is one or many audit run folders: a single folder written by ``wmprobe audit``, or
``ROOT/models/<model>/`` folders as ``wmprobe reproduce`` writes them (with ``ROOT/study.json``
listing the models it skipped and why). Every function below takes plain DataFrames and returns
one, so each can be tested on synthetic tables; extra columns in the inputs are carried or ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from wmprobe.auditing import runfolder
from wmprobe.constants import DEFAULT_LAYERS, THRESHOLDS
from wmprobe.errors import InvalidArgumentError, RunFolderError
from wmprobe.stats import count_above

#: Layers every audit has; any other layer is a block (depth) layer.

#: Columns a per-unit table must have.
REQUIRED_COLUMNS = ("model", "layer", "scenario", "unit", "class_name", "auc", "d")


@dataclass
class ModelRun:
    """One model's audit run folder, read back."""

    name: str
    path: Path
    table: pd.DataFrame
    config: dict
    accuracy: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    top_images: pd.DataFrame | None = None


@dataclass
class Study:
    """The audited models of a study, the models it skipped (name -> reason), and its manifest."""

    root: Path
    runs: list[ModelRun]
    skipped: dict[str, str] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return [r.name for r in self.runs]

    def units(self) -> pd.DataFrame:
        """All models' per-unit tables, one after the other."""
        return pd.concat([r.table for r in self.runs], ignore_index=True)

    def accuracy(self) -> pd.DataFrame:
        """All models' accuracy tables with a ``model`` column (empty when none was saved)."""
        frames = [r.accuracy.assign(model=r.name) for r in self.runs if r.accuracy is not None]
        if not frames:
            return pd.DataFrame(columns=["model", "variant", "top1"])
        return pd.concat(frames, ignore_index=True)[["model", "variant", "top1"]]


def is_complete_run(path: str | Path) -> bool:
    """Whether ``path`` holds a finished audit (run.json, written last, and units.parquet)."""
    return runfolder.is_finished(path)


def read_run(path: str | Path) -> ModelRun:
    """Read one finished audit run folder; an unfinished or damaged one is a clear error."""
    p = Path(path)
    if not is_complete_run(p):
        if runfolder.kind_of(p) == "unfinished":
            raise RunFolderError(runfolder.unfinished_message(p).capitalize() + ".")
        raise RunFolderError(
            f"{str(p)!r} is not a complete audit run folder (needs run.json and units.parquet; "
            "write one with `wmprobe audit --out`)."
        )
    config = runfolder.read_run_json(p)
    table = read_table(p / "units.parquet")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise RunFolderError(f"{p / 'units.parquet'} lacks the column(s) {', '.join(missing)}.")
    if table.empty:
        raise RunFolderError(f"{p / 'units.parquet'} has no rows; rerun the audit into {str(p)!r}.")
    for column in ("auc", "d", "unit"):
        if not pd.api.types.is_numeric_dtype(table[column]):
            raise RunFolderError(
                f"{p / 'units.parquet'}: column {column!r} holds {table[column].dtype} values, "
                "not numbers; the file is damaged: rerun the audit into this folder."
            )
    name = str(config.get("model") or table["model"].iloc[0])

    def optional(file: str) -> pd.DataFrame | None:
        f = p / file
        return read_table(f) if f.is_file() else None

    return ModelRun(
        name=name,
        path=p,
        table=table,
        config=config,
        accuracy=optional("accuracy.csv"),
        predictions=optional("predictions.parquet"),
        top_images=optional("top_images.parquet"),
    )


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet table of a run folder; an unreadable one is a one-line error."""
    try:
        return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pyarrow and pandas raise many types for a damaged file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunFolderError(
            f"{str(path)!r} cannot be read ({reason}); the file is damaged: rerun the command "
            "that wrote the folder."
        ) from exc


def load_study(root: str | Path) -> Study:
    """Read a study: ``root`` is one audit run folder, or holds ``models/<model>/`` run folders.

    ``models/<model>/`` folders are written by ``wmprobe audit --model a,b`` and by ``wmprobe
    reproduce`` (in ``root/study.json``'s order; a finished folder of a model that study.json
    does not name, left there by an earlier request, is not read). Models listed as
    skipped there and model folders left unfinished are in ``Study.skipped`` with the reason (an
    unfinished one with the command that resumes it). A folder with no finished audit at all is
    an error that says whether a run is unfinished there (and how to resume it).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise RunFolderError(f"Run folder {str(root)!r} does not exist or is not a folder.")
    manifest_path = root / runfolder.STUDY_JSON
    manifest = runfolder.read_json(manifest_path) if manifest_path.is_file() else {}
    kind = runfolder.kind_of(root)
    if kind == "audit":
        return Study(root=root, runs=[read_run(root)], manifest=manifest)
    if kind == "mitigation":
        raise RunFolderError(
            f"{str(root)!r} holds a mitigation run, not an audit (read it with "
            "wmprobe.reporting.build_report, which handles both)."
        )
    models_dir = root / runfolder.MODELS_DIR
    folders = sorted(p for p in models_dir.iterdir() if p.is_dir()) if models_dir.is_dir() else []
    listed = [str(m) for m in manifest.get("models", [])]
    by_slug = {runfolder.model_folder(root, m).name: m for m in listed}
    if listed:  # study.json names its models: a finished folder of another model was left there
        folders = [p for p in folders if p.name in by_slug or not is_complete_run(p)]
    order = {slug: i for i, slug in enumerate(by_slug)}
    folders.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    runs, skipped = [], {}
    for folder in folders:
        if is_complete_run(folder):
            runs.append(read_run(folder))
        else:
            skipped[by_slug.get(folder.name, folder.name)] = runfolder.unfinished_message(folder)
    for name, status in manifest.get("statuses", {}).items():
        if status.get("status") == "skipped":
            skipped[name] = status.get("reason", "")
    if not runs:
        if kind == "unfinished" or skipped or manifest:
            why = (
                runfolder.unfinished_message(root)
                if kind == "unfinished"
                else "; ".join(f"{m}: {r}" for m, r in skipped.items())
                or "no model has finished yet"
            )
            raise RunFolderError(f"{str(root)!r} holds no finished audit yet ({why}).")
        raise RunFolderError(
            f"{str(root)!r} holds no audit: neither run.json and units.parquet nor "
            "models/<model>/ run folders (write them with `wmprobe audit` or `wmprobe reproduce`)."
        )
    return Study(root=root, runs=runs, skipped=skipped, manifest=manifest)


def _check(table: pd.DataFrame, columns: Sequence[str] = REQUIRED_COLUMNS) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InvalidArgumentError(
            f"Expected argument `table` to have the column(s) {', '.join(missing)} but got "
            f"{', '.join(map(str, table.columns))}"
        )


def _in_order(values: pd.Series) -> list:
    return list(dict.fromkeys(values.tolist()))


def class_ranking(table: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Per scenario, the ``k`` logit classes with the highest and lowest mean AUC across models.

    Long format, one row per (scenario, side, class, model): ``scenario``, ``side`` (``top`` or
    ``bottom``), ``rank`` (1 = most extreme), ``unit``, ``class_name``, ``mean_auc``, ``model``,
    ``auc``, and ``ci_low``/``ci_high`` when the table has them. Only classes that every model
    audited in that scenario has are ranked: the same output unit with the same class name (a
    10-class model's unit 6 is not an ImageNet model's unit 6).
    """
    _check(table)
    if k < 1:
        raise InvalidArgumentError(f"Expected argument `k` to be >= 1 but got {k}")
    logits = table[table["layer"] == "logits"].copy()
    logits["class_name"] = logits["class_name"].fillna("").astype(str)
    extra = [c for c in ("ci_low", "ci_high") if c in logits.columns]
    frames = []
    for scenario in _in_order(logits["scenario"]):
        rows = logits[logits["scenario"] == scenario]
        models = _in_order(rows["model"])
        wide = rows.pivot_table(
            index=["unit", "class_name"], columns="model", values="auc", aggfunc="first"
        )
        wide = wide[models].dropna()
        mean = wide.mean(axis=1).sort_values(ascending=False, kind="stable")
        sides = {"top": mean.index[:k], "bottom": mean.index[::-1][:k]}
        for side, classes in sides.items():
            for rank, (unit, name) in enumerate(classes, start=1):
                part = rows[(rows["unit"] == unit) & (rows["class_name"] == name)]
                part = part.drop_duplicates("model").set_index("model").loc[models]
                frame = pd.DataFrame(
                    {
                        "scenario": scenario,
                        "side": side,
                        "rank": rank,
                        "unit": int(unit),
                        "class_name": name,
                        "mean_auc": float(mean.loc[(unit, name)]),
                        "model": models,
                        "auc": part["auc"].to_numpy(dtype=float),
                    }
                )
                for c in extra:
                    frame[c] = part[c].to_numpy(dtype=float)
                frames.append(frame)
    columns = ["scenario", "side", "rank", "unit", "class_name", "mean_auc", "model", "auc"]
    if not frames:
        return pd.DataFrame(columns=columns + extra)
    return pd.concat(frames, ignore_index=True)


def sensitive_counts(table: pd.DataFrame, thresholds: Sequence[float] = THRESHOLDS) -> pd.DataFrame:
    """Per model, scenario and layer: units with d above each threshold, as a count and a share.

    Columns: ``model``, ``scenario``, ``layer``, ``units``, ``threshold``, ``count``, ``share``
    (count / units).
    """
    _check(table)
    rows = []
    for (model, scenario, layer), group in table.groupby(
        ["model", "scenario", "layer"], sort=False
    ):
        d = group["d"].to_numpy()
        above = count_above(d, tuple(thresholds))
        for t in thresholds:
            count = above[float(t)]
            rows.append(
                {
                    "model": model,
                    "scenario": scenario,
                    "layer": layer,
                    "units": len(d),
                    "threshold": float(t),
                    "count": count,
                    "share": count / len(d),
                }
            )
    return pd.DataFrame(
        rows, columns=["model", "scenario", "layer", "units", "threshold", "count", "share"]
    )


def depth_profile(table: pd.DataFrame, threshold: float = 0.9) -> pd.DataFrame:
    """Share of units with d above ``threshold`` in each block layer (not logits/features).

    Layers keep the order in which each model's table lists them (``position`` 0, 1, ...).
    Columns: ``model``, ``scenario``, ``position``, ``layer``, ``units``, ``count``, ``share``.
    Empty when no block layer was audited.
    """
    _check(table)
    blocks = table[~table["layer"].isin(DEFAULT_LAYERS)]
    rows = []
    for model in _in_order(blocks["model"]):
        of_model = blocks[blocks["model"] == model]
        positions = {layer: i for i, layer in enumerate(_in_order(of_model["layer"]))}
        for (scenario, layer), group in of_model.groupby(["scenario", "layer"], sort=False):
            count = count_above(group["d"].to_numpy(), (threshold,))[float(threshold)]
            rows.append(
                {
                    "model": model,
                    "scenario": scenario,
                    "position": positions[layer],
                    "layer": layer,
                    "units": len(group),
                    "count": count,
                    "share": count / len(group),
                }
            )
    columns = ["model", "scenario", "position", "layer", "units", "count", "share"]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["model", "scenario", "position"], kind="stable", ignore_index=True)


def accuracy_drops(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Top-1 accuracy per model and variant with ``drop`` = clean top-1 minus this variant's.

    ``accuracy`` has columns ``model``, ``variant``, ``top1`` (variant ``clean`` included).
    """
    _check(accuracy, ("model", "variant", "top1"))
    out = accuracy[["model", "variant", "top1"]].copy()
    clean = out[out["variant"] == "clean"].set_index("model")["top1"]
    out["drop"] = out["model"].map(clean) - out["top1"]
    return out.reset_index(drop=True)


def prediction_flips(
    predictions: pd.DataFrame, model: str, class_names: Sequence[str] = (), top: int = 3
) -> pd.DataFrame:
    """How probes change one model's top-1 predictions, per scenario.

    ``predictions`` has ``label`` and ``pred_clean`` and ``pred_<scenario>`` columns (as saved by
    an audit). Columns of the result: ``model``, ``scenario``, ``images``, ``changed`` (prediction
    differs from clean), ``correct_to_wrong``, ``wrong_to_correct`` (both -1 when labels are
    unknown) and ``flips_to``: the ``top`` classes most often predicted instead, with counts.
    """
    _check(predictions, ("label", "pred_clean"))
    clean = predictions["pred_clean"].to_numpy()
    labels = predictions["label"].to_numpy()
    known = bool((labels >= 0).all())
    rows = []
    for column in predictions.columns:
        if not column.startswith("pred_") or column == "pred_clean":
            continue
        pred = predictions[column].to_numpy()
        changed = pred != clean
        targets = pd.Series(pred[changed]).value_counts().head(top)
        flips_to = ", ".join(
            f"{class_names[c] if 0 <= c < len(class_names) else c} ({n})"
            for c, n in targets.items()
        )
        rows.append(
            {
                "model": model,
                "scenario": column[len("pred_") :],
                "images": len(pred),
                "changed": int(changed.sum()),
                "correct_to_wrong": int(((clean == labels) & (pred != labels)).sum())
                if known
                else -1,
                "wrong_to_correct": int(((clean != labels) & (pred == labels)).sum())
                if known
                else -1,
                "flips_to": flips_to,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "model",
            "scenario",
            "images",
            "changed",
            "correct_to_wrong",
            "wrong_to_correct",
            "flips_to",
        ],
    )


def most_sensitive_units(top_images: pd.DataFrame, per_layer: int = 2) -> pd.DataFrame:
    """The ``per_layer`` units of each layer with the highest d in one model's top-images table.

    A unit counts once per (scenario, layer, unit); layers keep the table's order.
    """
    _check(top_images, ("scenario", "layer", "unit", "d"))
    if per_layer < 1:
        raise InvalidArgumentError(f"Expected argument `per_layer` to be >= 1 but got {per_layer}")
    units = top_images.drop_duplicates(["scenario", "layer", "unit"])
    units = units.sort_values("d", ascending=False, kind="stable")
    picked = [units[units["layer"] == layer].head(per_layer) for layer in _in_order(units["layer"])]
    return pd.concat(picked, ignore_index=True)
