"""The ``wmprobe`` command: one thin command per verb over the library."""

from __future__ import annotations

import functools
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
@click.option(
    "--fail-if",
    "fail_if",
    multiple=True,
    help="Exit with status 3 when a gate trips, e.g. 'features:d>0.9:count>10'.",
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
    fail_if,
    quiet,
) -> None:
    """Measure how well each unit of a model tells clean from watermarked images.

    Writes units.parquet and units.csv (model, layer, scenario, unit, class_name, auc, d, DeLong
    interval, p, BH q, paired effect, null and placebo columns), counts.csv, outputs.csv,
    classes.parquet, stability.csv, summary.txt and run.json to --out, and prints the summary.
    With --fail-if, exits with status 3 when a gate trips (for CI).

    Example:

        wmprobe audit --model efficientnet_lite0 --images ../shared/data/imagenet-samples
        --scenarios chinese,latin,hindi,numerals --out RUN
    """
    from .audit import audit as run_audit
    from .gate import any_tripped, evaluate_gates, parse_gate

    gates = parse_gate(list(fail_if)) if fail_if else []  # bad syntax fails before any work
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
    paths = result.save(out)
    click.echo(result.summary())
    click.echo(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    if gates:
        results = evaluate_gates(gates, result.table)
        for r in results:
            click.echo(str(r))
        if any_tripped(results):
            click.echo("audit gate tripped (--fail-if)", err=True)
            sys.exit(3)


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
    from .downloads import download_dataset

    folder = download_dataset(dataset, dest, url=url, sha256=sha256)
    click.echo(f"{dataset} is in {folder}")


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
