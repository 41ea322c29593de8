"""The run folder, defined once: its file names, how it is written, and how it is read back.

Three commands write run folders, and ``wmprobe report`` reads all of them::

    wmprobe audit --out RUN                 RUN/run.json, units.parquet, ... (one model)
    wmprobe audit --model a,b --out ROOT    ROOT/study.json, ROOT/models/<model>/ (one run each)
    wmprobe reproduce --out ROOT            the same layout, plus sheets/ and mitigation/<model>/
    wmprobe mitigate --out MIT              MIT/run.json (kind "mitigation"), table.csv, ...

A run folder is *finished* when its ``run.json`` exists: it is written last, after every other
file, and removed first when a run starts in the folder. A run that starts writes
``started.json`` (its command line) so that an unfinished folder can say how to resume it. A run
removes the files an earlier run left in the folder first (only the names below: never other
files), so a folder holds only what its own run wrote. Every file is written atomically
(:func:`wmprobe._util.atomic_write`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wmprobe._util import atomic_write
from wmprobe.errors import RunFolderError

RUN_JSON = "run.json"
STARTED_JSON = "started.json"
STUDY_JSON = "study.json"
MODELS_DIR = "models"
SHEETS_DIR = "sheets"
REPORT_DIR = "report"
MITIGATION_DIR = "mitigation"

#: Every file an audit writes (the tables, the summary, the per-image evidence; run.json last).
AUDIT_FILES = (
    "units.parquet",
    "units.csv",
    "counts.csv",
    "outputs.csv",
    "classes.parquet",
    "stability.csv",
    "summary.txt",
    "accuracy.csv",
    "predictions.parquet",
    "top_images.parquet",
)
_FIGURE = ("png", "svg", "csv")
#: Every file ``wmprobe mitigate`` writes beside its ``mitigated/`` model folder.
MITIGATION_FILES = (
    "table.csv",
    "runs.csv",
    "feature_units.csv",
    "cv.csv",
    "output_units.parquet",
    "split.json",
    "summary.txt",
    *(f"{stem}.{ext}" for stem in ("fraction_curves", "auc_distribution") for ext in _FIGURE),
)
MITIGATED_DIR = "mitigated"

#: run.json's ``kind``: what wrote the folder.
KINDS = ("audit", "mitigation")

#: run.json keys that must match for a finished audit to be reused by a later request.
RESUME_KEYS = (
    "model",
    "pretrained",
    "scenarios",
    "scenario_specs",
    "layers",
    "seed",
    "limit",
    "images",
    "keep_watermarked",
    "reduction",
    "jpeg_quality",
)

_REPORT_SUFFIXES = (".png", ".svg", ".jpg", ".csv")


def model_folder(root: str | Path, model: str) -> Path:
    """``ROOT/models/<model>/``: one model's run folder in a multi-model audit or a study."""
    from wmprobe.extraction.cache import slug

    return Path(root) / MODELS_DIR / slug(model)


def check_writable(folder: str | Path) -> Path:
    """Raise :class:`RunFolderError` now unless ``folder`` is (or can be made) a writable folder.

    Checked before any work, so that a bad ``--out`` never costs a whole run.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(
            f"--out {str(folder)!r} is a file, not a folder; choose another --out."
        )
    probe = folder
    while not probe.exists():  # the nearest folder that exists decides whether we can create it
        probe = probe.parent
    if not probe.is_dir():
        raise RunFolderError(f"--out {str(folder)!r} cannot be made: {str(probe)!r} is a file.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunFolderError(
            f"--out {str(folder)!r} is not writable (no write permission on {str(probe)!r}); "
            "choose another --out or fix its permissions."
        )
    return folder


def begin(folder: str | Path, *, command: str = "", kind: str = "audit") -> Path:
    """Start a run in ``folder``: check it is writable, mark it unfinished, note the command.

    The earlier run's run.json goes first (so a half-rewritten folder never passes for finished);
    the rest of its files go when the new run writes its own (:func:`clear`).
    """
    folder = check_writable(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RUN_JSON).unlink(missing_ok=True)
        started = {"kind": kind, "command": command, "finished": False}
        atomic_write(folder / STARTED_JSON, json.dumps(started, indent=2))
    except OSError as exc:
        raise RunFolderError(f"Cannot write the run folder {str(folder)!r}: {exc}") from exc
    return folder


def clear(folder: str | Path, kind: str = "audit") -> None:
    """Remove what an earlier run of ``kind`` wrote in ``folder``: its known files only.

    run.json goes first; then the tables, the evidence, a study.json, temporary files of an
    interrupted write and a report built from that run. Files wmprobe does not write are never
    touched.
    """
    folder = Path(folder)
    (folder / RUN_JSON).unlink(missing_ok=True)
    names = AUDIT_FILES if kind == "audit" else MITIGATION_FILES
    for name in (*names, STUDY_JSON):
        (folder / name).unlink(missing_ok=True)
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
    for tmp in folder.glob(f".{RUN_JSON}.*.tmp"):
        tmp.unlink(missing_ok=True)
    if kind == "mitigation" and (folder / MITIGATED_DIR).is_dir():
        shutil.rmtree(folder / MITIGATED_DIR)
    clear_report(folder / REPORT_DIR)


def clear_report(report_dir: str | Path) -> None:
    """Remove a report that wmprobe wrote: report.html and its figures (images and CSVs)."""
    report_dir = Path(report_dir)
    (report_dir / "report.html").unlink(missing_ok=True)
    figures = report_dir / "figures"
    if figures.is_dir():
        for old in figures.iterdir():
            if old.is_file() and old.suffix in _REPORT_SUFFIXES:
                old.unlink()


def write_file(folder: str | Path, name: str, data: str | bytes | Callable[[Path], object]) -> Path:
    """Write one file of a run folder atomically; a failure is a :class:`RunFolderError`.

    The error says that the activations stay in the cache, so that the same command, run again
    once the folder can be written, redoes only what comes after them (the tables, the report).
    """
    path = Path(folder) / name
    try:
        return atomic_write(path, data)
    except OSError as exc:
        raise write_error(path, exc) from exc


def write_error(path: str | Path, exc: OSError) -> RunFolderError:
    """The one-line error of a failed write into a run folder (disk full, read-only, ...)."""
    return RunFolderError(
        f"Cannot write {str(path)!r} ({exc.strerror or exc}); the activations are kept in the "
        "cache: free space or fix the folder, then the same command redoes only what follows "
        "them (tables, figures)."
    )


def write_run_json(folder: str | Path, manifest: Mapping[str, Any], *, kind: str = "audit") -> Path:
    """Write run.json last: the folder is finished from now on. ``started.json`` is removed."""
    folder = Path(folder)
    data = {"kind": kind, **manifest}
    path = write_file(folder, RUN_JSON, json.dumps(data, indent=2, default=str))
    (folder / STARTED_JSON).unlink(missing_ok=True)
    return path


def read_json(path: str | Path) -> dict:
    """A JSON object from a run folder; a damaged file is a one-line :class:`RunFolderError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(
            f"{str(path)!r} is damaged ({exc}); rerun the command that wrote the folder."
        ) from exc
    if not isinstance(data, dict):
        raise RunFolderError(
            f"{str(path)!r} is damaged (not a JSON object); rerun the command that wrote it."
        )
    return data


def read_run_json(folder: str | Path) -> dict:
    """The run.json of a finished run folder (see :func:`read_json` for damaged files)."""
    return read_json(Path(folder) / RUN_JSON)


def kind_of(folder: str | Path) -> str | None:
    """``audit``, ``mitigation`` or ``study`` (models/ or study.json) for what ``folder`` holds
    when finished; ``unfinished`` when a run started there and did not finish; else None."""
    folder = Path(folder)
    if (folder / RUN_JSON).is_file():
        kind = read_run_json(folder).get("kind")
        if kind in KINDS:
            return kind
        if (folder / "units.parquet").is_file():  # written before run.json had a kind
            return "audit"
        return "mitigation" if (folder / "table.csv").is_file() else "unfinished"
    if (folder / STUDY_JSON).is_file() or (folder / MODELS_DIR).is_dir():
        return "study"
    if (folder / STARTED_JSON).is_file() or any((folder / n).exists() for n in AUDIT_FILES):
        return "unfinished"
    return None


def is_finished(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished audit: run.json (written last) and units.parquet."""
    folder = Path(folder)
    if not ((folder / RUN_JSON).is_file() and (folder / "units.parquet").is_file()):
        return False
    try:
        return read_run_json(folder).get("kind", "audit") == "audit"
    except RunFolderError:
        return False


def resume_command(folder: str | Path) -> str | None:
    """The command that started the unfinished run in ``folder`` (or its study), if recorded."""
    folder = Path(folder)
    for path in (folder / STARTED_JSON, folder / STUDY_JSON, folder.parent.parent / STUDY_JSON):
        if path.is_file():
            try:
                command = read_json(path).get("command")
            except RunFolderError:
                continue
            if command:
                return str(command)
    return None


def unfinished_message(folder: str | Path) -> str:
    """Why ``folder`` is not a finished run, and the command that resumes it."""
    command = resume_command(folder)
    how = (
        f"rerun `{command}` to resume it (finished work comes from the cache)"
        if command
        else "rerun the command that wrote it to resume it"
    )
    return f"the run in {str(folder)!r} is unfinished (no run.json yet): {how}"


def reusable(folder: str | Path, wanted: Mapping[str, Any]) -> str | None:
    """None when ``folder`` holds a finished audit made with ``wanted``'s settings; else why not.

    The settings compared are :data:`RESUME_KEYS` (those present in ``wanted``).
    """
    if not is_finished(folder):
        return "no finished run folder"
    done = read_run_json(folder)
    for key in RESUME_KEYS:
        if key in wanted and done.get(key) != wanted[key]:
            return f"its {key} was {done.get(key)!r}, now {wanted[key]!r}"
    return None


def run_scenarios(config: Mapping[str, Any]) -> dict:
    """The scenarios a run drew, by name, rebuilt from its run.json (``scenario_definitions``).

    Run folders written before run.json held the definitions name presets only; those names are
    resolved again. Returns ``{name: Scenario}`` in the run's order.
    """
    from wmprobe.probes.scenario import Scenario, resolve_scenarios

    definitions = config.get("scenario_definitions")
    if definitions is not None:
        scenarios = [Scenario.from_dict(d) for d in definitions]
    else:
        scenarios = resolve_scenarios(list(config.get("scenarios", [])))
    return {s.name: s for s in scenarios}
