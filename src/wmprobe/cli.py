"""The ``wmprobe`` command: one thin command per verb over the library."""

from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path

import click

from wmprobe._version import __version__
from wmprobe.errors import WmprobeError

# Options that several commands share, defined once.
IMAGES_OPTION = click.option(
    "--images",
    "images",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of baseline images (searched recursively).",
)
LIMIT_OPTION = click.option(
    "--limit",
    default=None,
    type=click.IntRange(min=1),
    help="Use only the first N images (a quick run).",
)
KEEP_WATERMARKED_OPTION = click.option(
    "--keep-watermarked",
    is_flag=True,
    help="Keep the two ImageNet samples that already carry Chinese watermarks.",
)
DEVICE_OPTION = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
)
BATCH_SIZE_OPTION = click.option(
    "--batch-size",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images per batch (each brings its probes along).",
)
WORKERS_OPTION = click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=0),
    help="DataLoader workers for reading and drawing (default: half the CPUs).",
)
QUIET_OPTION = click.option("--quiet", is_flag=True, help="No progress bars.")


def ENGINE_OPTIONS(func):  # noqa: N802 - used like the option constants above
    """``--engine local|ray`` and ``--ray-address``."""
    func = click.option(
        "--ray-address",
        default=None,
        help="Ray cluster to use with --engine ray (host:port, auto, ray://...; default: "
        "$RAY_ADDRESS, else a Ray instance started here for the run).",
    )(func)
    return click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Where the chunks of images are computed: here, or on a Ray cluster (pip install "
        "'wmprobe[ray]').",
    )(func)


def _engine(name: str, address: str | None, threads: int | None, workers: int | None):
    """The engine the options ask for; what it starts is stopped when the command ends."""
    from wmprobe.extraction.engines import get_engine

    if name != "ray" and address is not None:
        raise click.UsageError("--ray-address needs --engine ray.")
    engine = get_engine(name, address=address, threads=threads, loader_workers=workers)
    click.get_current_context().call_on_close(engine.close)
    return engine


def _friendly(func):
    """Turn wmprobe's named errors into a one-line message and exit status 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except WmprobeError as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo(
                "\nInterrupted; nothing was written for the unfinished step. Finished chunks of "
                "activations are in the cache: the same command resumes from them.",
                err=True,
            )
            sys.exit(130)

    return wrapper


class GateUsageError(click.ClickException):
    """A ``--fail-if`` gate that cannot be used: one line, exit status 2 (a usage error), so CI
    tells it from a tripped gate (3) and a failed audit (1)."""

    exit_code = 2


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _command_line() -> str:
    """The running command with every option spelled out (defaults included), for run.json."""
    ctx = click.get_current_context()
    parts = ["wmprobe", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            parts.append(str(value))
        elif getattr(param, "is_flag", False):
            if value:
                parts.append(max(param.opts, key=len))
        elif value is not None:
            parts += [max(param.opts, key=len), str(value)]
    return shlex.join(parts)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wmprobe")
def main() -> None:
    """wmprobe: does a vision model detect watermarks instead of objects?

    Example:

        wmprobe audit --images ../shared/data/imagenet-samples --out RUN
    """


@main.command()
@IMAGES_OPTION
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Run folder for the tables, summary and manifest.",
)
@click.option(
    "--model",
    "--models",
    "model",
    default="efficientnet_lite0",
    show_default=True,
    help="Model name, comma-separated names or a preset (paper20); see `wmprobe models`. "
    "Several models: OUT/models/<model>/ each, and OUT/study.json.",
)
@click.option(
    "--scenarios",
    default="chinese,latin,hindi,numerals",
    show_default=True,
    help="Comma-separated: presets (with +placebo_box, +jpeg_probe, ...), FILE.toml spec files, "
    "folder:PATH probe folders (see `wmprobe scenarios`).",
)
@click.option(
    "--layers",
    default="logits,features",
    show_default=True,
    help="Comma-separated layers: logits, features, blocks (one per stage) or module paths "
    "(see `wmprobe layers`).",
)
@click.option(
    "--reduce",
    "reduction",
    type=click.Choice(["mean", "max"]),
    default="mean",
    show_default=True,
    help="Reduction of conv maps over space and of transformer tokens.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the probe sets.")
@LIMIT_OPTION
@KEEP_WATERMARKED_OPTION
@click.option("--random-weights", is_flag=True, help="Random init instead of trained weights.")
@click.option(
    "--download-weights",
    is_flag=True,
    help="Allow downloading the model's weights (needs network).",
)
@DEVICE_OPTION
@BATCH_SIZE_OPTION
@WORKERS_OPTION
@click.option(
    "--jpeg-quality",
    default=None,
    type=click.IntRange(1, 95),
    help="JPEG-encode both sides alike at this quality (probes after drawing).",
)
@click.option(
    "--fail-if",
    "fail_if",
    multiple=True,
    help="Exit with status 3 when a gate trips, e.g. 'features:d>0.9:count>10'.",
)
@click.option(
    "--cache",
    "cache_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Activation cache folder (default: $WMPROBE_CACHE or ~/.cache/wmprobe).",
)
@click.option("--no-cache", is_flag=True, help="Keep activations in memory only.")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Precision of cached activations.",
)
@click.option("--arch", default=None, help="Architecture of a ckpt:/path/file.pt model.")
@click.option(
    "--unsafe-load",
    is_flag=True,
    help="Allow a ckpt: file that pickles Python objects (runs its code: trusted files only).",
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(min=1),
    help="torch intra-op threads during extraction (default: torch's).",
)
@ENGINE_OPTIONS
@click.option(
    "--check-baseline",
    is_flag=True,
    help="First scan the baseline images for marks (wmprobe scan, packaged detector); the "
    "summary lists those flagged.",
)
@QUIET_OPTION
@_friendly
def audit(
    images,
    out,
    model,
    scenarios,
    layers,
    seed,
    limit,
    keep_watermarked,
    random_weights,
    download_weights,
    device,
    batch_size,
    workers,
    jpeg_quality,
    fail_if,
    reduction,
    cache_dir,
    no_cache,
    dtype,
    arch,
    unsafe_load,
    threads,
    engine,
    ray_address,
    check_baseline,
    quiet,
) -> None:
    """Measure how well each unit of a model tells clean from watermarked images.

    Writes units.parquet and units.csv (model, layer, scenario, unit, class_name, auc, d, DeLong
    interval, p, BH q, paired effect, null and placebo columns), counts.csv, outputs.csv,
    classes.parquet, stability.csv, summary.txt and run.json to --out, and prints the summary.
    Several models: one such folder each in OUT/models/<model>/ and OUT/study.json (as
    `wmprobe reproduce` writes); a model that cannot be audited here is skipped with the reason
    (exit status 1 at the end). With --fail-if, exits with status 3 when a gate trips (for CI).

    Example:

        wmprobe audit --model efficientnet_lite0 --images ../shared/data/imagenet-samples
        --scenarios null,null+jpeg_probe,chinese,chinese+placebo_box,my_spec.toml --out RUN
    """
    from wmprobe.auditing import runfolder
    from wmprobe.auditing.gates import (
        any_tripped,
        check_gates_for_audit,
        evaluate_gates,
        parse_gate,
    )
    from wmprobe.auditing.many import audit_many
    from wmprobe.auditing.run import audit as run_audit
    from wmprobe.errors import GateError
    from wmprobe.extraction.cache import ActivationCache
    from wmprobe.models import expand_models
    from wmprobe.probes.images import scan_folder
    from wmprobe.probes.scenario import resolve_scenarios

    names = expand_models(model)
    try:  # bad syntax, a gate fixed by its ranges or naming what the audit lacks: before any work
        gates = parse_gate(list(fail_if)) if fail_if else []
        check_gates_for_audit(
            gates,
            scenarios=_split(scenarios),
            layers=_split(layers),
            models=names,
            arch=arch,
            unsafe_load=unsafe_load,
        )
    except GateError as exc:
        raise GateUsageError(f"--fail-if: {exc}") from exc
    if no_cache and cache_dir is not None:
        raise click.UsageError("--cache and --no-cache contradict each other.")
    probe_sets = resolve_scenarios(_split(scenarios))  # bad names and files fail before any work
    runfolder.check_writable(out)
    command = _command_line()
    options = dict(
        layers=_split(layers),
        seed=seed,
        device=device,
        batch_size=batch_size,
        num_workers=workers,
        progress=not quiet,
        jpeg_quality=jpeg_quality,
        cache=False if no_cache else ActivationCache(cache_dir),
        reduction=reduction,
        dtype=dtype,
        arch=arch,
        unsafe_load=unsafe_load,
        threads=threads,
        engine=_engine(engine, ray_address, threads, workers),
    )
    tripped = []

    def show(name: str, result) -> None:
        click.echo(result.summary())
        if gates:
            results = evaluate_gates(gates, result.table)
            for r in results:
                click.echo(str(r))
            tripped.append(any_tripped(results))

    common = dict(
        scenarios=probe_sets,
        limit=limit,
        keep_watermarked=keep_watermarked,
        pretrained=not random_weights,
        allow_download=download_weights,
    )
    baseline_lines = (
        _check_baseline(images, out, limit, keep_watermarked, options["engine"])
        if check_baseline
        else []
    )
    for line in baseline_lines if len(names) > 1 else []:
        click.echo(line)
    if len(names) == 1:
        image_set = scan_folder(images, keep_watermarked=keep_watermarked, limit=limit)
        runfolder.begin(out, command=command)  # after the checks of the request and the images
        result = run_audit(image_set, model=names[0], **common, **options)
        result.config["command"] = command
        if baseline_lines:
            result.config["baseline_check"] = baseline_lines
        paths = result.save(out)
        show(names[0], result)
        click.echo(f"\nwrote {', '.join(str(p) for p in paths.values())}")
        skipped = {}
    else:
        statuses = audit_many(
            images,
            out,
            names,
            command=command,
            manifest={"baseline_check": baseline_lines} if baseline_lines else None,
            say=click.echo,
            on_result=show,
            **common,
            **options,
        )
        click.echo(
            f"\nwrote {out / runfolder.STUDY_JSON} and {out / runfolder.MODELS_DIR}/<model>/"
        )
        skipped = {m: s.reason for m, s in statuses.items() if s.status == "skipped"}
    if gates and (any(tripped) or skipped):
        click.echo(
            "audit gate tripped (--fail-if)" + (" or not checked" if skipped else ""), err=True
        )
        sys.exit(3)
    if skipped:
        reasons = "; ".join(f"{m}: {r}" for m, r in skipped.items())
        raise WmprobeError(
            f"{len(skipped)} of the {len(names)} models were skipped ({reasons}); the others are "
            f"in {out / runfolder.MODELS_DIR}."
        )


def _check_baseline(images: Path, out: Path, limit, keep_watermarked, engine) -> list[str]:
    """``audit --check-baseline``: scan the audit's own images into OUT/baseline_scan, on the
    audit's engine."""
    from wmprobe.probes.images import scan_folder
    from wmprobe.scanning.baseline import check_baseline

    records = scan_folder(images, keep_watermarked=keep_watermarked, limit=limit).records
    paths = [str(r.path) for r in records]
    check = check_baseline(images, out / "baseline_scan", paths=paths, engine=engine)
    return check.lines()


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder for report.html and figures/ (default: RUN_DIR/report).",
)
@click.option(
    "--top-k",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Classes shown on each side of the class rankings.",
)
@click.option(
    "--screenshot",
    default=None,
    type=click.Path(path_type=Path),
    help="Also save a 1280x3000 PNG screenshot of the page (needs headless Chromium).",
)
@_friendly
def report(run_dir, out, top_k, screenshot) -> None:
    """Write one self-contained HTML report of the audit(s) in RUN_DIR.

    RUN_DIR is any folder that `wmprobe audit --out` (one model, or several: models/<model>/),
    `wmprobe reproduce --out` or `wmprobe mitigate --out` wrote. An unfinished folder is an error
    that quotes the command that resumes it. Figures are written beside the page as PNG, SVG and
    CSV.

    Example:

        wmprobe report RUN --screenshot docs/report.png
    """
    from wmprobe.reporting import build_report

    result = build_report(run_dir, out, k=top_k, command=_command_line(), progress=click.echo)
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"wrote {result.html} ({len(result.figures)} figures)")
    if screenshot is not None:
        from wmprobe.reporting.browser import screenshot as take

        click.echo(f"wrote {take(result.html, screenshot)}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--units",
    default="top:8",
    show_default=True,
    help="top:N per audited layer and scenario, and/or LAYER:UNIT (comma-separated).",
)
@click.option(
    "--method",
    "methods",
    default="gradcam,activation",
    show_default=True,
    help="Comma-separated: gradcam, ig, lrp, activation (the gradient-free map of conv units).",
)
@click.option(
    "--images",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Probe images per unit: those that move it most in the watermark's direction.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path),
    help="Output folder (default: RUN_DIR/explain).",
)
@click.option(
    "--ig-steps", default=16, show_default=True, type=click.IntRange(min=2), help="IG steps."
)
@DEVICE_OPTION
@_friendly
def explain(run_dir, units, methods, images, out, ig_steps, device) -> None:
    """Where the most sensitive units of an audit look: attribution against the drawn box.

    For each unit, on the probe images that move it most, scores its attribution maps against
    the exact box of the drawn mark (mass inside the box, rank accuracy, pointing game) beside
    chance and the same unit's map on the clean image. Writes localization.parquet,
    localization_units.parquet/.csv, overlays/*.png and explain.json to RUN_DIR/explain.

    Example:

        wmprobe explain RUN --units top:8,logits:478 --method gradcam,lrp --images 16
    """
    from wmprobe.attribution import explain as run_explain

    result = run_explain(
        run_dir,
        units=units,
        methods=methods,
        images=images,
        out=out,
        device=device,
        ig_steps=ig_steps,
        progress=click.echo,
    )
    table = result.units
    if len(table):
        cols = ["scenario", "layer", "unit", "method", "images", "mass", "clean_mass", "chance"]
        cols += ["hit_rate", "q", "localized"]
        click.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo(f"wrote {result.folder} ({len(result.localization)} rows)")


@main.command()
@click.option(
    "--preset",
    default="paper",
    show_default=True,
    help="The study's models, scenarios, layers and seed (presets: paper).",
)
@IMAGES_OPTION
@click.option(
    "--models",
    "models",
    default=None,
    help="Comma-separated models (default: the preset's; the paper's 20 for `paper`).",
)
@click.option(
    "--scenarios",
    default=None,
    help="Comma-separated scenarios (default: the preset's): presets, FILE.toml spec files, "
    "folder:PATH probe folders, as for `wmprobe audit` (see `wmprobe scenarios`).",
)
@click.option(
    "--downstream",
    default=None,
    type=click.Path(path_type=Path),
    help="Downstream image folder for the mitigation step (skipped without it).",
)
@LIMIT_OPTION
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Study folder (rerun with the same --out to resume).",
)
@click.option("--seed", default=None, type=int, help="Seed of the probe sets (default: preset's).")
@click.option(
    "--download-weights",
    is_flag=True,
    help="Allow downloading the models' weights (needs network).",
)
@DEVICE_OPTION
@BATCH_SIZE_OPTION
@WORKERS_OPTION
@ENGINE_OPTIONS
@click.option(
    "--explain",
    "with_explain",
    is_flag=True,
    help="Also run `wmprobe explain` (its defaults) on every audited model before the report.",
)
@QUIET_OPTION
@_friendly
def reproduce(
    preset,
    images,
    models,
    scenarios,
    downstream,
    limit,
    out,
    seed,
    download_weights,
    device,
    batch_size,
    workers,
    engine,
    ray_address,
    with_explain,
    quiet,
) -> None:
    """Run the whole study: contact sheets, an audit of every model, analysis and the report.

    Resumable: a model whose run folder in OUT/models/ is complete is not audited again. Models
    whose weights cannot be had here are skipped with the reason, and the study goes on.

    Example:

    \b
        wmprobe reproduce --preset paper --images ../shared/data/imagenet-samples \\
            --models efficientnet_lite0,efficientnet_lite1 --limit 100 --out STUDY
    """
    from wmprobe.study.reproduce import reproduce as run_study

    result = run_study(
        images,
        out,
        preset=preset,
        models=_split(models) if models else None,
        scenarios=_split(scenarios) if scenarios else None,
        downstream=downstream,
        limit=limit,
        seed=seed,
        device=device,
        allow_download=download_weights,
        batch_size=batch_size,
        num_workers=workers,
        progress=not quiet,
        command=_command_line(),
        explain=with_explain,
        say=click.echo,
        engine=_engine(engine, ray_address, None, workers),
    )
    click.echo("")
    for model, status in result.statuses.items():
        reason = f": {status.reason}" if status.reason else ""
        click.echo(f"{model:24s} {status.status}{reason}")
    click.echo(
        f"mitigation: {result.mitigation.get('status')} {result.mitigation.get('reason', '')}"
    )
    click.echo(f"report: {result.report_html}")


@main.command()
@click.option("--pattern", default="*", show_default=True, help="Shell-style filter on names.")
@click.option("--timm", "with_timm", is_flag=True, help="Also list timm's models matching it.")
@_friendly
def models(pattern: str, with_timm: bool) -> None:
    """List the registered models and whether their weights are available offline now.

    Any torchvision classification model, any timm model (pip install 'wmprobe[timm]'),
    ckpt:/path/file.pt (with --arch) and package.module:factory work too, beyond this list.
    Presets: paper20 (the paper's 20 models).

    Example:

        wmprobe models --pattern 'resnet*'
    """
    from wmprobe.models import MODEL_PRESETS, get_model_spec, list_models

    names = list_models(pattern)
    if with_timm:
        from wmprobe.models.timm_models import _timm

        names += sorted(set(_timm().list_models(pattern)) - set(names))
    for name in names:
        spec = get_model_spec(name)
        ready = "offline-ready" if spec.weights_available() else f"needs: {spec.weights_hint}"
        click.echo(f"{name:28s} {spec.source:12s} {spec.input_size:4d}px  {ready}")
    for preset, members in MODEL_PRESETS.items():
        click.echo(f"preset {preset}: {', '.join(members)}")


@main.command()
@click.option("--model", required=True, help="Model name (see `wmprobe models`).")
@click.option("--pattern", default="*", show_default=True, help="Shell-style filter on paths.")
@click.option("--arch", default=None, help="Architecture of a ckpt:/path/file.pt model.")
@_friendly
def layers(model: str, pattern: str, arch: str | None) -> None:
    """List a model's layers: the names --layers takes, with output shape and unit count.

    The model is built without weights (on the meta device): nothing is computed or downloaded.
    Conv maps count one unit per channel; transformer tokens one per dimension.

    Example:

        wmprobe layers --model resnet50 --pattern 'layer4*'
    """
    from wmprobe.models import describe_layers, load_model, resolve_layers

    try:
        loaded = load_model(model, device="meta", arch=arch)
        infos = describe_layers(loaded, pattern)
    except (RuntimeError, NotImplementedError):  # an op without a meta kernel: build on the CPU
        loaded = load_model(model, device="cpu", pretrained=False, arch=arch)
        infos = describe_layers(loaded, pattern)
    blocks = [layer.name for layer in resolve_layers(loaded, ["blocks"])]
    click.echo(f"logits    {len(loaded.class_names)} units")
    if loaded.classifier_path is not None:
        width = loaded.classifier.in_features
        click.echo(f"features  {width} units (input of {loaded.classifier_path})")
    click.echo(f"blocks    {', '.join(blocks)}")
    for info in infos:
        shape = "x".join(map(str, info.shape)) if info.shape else "-"
        units = info.units if info.units is not None else "-"
        calls = f"  (called {info.calls}x: last call)" if info.calls > 1 else ""
        click.echo(f"{info.name:40s} {info.kind:24s} {shape:>14s} {units!s:>6}{calls}")


@main.command()
@click.argument("dataset", type=click.Choice(["caltech256", "imagenet-samples"]))
@click.option("--dest", required=True, type=click.Path(path_type=Path), help="Target folder.")
@click.option("--url", default=None, help="Download from this mirror instead.")
@click.option("--sha256", default=None, help="Expected SHA-256 of the archive.")
@_friendly
def download(dataset: str, dest: Path, url: str | None, sha256: str | None) -> None:
    """Download a data set (the only command that touches the network), verified and unpacked.

    The archive's checksum is verified before it is unpacked; members that would land outside
    --dest are refused. Where wmprobe pins no SHA-256, pass one with --sha256.

    Example:

        wmprobe download caltech256 --dest data/
    """
    from wmprobe.study.downloads import download_dataset

    folder = download_dataset(dataset, dest, url=url, sha256=sha256)
    click.echo(f"{dataset} is in {folder}")


@main.command()
@click.option(
    "--spec",
    "spec",
    default=None,
    type=click.Path(path_type=Path),
    help="List the scenarios a TOML spec file defines (sweeps expanded), with their hashes.",
)
@_friendly
def scenarios(spec: Path | None) -> None:
    """List the named scenarios (artifacts drawn on the images), or those of a spec file.

    Presets take modifiers: NAME+placebo_box, +placebo_noise, +placebo_blur (the text's box
    filled with something that is not text) and NAME+jpeg_probe (the probe side alone
    JPEG-encoded at quality 75, as the paper's generator did; +jpeg_probe_qN for quality N).
    --scenarios also takes FILE.toml (every scenario it defines) and folder:PATH (ready-made
    probe images, paired with the clean images by relative path and name).

    Example:

        wmprobe scenarios --spec my_spec.toml
    """
    from wmprobe.probes.scenario import catalog, resolve_scenarios

    if spec is not None:
        for scenario in resolve_scenarios([str(spec)]):
            click.echo(f"{scenario.name:32s} {scenario.spec_hash()[:12]}  {scenario.describe()}")
        return
    for name, description in catalog():
        click.echo(f"{name:26s} {description}")
    click.echo(
        "\nAlso: NAME+jpeg_probe_qN (probe side alone at JPEG quality N), FILE.toml "
        "(a spec file), folder:PATH (a folder of probe images)."
    )


@main.command()
@click.option(
    "--scenario",
    "scenario",
    required=True,
    help="A preset (with modifiers) or a FILE.toml (each of its scenarios in OUT/NAME).",
)
@IMAGES_OPTION
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for probes/, manifest.jsonl, probe_set.json and contact_sheet.png.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the probe set.")
@click.option(
    "--limit",
    default=None,
    type=click.IntRange(min=1),
    help="Use only the first N images.",
)
@KEEP_WATERMARKED_OPTION
@click.option(
    "--format",
    "image_format",
    default="png",
    show_default=True,
    type=click.Choice(["png", "jpeg"]),
    help="Probe image format: png is lossless; jpeg is written at quality 75.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly
def generate(scenario, images, out, seed, limit, keep_watermarked, image_format, quiet) -> None:
    """Draw a probe set and write it: probe images, a manifest and a contact sheet.

    Each image is drawn from (seed, image id, scenario) alone; the folder can be audited
    again with --scenarios folder:OUT.

    Example:

        wmprobe generate --scenario chinese --images ../shared/data/imagenet-samples
        --out probes/chinese --limit 50
    """
    from wmprobe.probes.generate import generate as run_generate

    for result in run_generate(
        scenario,
        images,
        out,
        seed=seed,
        limit=limit,
        keep_watermarked=keep_watermarked,
        image_format=image_format,
        progress=not quiet,
    ):
        line = f"{result.scenario}: {len(result.rows)} probes in {result.out}"
        if result.skipped:
            line += f"; skipped {len(result.skipped)} unreadable image(s) (see probe_set.json)"
        if result.excluded:
            line += f"; left out {len(result.excluded)} image(s) (see probe_set.json)"
        click.echo(line)


@main.command()
@click.option("--model", default="efficientnet_lite0", show_default=True, help="Backbone model.")
@click.option(
    "--images",
    required=True,
    type=click.Path(path_type=Path),
    help="Probe-set images (as for `wmprobe audit`): units are ranked, heads measured on them.",
)
@click.option(
    "--downstream",
    required=True,
    help="Downstream ImageFolder (one sub-folder per class), or `caltech256`.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option(
    "--scenario",
    "scenarios",
    default="chinese",
    show_default=True,
    help="Comma-separated scenarios the units are ranked and the heads measured on (presets, "
    "FILE.toml, folder:PATH, as for `wmprobe audit`).",
)
@click.option(
    "--fractions",
    default="0,0.005,0.01,0.02,0.03,0.05,0.1,0.15,0.25,0.5",
    show_default=True,
    help="Comma-separated fractions of the feature units to leave out.",
)
@click.option(
    "--rank-by",
    type=click.Choice(["d", "max", "null"]),
    default="d",
    show_default=True,
    help="d on the (first) scenario, the largest d over the scenarios, or d above the null.",
)
@click.option("--null-scenario", default=None, help="With --rank-by null: the null's probe set.")
@click.option("--null-quantile", default=0.95, show_default=True, type=float)
@click.option("--seeds", default="0", show_default=True, help="Comma-separated split seeds.")
@click.option(
    "--random-draws",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Random baseline: this many random draws of units left out per fraction and seed.",
)
@click.option("--cv", is_flag=True, help="Choose C by cross-validation on the training split.")
@click.option("--C", "C", default=0.3, show_default=True, type=float, help="Fixed C without --cv.")
@click.option("--test-fraction", default=0.2, show_default=True, type=float)
@click.option(
    "--export-fraction",
    default=None,
    type=float,
    help="Which head to export (default: the largest fraction not above 0.1).",
)
@click.option(
    "--paper-training",
    is_flag=True,
    help="Train heads the paper's way: SGD on augmented images through the backbone (slow).",
)
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=0.1, show_default=True, type=float)
@click.option("--probe-seed", default=0, show_default=True, type=int, help="Seed of the probes.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="First N probe images.")
@click.option(
    "--limit-per-class",
    default=None,
    type=click.IntRange(min=2),
    help="First N downstream images of each class (a quick run).",
)
@click.option(
    "--cache",
    default=None,
    type=click.Path(path_type=Path),
    help="Activation cache folder, shared with audits (default: $WMPROBE_CACHE or "
    "~/.cache/wmprobe).",
)
@click.option("--download", is_flag=True, help="Allow downloading `caltech256` (needs network).")
@click.option("--data-dir", default=None, type=click.Path(path_type=Path), help="For caltech256.")
@DEVICE_OPTION
@click.option("--workers", default=None, type=click.IntRange(min=0), help="DataLoader workers.")
@click.option(
    "--threads", default=None, type=click.IntRange(min=1), help="torch threads (default: torch's)."
)
@QUIET_OPTION
@_friendly
def mitigate(**kw) -> None:
    """Train new linear heads with the most watermark-sensitive feature units left out.

    Ranks the backbone's feature units by d on the probe set, trains a head on --downstream for
    each fraction left out, and writes table.csv (accuracy, largest and mean d of the new output
    units, counts above 0.7/0.8/0.9/0.95, prediction flip rate under the probe; with
    --random-draws the random baseline beside it), runs.csv, output_units.parquet, figures (PNG,
    SVG, CSV), and the chosen head as a torch model in OUT/mitigated.

    Example:

        wmprobe mitigate --model efficientnet_lite0 --images ../shared/data/imagenet-samples
        --downstream ../shared/data/caltech-101 --scenario chinese --out MIT
    """
    from wmprobe.auditing import runfolder
    from wmprobe.mitigation.pipeline import MitigationConfig
    from wmprobe.mitigation.pipeline import mitigate as run_mitigate

    try:
        fractions = [float(f) for f in _split(kw["fractions"])]
        seeds = [int(x) for x in _split(kw["seeds"])]
    except ValueError as exc:
        raise click.BadParameter(f"--fractions and --seeds take numbers ({exc})") from exc
    out = runfolder.check_writable(kw["out"])  # before any work
    same_name = {k: v for k, v in kw.items() if k in MitigationConfig.__dataclass_fields__}
    config = MitigationConfig(**same_name).replace(
        scenarios=_split(kw["scenarios"]),
        fractions=fractions,
        seeds=seeds,
        ranking=kw["rank_by"],
        training="paper" if kw["paper_training"] else "lbfgs",
        cache_dir=kw["cache"],
        num_workers=kw["workers"],
        progress=not kw["quiet"],
        command=_command_line(),
    )
    run = run_mitigate(kw["images"], kw["downstream"], config)
    paths = run.save(out)
    click.echo(run.summary())
    click.echo(f"\nwrote {out} ({', '.join(sorted(p.name for p in paths.values()))})")


@main.command()
@IMAGES_OPTION
@click.option("--out", type=click.Path(path_type=Path), help="Scan folder to write (resumable).")
@click.option(
    "--detector",
    default=None,
    help="A detector file from `wmprobe detector train`, or a packaged one: default (a map "
    "head on efficientnet_lite0), linear_probe, units.",
)
@click.option("--model", default=None, help="Use the packaged detector for this model.")
@click.option(
    "--top",
    default=48,
    show_default=True,
    type=click.IntRange(min=0),
    help="Contact sheet and page size.",
)
@click.option(
    "--fpr",
    default=0.01,
    show_default=True,
    type=float,
    help="False-positive rate on held-out clean images that sets the threshold.",
)
@click.option(
    "--labels",
    default=None,
    type=click.Path(path_type=Path),
    help="CSV file,label[,family] to evaluate against.",
)
@click.option(
    "--train",
    "train_first",
    is_flag=True,
    help="Train a detector on --images first (saved in --out/detector.pt) and scan with it.",
)
@LIMIT_OPTION
@DEVICE_OPTION
@BATCH_SIZE_OPTION
@ENGINE_OPTIONS
@QUIET_OPTION
@_friendly
def scan(
    images,
    out,
    detector,
    model,
    top,
    fpr,
    labels,
    train_first,
    limit,
    device,
    batch_size,
    engine,
    ray_address,
    quiet,
) -> None:
    """Rank every image of a folder by how likely it carries an overlaid mark.

    Writes scores.parquet and scores.csv (image_id, path, score, rank, flagged, region, family),
    flagged.txt, skipped.csv, contact_sheet.png, index.html and scan.json to --out; with --labels
    also evaluation.json. A killed scan resumes from its cache with identical scores. With
    --engine ray the images are scored on a Ray cluster (--train still trains here); the scores
    are the same.

    Example:

        wmprobe scan --images ../shared/data/caltech-101 --out SCAN --top 48 --fpr 0.01
        --labels ../shared/data/caltech-101-overlays.csv
    """
    from wmprobe.scanning.evaluation import format_evaluation
    from wmprobe.scanning.make_detector import train_detector
    from wmprobe.scanning.run import scan as run_scan

    if out is None:
        raise click.UsageError("Missing option '--out'.")
    if model is not None and detector is not None:
        raise click.UsageError("--model and --detector contradict each other; give one.")
    if model is not None and model != "efficientnet_lite0":
        raise WmprobeError(
            f"No packaged detector for {model!r}; train one with `wmprobe detector train "
            f"--model {model} --images DIR --out FILE.pt` and pass --detector FILE.pt."
        )
    if train_first and detector is not None:
        raise click.UsageError("--train and --detector contradict each other; give one.")
    where = _engine(engine, ray_address, None, None)  # a bad address fails before any work
    if train_first:
        detector = str(Path(out) / "detector.pt")
        if not Path(detector).is_file():
            train_detector(
                images, detector, exclude=labels, command=_command_line(), progress=not quiet
            )
    result = run_scan(
        images,
        out,
        detector=detector,
        top=top,
        fpr=fpr,
        batch_size=batch_size,
        device=device,
        labels=labels,
        limit=limit,
        progress=not quiet,
        engine=where,
    )
    n_flag = int(result.table["flagged"].sum())
    click.echo(
        f"scored {len(result.table):,} images ({len(result.skipped):,} unreadable); threshold "
        f"{result.threshold:.4f} (false-positive rate {fpr:g} on "
        f"{len(result.detector.calibration)} "
        f"held-out clean images) flags {n_flag:,}"
    )
    if result.evaluation is not None:
        click.echo(format_evaluation(result.evaluation))
    click.echo(
        f"wrote {out} (scores.parquet, scores.csv, flagged.txt, contact_sheet.png, index.html)"
    )


@main.group()
def detector() -> None:
    """Mark detectors for `wmprobe scan`: train one on synthetic marks over your images.

    Example:

        wmprobe detector train --images photos/ --out det.pt && wmprobe scan --images photos/
        --out SCAN --detector det.pt
    """


@detector.command("train")
@IMAGES_OPTION
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Detector file to write (.pt, with a .json beside).",
)
@click.option(
    "--kind", default="map", show_default=True, type=click.Choice(["map", "linear", "units"])
)
@click.option("--model", default="efficientnet_lite0", show_default=True)
@click.option("--layer", default=None, help="Layer the detector reads (map default: _blocks.10).")
@click.option(
    "--input-size",
    default=None,
    type=click.IntRange(min=32),
    help="Square input size (map default: 320).",
)
@click.option(
    "--backgrounds",
    default=1200,
    show_default=True,
    type=click.IntRange(min=16),
    help="Clean images to draw marks on.",
)
@click.option(
    "--exclude",
    default=None,
    type=click.Path(path_type=Path),
    help="Label CSV whose files are never used for training.",
)
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--cache",
    "cache_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Feature cache folder.",
)
@DEVICE_OPTION
@QUIET_OPTION
@_friendly
def detector_train(
    images,
    out,
    kind,
    model,
    layer,
    input_size,
    backgrounds,
    exclude,
    epochs,
    seed,
    cache_dir,
    device,
    quiet,
) -> None:
    """Train a mark detector on synthetic marks drawn over images of a folder; calibrate it.

    Example:

        wmprobe detector train --images ../shared/data/caltech-101 --out det.pt
        --exclude ../shared/data/caltech-101-overlays.csv
    """
    from wmprobe.scanning.make_detector import train_detector

    det = train_detector(
        images,
        out,
        kind=kind,
        model=model,
        layer=layer,
        input_size=input_size,
        backgrounds=backgrounds,
        exclude=exclude,
        epochs=epochs,
        seed=seed,
        cache_dir=cache_dir,
        device=device,
        command=_command_line(),
        progress=not quiet,
    )
    click.echo(f"trained a {det.kind} detector in {det.info['train_seconds']} s; wrote {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
