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
    paths = result.save(out)
    click.echo(result.summary())
    click.echo(f"\nwrote {', '.join(str(p) for p in paths.values())}")


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
    help="Comma-separated scenarios the units are ranked and the heads measured on.",
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
@click.option("--cache", default=None, type=click.Path(path_type=Path), help="Feature cache.")
@click.option("--download", is_flag=True, help="Allow downloading `caltech256` (needs network).")
@click.option("--data-dir", default=None, type=click.Path(path_type=Path), help="For caltech256.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--workers", default=None, type=click.IntRange(min=0), help="DataLoader workers.")
@click.option(
    "--threads", default=None, type=click.IntRange(min=1), help="torch threads (default: torch's)."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
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
    from .mitigation import mitigate as run_mitigate

    try:
        fractions = [float(f) for f in _split(kw["fractions"])]
        seeds = [int(x) for x in _split(kw["seeds"])]
    except ValueError as exc:
        raise click.BadParameter(f"--fractions and --seeds take numbers ({exc})") from exc
    run = run_mitigate(
        kw["images"],
        kw["downstream"],
        model=kw["model"],
        scenarios=_split(kw["scenarios"]),
        fractions=fractions,
        ranking=kw["rank_by"],
        null_scenario=kw["null_scenario"],
        null_quantile=kw["null_quantile"],
        seeds=seeds,
        random_draws=kw["random_draws"],
        cv=kw["cv"],
        C=kw["C"],
        test_fraction=kw["test_fraction"],
        export_fraction=kw["export_fraction"],
        training="paper" if kw["paper_training"] else "lbfgs",
        epochs=kw["epochs"],
        lr=kw["lr"],
        probe_seed=kw["probe_seed"],
        limit=kw["limit"],
        limit_per_class=kw["limit_per_class"],
        cache_dir=kw["cache"],
        download=kw["download"],
        data_dir=kw["data_dir"],
        device=kw["device"],
        num_workers=kw["workers"],
        threads=kw["threads"],
        progress=not kw["quiet"],
    )
    paths = run.save(kw["out"])
    click.echo(run.summary())
    click.echo(f"\nwrote {kw['out']} ({', '.join(sorted(p.name for p in paths.values()))})")


if __name__ == "__main__":  # pragma: no cover
    main()
