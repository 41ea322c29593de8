"""Probe sets: artifacts, scenarios, spec files, probe folders, images, generate, manifests."""

from wmprobe.probes.generate import GeneratedSet
from wmprobe.probes.images import ImageRecord, ImageSet, load_frame, scan_folder
from wmprobe.probes.manifest import read_manifest
from wmprobe.probes.scenario import Scenario, catalog, probe_rng, resolve_scenarios

__all__ = [
    "GeneratedSet",
    "ImageRecord",
    "ImageSet",
    "Scenario",
    "catalog",
    "load_frame",
    "probe_rng",
    "read_manifest",
    "resolve_scenarios",
    "scan_folder",
]
