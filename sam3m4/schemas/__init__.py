"""Declared schemas of every file sam3m4 reads (pydantic v2 models; the models are the format's documentation).

One module per family; this package imports only the standard library, pydantic and :mod:`sam3m4.errors`, so every
layer can use it. Read a file with :func:`load_file` (or :func:`read_json` + :func:`validate`): a failure is one
:class:`~sam3m4.errors.DataFormatError` (or the ``error`` class given, e.g. ConfigError) line naming the file, the
field path (``images[3].height``) and what was expected; the CLI prints it and exits 2.

==========================  ==========================================  =========================================
file                        model                                       read by
==========================  ==========================================  =========================================
SA-Co image GT              :class:`saco.SacoImageFile`                 ``sam3m4.data.saco_image``
SA-Co video GT              :class:`saco.SacoVideoFile`                 ``sam3m4.data.saco_video``
SA-Co predictions           ``saco.ImagePredictions`` / ``VideoPredictions``  ``sam3m4.eval.saco_format``
SA-V masklets               :class:`sav.SavVideo`                       ``sam3m4.data.sav``
results.jsonl (a line)      :class:`results.ResultRecord`               ``sam3m4.results.store``
acceptance/targets.yaml     :class:`results.TargetsFile`                ``sam3m4.results.targets``
benchmark_results.json      ``device.AndroidResults`` + ``PLAUSIBLE``   ``sam3m4.device.results``
pipeline_state.json         :class:`pipeline.PipelineState`             ``sam3m4.pipeline.runner``, report plots
reports/<run>/manifest.json :class:`pipeline.RunManifest`               ``sam3m4.storage.prune``, ``pipeline.plan``
data/<set>/manifest.json    :class:`pipeline.SynthManifest`             ``sam3m4.data.synth``
prune log (last line)       :class:`storage.PruneLog`                   ``sam3m4.storage.prune``
quantized.json              :class:`quantize.QuantizedMeta`             ``sam3m4.quantize.storage``
decision.json               :class:`quantize.DecisionFile`              ``sam3m4.quantize.decision``
<pte>.vocab.json            :class:`vocab.VocabFile`                    ``sam3m4.export.token_table``
==========================  ==========================================  =========================================
"""

from sam3m4.schemas._base import (MAX_JSON_BYTES, MAX_SIDE, External, Own, describe_error, field_path, load_file,
                                  parse_json, read_json, type_name, validate)

__all__ = ["MAX_JSON_BYTES", "MAX_SIDE", "External", "Own", "describe_error", "field_path", "load_file",
           "parse_json", "read_json", "type_name", "validate"]
