"""The ``wmprobe`` command: one thin command per verb over the library."""

from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path

import click

from . import __version__
from .errors import WmprobeError


def _friendly(func):
    """Turn wmprobe's named errors into a one-line message and exit status 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except WmprobeError as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo("\nInterrupted; nothing was written for the unfinished step.", err=True)
            sys.exit(130)

    return wrapper


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
@click.option(
    "--images",
    "images",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of baseline images (searched recursively).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Run folder for the tables, summary and manifest.",
)
@click.option(
    "--model",
    default="efficientnet_lite0",
    show_default=True,
    help="Model name (see `wmprobe models`).",
)
@click.option(
    "--scenarios",
    default="chinese,latin,hindi,numerals",
    show_default=True,
    help="Comma-separated scenarios (see `wmprobe scenarios`).",
)
@click.option(
    "--layers",
    default="logits,features",
    show_default=True,
    help="Comma-separated layers: logits, features.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the probe sets.")
@click.option(
    "--limit",
    default=None,
    type=click.IntRange(min=1),
    help="Use only the first N images (a quick run).",
)
@click.option(
    "--keep-watermarked",
    is_flag=True,
    help="Keep the two ImageNet samples that already carry Chinese watermarks.",
)
@click.option("--random-weights", is_flag=True, help="Random init instead of trained weights.")
@click.option(
    "--download-weights",
    is_flag=True,
    help="Allow downloading the model's weights (needs network).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--batch-size",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images per batch (each brings its probes along).",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=0),
    help="DataLoader workers for reading and drawing (default: half the CPUs).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
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
    quiet,
) -> None:
    """Measure how well each unit of a model tells clean from watermarked images.

    Writes units.parquet and units.csv (model, layer, scenario, unit, class_name, auc, d),
    counts.csv, summary.txt and run.json to --out, and prints the summary.

    Example:

        wmprobe audit --model efficientnet_lite0 --images ../shared/data/imagenet-samples
        --scenarios chinese,latin,hindi,numerals --out RUN
    """
    from .audit import audit as run_audit

    result = run_audit(
        images,
        model=model,
        scenarios=_split(scenarios),
        layers=_split(layers),
        seed=seed,
        limit=limit,
        keep_watermarked=keep_watermarked,
        pretrained=not random_weights,
        device=device,
        allow_download=download_weights,
        batch_size=batch_size,
        num_workers=workers,
        progress=not quiet,
    )
    result.config["command"] = _command_line()
    paths = result.save(out)
    click.echo(result.summary())
    click.echo(f"\nwrote {', '.join(str(p) for p in paths.values())}")


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

    RUN_DIR is one audit run folder (`wmprobe audit --out`) or a study folder with
    models/<model>/ run folders (`wmprobe reproduce --out`). Figures are written beside it as
    PNG, SVG and CSV.

    Example:

        wmprobe report RUN --screenshot docs/report.png
    """
    from .report import build_report

    result = build_report(run_dir, out, k=top_k, command=_command_line(), progress=click.echo)
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"wrote {result.html} ({len(result.figures)} figures)")
    if screenshot is not None:
        from .report.browser import screenshot as take

        click.echo(f"wrote {take(result.html, screenshot)}")


@main.command()
@click.option(
    "--preset",
    default="paper",
    show_default=True,
    help="The study's models, scenarios, layers and seed (presets: paper).",
)
@click.option(
    "--images",
    "images",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of baseline images (searched recursively).",
)
@click.option(
    "--models",
    "models",
    default=None,
    help="Comma-separated models (default: the preset's; the paper's 20 for `paper`).",
)
@click.option(
    "--scenarios",
    default=None,
    help="Comma-separated scenarios (default: the preset's; see `wmprobe scenarios`).",
)
@click.option(
    "--downstream",
    default=None,
    type=click.Path(path_type=Path),
    help="Downstream image folder for the mitigation step (skipped without it).",
)
@click.option(
    "--limit",
    default=None,
    type=click.IntRange(min=1),
    help="Use only the first N images (a quick run).",
)
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
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--batch-size",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images per batch (each brings its probes along).",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=0),
    help="DataLoader workers for reading and drawing (default: half the CPUs).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
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
    from .reproduce import reproduce as run_study

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
        say=click.echo,
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
@_friendly
def models(pattern: str) -> None:
    """List the registered models and whether their weights are available offline now.

    Any torchvision classification model name works too, beyond this list.

    Example:

        wmprobe models --pattern 'resnet*'
    """
    from .models import get_model_spec, list_models

    for name in list_models(pattern):
        spec = get_model_spec(name)
        ready = "offline-ready" if spec.weights_available() else f"needs: {spec.weights_hint}"
        click.echo(f"{name:24s} {spec.source:12s} {spec.input_size:4d}px  {ready}")


@main.command()
def scenarios() -> None:
    """List the named scenarios (artifacts drawn on the images).

    Example:

        wmprobe scenarios
    """
    from .artifacts import PRESETS

    for name, artifact in PRESETS.items():
        chars = "".join(artifact.charset)
        click.echo(
            f"{name:10s} {artifact.length} of {chars} at {artifact.size}px ({artifact.font})"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
