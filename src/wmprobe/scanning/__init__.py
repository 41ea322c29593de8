"""The scan: find the images of a data set that carry overlaid marks (``wmprobe.scan``).

``files`` streams a folder; ``backbone`` taps one layer of a model; ``detector`` holds the
detector kinds and :func:`load_detector`; ``synthetic`` draws training pairs; ``feature_cache``
keeps their features; ``training`` fits heads; ``make_detector`` trains and calibrates one;
``run`` scores a folder (resumable); ``outputs`` writes the tables, sheet and page;
``evaluation`` measures against labels; ``baseline`` checks an audit's baseline.
"""

from wmprobe.scanning.detector import Detector, load_detector
from wmprobe.scanning.run import ScanResult, scan

__all__ = ["Detector", "ScanResult", "load_detector", "scan"]
