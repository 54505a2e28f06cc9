"""Stage 4: torchao quantization of the distilled student (fp16, int4, int8_int4, qat_int4, qat_int8_int4).

    sam3m4 quantize --mode compare --ckpt checkpoints/distillation/phase2_best.pt --num-val 200

:mod:`.modes` (what each mode does, deployable size), :mod:`.qat_recipe` (the quantization-aware fine-tune recipe,
``configs/qat.yaml``), :mod:`.compare` (scoring, decision, table), :mod:`.storage` (safetensors save/load;
``QuantizedSet``: what Stage 4 hands Stage 5), :mod:`.pipeline` (build a mode from a checkpoint, record),
:mod:`.stage` (``quantize_mode`` / ``quantize_compare``: what :mod:`.cli` calls).
"""
