"""Token table options on the demo's student: fp16 vs int8 rows vs int4 rows (group 32), same val pairs.

Reproduces the "Token table options" table of ``reports/quantization/history.md``. Needs the Phase 2 student
and the synthetic data of a ``make demo`` run; run from the repository root:

    PYTHONPATH=. python reports/quantization/token_table.py [checkpoint] [data root]

Prints, per table precision, the mIoU and Presence F1 on the first 200 val pairs and on how many pairs the
masks are pixel-identical to the fp16 table's.
"""

import copy
import sys
from pathlib import Path

import numpy as np
import torch
from torchao.quantization import IntxWeightOnlyConfig, quantize_
from torchao.quantization.granularity import PerGroup

from sam3m4.eval.image import evaluate_pairs
from sam3m4.predict import Predictor
from sam3m4.quantize.modes import is_quantizable_embedding, round_to_fp16
from sam3m4.quantize.pipeline import load_val


def main(ckpt: str = "checkpoints/distillation/phase2_best.pt", data: str = "data/synth", num: int = 200) -> None:
    torch.set_num_threads(1)
    val, _, _ = load_val(ckpt, Path(data))
    base = round_to_fp16(Predictor.from_checkpoint(ckpt).model.eval())
    preds = {}
    for name, bits in (("fp16", None), ("int8", torch.int8), ("int4", torch.int4)):
        model = copy.deepcopy(base)
        if bits is not None:
            quantize_(model, IntxWeightOnlyConfig(weight_dtype=bits, granularity=PerGroup(32)),
                      filter_fn=is_quantizable_embedding)
        predictor, out = Predictor(model), []

        def record(sample, predictor=predictor, out=out):
            result = predictor(sample)
            out.append(result)
            return result

        r = evaluate_pairs(val, record, num=num, progress=False)
        preds[name] = out
        same = sum(int(a[0].shape == b[0].shape and np.array_equal(a[0], b[0])) for a, b in zip(preds["fp16"], out))
        print(f"{name}: mIoU {r.miou:.4f} Presence F1 {r.presence.f1:.4f}; identical masks on {same}/{len(out)} pairs",
              flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
