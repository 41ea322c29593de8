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
            click.echo(
                "\nInterrupted; nothing was written for the unfinished step. Finished chunks of "
                "activations are in the cache: the same command resumes from them.",
                err=True,
            )
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
    "--models",
    "model",
    default="efficientnet_lite0",
    show_default=True,
    help="Model name, comma-separated names or a preset (paper20); see `wmprobe models`. "
    "Several models: one subfolder of --out each.",
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
    reduction,
    cache_dir,
    no_cache,
    dtype,
    arch,
    unsafe_load,
    threads,
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
    from .cache import ActivationCache, slug
    from .models import expand_models, get_model_spec

    names = expand_models(model)
    if no_cache and cache_dir is not None:
        raise click.UsageError("--cache and --no-cache contradict each other.")
    if len(names) > 1 and not random_weights and not download_weights:
        missing = [
            n
            for n in names
            if not n.startswith("ckpt:") and not get_model_spec(n).weights_available()
        ]
        if missing:  # say so before the first model runs, not after the tenth
            raise WmprobeError(
                f"Weights are not available offline for {len(missing)} of the {len(names)} "
                f"models: {', '.join(missing)}. Add --download-weights (needs network) or "
                "--random-weights, or leave them out (`wmprobe models` says which are ready)."
            )
    cache = False if no_cache else ActivationCache(cache_dir)
    for name in names:
        result = run_audit(
            images,
            model=name,
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
            cache=cache,
            reduction=reduction,
            dtype=dtype,
            arch=arch,
            unsafe_load=unsafe_load,
            threads=threads,
        )
        paths = result.save(out if len(names) == 1 else out / slug(name))
        click.echo(result.summary())
        click.echo(f"\nwrote {', '.join(str(p) for p in paths.values())}")


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
    from .models import MODEL_PRESETS, get_model_spec, list_models

    names = list_models(pattern)
    if with_timm:
        from .models.timm_models import _timm

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
    from .models import describe_layers, load_model, resolve_layers

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
