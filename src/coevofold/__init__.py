"""coevofold: SCOP fold prediction from sequence via protein language model co-evolution maps.

The pipeline, one module each: :mod:`coevofold.data` (tables) -> :mod:`coevofold.splits`
(homology-aware splits) -> features -> models -> training -> evaluation -> prediction.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("coevofold")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
