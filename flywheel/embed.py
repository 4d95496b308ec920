"""Text embeddings that work offline: WordLlama's static token embeddings (19 MB, shipped inside the PyPI
package, 256 dimensions, thousands of texts per second on a CPU). No model hub is contacted, ever.

Used where similarity in meaning helps and exactness is not needed: "find similar" in the labeling UI.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import numpy as np

DIMENSIONS = 256


@cache
def _model():
    # wordllama calls logging.basicConfig(level=INFO) when imported, which would make every library in the
    # process (GX, httpx, ...) print its INFO lines: a root handler present during the import makes that a no-op
    root, placeholder = logging.getLogger(), logging.NullHandler()
    root.addHandler(placeholder)
    try:
        import wordllama
        from wordllama import WordLlama
    finally:
        root.removeHandler(placeholder)

    # disable_download: the tokenizer and weights ship in the package folder; the default tries the hub.
    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


def embed(texts: list[str | None]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text (an empty text gets a zero vector)."""
    if not texts:
        return np.empty((0, DIMENSIONS), np.float32)
    vectors = np.asarray(_model().embed([t or "" for t in texts]), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
