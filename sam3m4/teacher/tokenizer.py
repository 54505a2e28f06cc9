"""Moved to :mod:`sam3m4.models.tokenizer` (the CLIP tokenizer is shared by the teacher and the student).

Kept as a re-export so code written against the old path still imports; new code imports the new path.
"""

from sam3m4.models.tokenizer import *  # noqa: F401,F403
from sam3m4.models.tokenizer import CONTEXT_LENGTH, EOT_ID, SOT_ID, ClipTokenizer, default_bpe_path, get_tokenizer  # noqa: F401
