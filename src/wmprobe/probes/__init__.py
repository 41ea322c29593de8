"""Probe sets: what is drawn (artifacts, scenarios, spec files, probe folders), on which frames
(images), and how a set is written (manifest, contact sheet; ``wmprobe.generate`` writes one).

Example:
    >>> from wmprobe.probes import resolve_scenarios
    >>> [s.name for s in resolve_scenarios(["chinese", "latin+placebo_box"])]
    ['chinese', 'latin+placebo_box']
"""

from wmprobe.probes.folder import FolderScenario
from wmprobe.probes.generate import GeneratedSet
from wmprobe.probes.images import ImageRecord, ImageSet, load_frame, scan_folder
from wmprobe.probes.manifest import ManifestRow, read_manifest, write_manifest
from wmprobe.probes.scenario import Scenario, catalog, probe_rng, resolve_scenarios
from wmprobe.probes.specfile import load_spec_file

__all__ = [
    "FolderScenario",
    "GeneratedSet",
    "ImageRecord",
    "ImageSet",
    "ManifestRow",
    "Scenario",
    "catalog",
    "load_frame",
    "load_spec_file",
    "probe_rng",
    "read_manifest",
    "resolve_scenarios",
    "scan_folder",
    "write_manifest",
]
