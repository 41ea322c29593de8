"""Many runs: analysis across models, the whole study (reproduce), downloads."""

from wmprobe.study.analysis import Study, load_study
from wmprobe.study.reproduce import StudyResult, reproduce

__all__ = ["Study", "StudyResult", "load_study", "reproduce"]
