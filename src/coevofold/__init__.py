"""coevofold: SCOP fold prediction from sequence via protein language model co-evolution maps.

Packages by pipeline stage, each importing only the stages below it:
:mod:`coevofold.data` (tables, splits, fold names, fetch) -> :mod:`coevofold.features` (pLM,
extraction, maps, store) -> :mod:`coevofold.models` (registry, branches, ensemble, baselines) ->
:mod:`coevofold.training` (fit loop, default recipe, model folders, scoring) ->
:mod:`coevofold.system` (homology, templates, combiner, calibration, preparation) ->
:mod:`coevofold.prediction` -> :mod:`coevofold.app` (cli, serve, report, runs). Below them all:
errors, files, logs, devices; :mod:`coevofold.metrics` (pure numbers) and :mod:`coevofold.plots`
(drawing only).
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("coevofold")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
