"""Import the result of a verification bundle run on a phone: ``<model>_<backend>_<quant>.bpte`` checked against
its bundled eager reference (format: :class:`sam3m4.export.bundle.BundleResult`, ``sam3m4.bundle_result/1``).

    sam3m4 device import sam3m4_tiny_coreml_int4.bundle_result.json --pte-dir outputs/export --run demo

Matching: the result names the ``.bpte`` it ran (``bundle``) and that file's sha256 (``bundle_sha256``). The
``.bpte`` of that name must be in ``--pte-dir`` and hash to exactly that sha256, else the import is refused
(:class:`~sam3m4.device.match.DeviceMatchError`): a result is only accepted for the bundle on disk, so for the
``.pte`` whose program bytes that bundle carries. Records (stage ``stage5``, subject
``<platform>/<backend>/<quant>``, artifact the ``.bpte`` with its sha256): ``bundle_mask_iou`` (gated by the
targets file's ``bundle_mask_iou``), ``bundle_passed``, ``bundle_max_abs_error``; per-method numbers in the note.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sam3m4.device.match import DeviceMatchError
from sam3m4.device.results import split_pte_stem
from sam3m4.errors import DataFormatError
from sam3m4.export.bundle import BundleResult, load_bundle_result
from sam3m4.export.flows import FLOWS
from sam3m4.results import schema
from sam3m4.results.store import sha256_file


@dataclass(frozen=True)
class BundleImport:
    """One bundle result matched to its ``.bpte``."""

    result: BundleResult
    source: Path
    """The result JSON."""
    bpte: Path
    subject: str
    """``<platform>/<backend>/<quant>`` (the platform of the backend's flow: Core ML -> ios, QNN -> android)."""


def match_bundle_result(path: str | Path, pte_dir: str | Path) -> BundleImport:
    """Read a bundle result and find its ``.bpte`` in ``pte_dir`` with the same sha256; else a one-line error."""
    path = Path(path)
    res = load_bundle_result(path)
    name = Path(res.bundle).name
    if Path(name).suffix != ".bpte":
        raise DataFormatError(f"{path}: bundle: {res.bundle!r} is not a .bpte file name")
    split = split_pte_stem(Path(name).stem)
    if split is None:
        raise DataFormatError(f"{path}: bundle: {name!r} is not <model>_<backend>_<quant>.bpte")
    bpte = Path(pte_dir) / name
    if not bpte.is_file():
        raise DeviceMatchError(f"{path}: no {name} in {pte_dir} (export it, or pass --pte-dir)")
    digest = sha256_file(bpte)
    if digest != res.bundle_sha256:
        raise DeviceMatchError(f"{path}: bundle_sha256 {res.bundle_sha256} is not the sha256 of {bpte} ({digest}): "
                               "the device ran another build of the bundle; re-run the bundle on disk")
    _, backend, quant = split
    return BundleImport(res, path, bpte, schema.device_subject(FLOWS[backend].platform, backend, quant))


def bundle_records(imp: BundleImport, target=None) -> list[dict]:
    """``ResultsStore.record`` keyword sets for one matched result (``target``: the ``bundle_mask_iou`` target)."""
    res = imp.result
    per = "; ".join(f"{m}: {'pass' if r.passed else 'fail'} ({r.cases} cases"
                    + (f", failed {r.failed_cases}" if r.failed_cases else "") + f"), max abs err {r.max_abs_error:.3g}"
                    + (f", mask IoU {r.mask_iou:.3f}" if r.mask_iou is not None else "") for m, r in res.methods.items())
    how = (f"on-device: {res.device}, {res.os}, {res.runtime}; {imp.bpte.name} vs its bundled eager reference "
           f"({imp.source})")
    base = dict(stage=schema.STAGE5, subject=imp.subject, artifact=str(imp.bpte), sha256=res.bundle_sha256, note=per)
    out = []
    if res.mask_iou is not None:
        gate = dict(target=target.value, comparison=target.comparison) if target is not None else {}
        out.append(dict(base, metric=schema.BUNDLE_MASK_IOU, value=round(res.mask_iou, 6), unit=schema.FRACTION,
                        provenance=how, **gate))
    out.append(dict(base, metric=schema.BUNDLE_PASSED, value=res.passed, unit="",
                    provenance=f"{how}; elementwise check at rtol {res.rtol:g}, atol {res.atol:g}"))
    out.append(dict(base, metric=schema.BUNDLE_MAX_ABS_ERROR, unit="", provenance=how,
                    value=max(r.max_abs_error for r in res.methods.values())))
    return out
