"""Stage 5: ExecuTorch export of the (quantized) student to one multi-method ``.pte`` per backend and mode.

    from sam3m4.export.export import export_pte
    result = export_pte(model, backend="xnnpack", mode="int8_int4", out_dir="checkpoints/export",
                        model_name="student", tracker=tracker)      # ExportResult: path, size, delegation
    from sam3m4.export.runtime import check_pte, benchmark_pte       # XNNPACK only: numerics + host latency

:mod:`.case` (one case end to end, what ``sam3m4 export`` and the Stage 5 fixture call: :func:`export_case`),
:mod:`.flows` (each backend as data: partitioners, what each sam3m4 quant mode becomes, availability),
:mod:`.export` (torch.export -> to_edge_transform_and_lower -> .pte, failure stage per result),
:mod:`.delegation` (delegated / all compute ops per method), :mod:`.token_table` (4-bit token table as int8 rows
for the stock CPU kernels), :mod:`.runtime` (ExecuTorch runtime on the host: numerics vs eager, latency),
:mod:`.deployed` (a ``.pte`` behind the project's Predictor: deployed mIoU, Presence F1, SA-Co cgF1, J&F, per-pair
presence scores, agreement with eager on val pairs), :mod:`.accuracy` (one case's deployed accuracy against
Stage 4's eager scores, recorded), :mod:`.program` (``ExportedProgram``: the written ``.pte`` with its sha256, as
later stages take it).
"""
