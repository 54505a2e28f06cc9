"""Visual QA (the report template's section 3): teacher vs student overlays and the observation checklist.

    sam3m4 visual-eval --manifest configs/visual_eval/image_manifest_phase2.txt \
        --prompts configs/visual_eval/prompts_core.txt --run demo --auto-checklist

writes ``outputs/visual_eval/<run>/index.html`` (open it from disk: no network, inline JS/CSS, lazy-loaded
thumbnails). A reviewer fills in the checklist on the page and saves ``checklist.json`` next to it;
:func:`sam3m4.visual.checklist.import_for_report` records that file in ``reports/<run>/results.jsonl``,
from which ``sam3m4 report`` fills section 3.

``cli`` runs the models, ``page`` renders the HTML, ``checklist`` holds the checklist schema, the automatic
suggestions and the results-store import.
"""
