"""The cheap stage's text encoder: a sentence-embedding model run in-process by ONNX Runtime.

The folder is what ``scripts/encoder-model.sh`` makes: ``model.onnx`` (token ids and attention
mask in, one L2-normalised vector per document out), ``tokenizer.json`` and ``manifest.json``.
The manifest's SHA-256 of both files is checked when loading: a swapped model fails closed
instead of answering under the old identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
from numpy.typing import NDArray
from tokenizers import Tokenizer

BATCH = 8
"""Documents per ONNX Runtime call: beyond this, larger batches were not faster here."""
CHARS_PER_TOKEN = 100
"""No WordPiece token spans more characters (a longer word is one ``[UNK]``): text past
``max_tokens`` times this is never read, so it is cut before tokenizing (a 1 MB document
took 1.5 s to tokenize whole, for 128 tokens)."""


class EncoderInvalid(ValueError):
    """The encoder folder is incomplete or its files are not the ones its manifest names."""


@dataclass(frozen=True)
class Encoded:
    vectors: NDArray[np.float32]
    """One row per document."""
    truncated: tuple[bool, ...]
    """Whether each document was longer than ``max_tokens`` (only its head was read)."""


class Encoder:
    def __init__(self, folder: Path, threads: int) -> None:
        try:
            manifest_bytes = (folder / "manifest.json").read_bytes()
            manifest = json.loads(manifest_bytes)
            for name, key in (
                ("model.onnx", "model_sha256"),
                ("tokenizer.json", "tokenizer_sha256"),
            ):
                if hashlib.sha256((folder / name).read_bytes()).hexdigest() != manifest[key]:
                    raise EncoderInvalid(f"{folder / name} is not the file its manifest names")
            self.max_tokens = int(manifest["max_tokens"])
            self.dimension = int(manifest["dimension"])
            self.name = str(manifest["encoder"])
        except (OSError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, EncoderInvalid):
                raise
            raise EncoderInvalid(f"{folder} is not an encoder folder: {exc}") from exc
        self.digest = hashlib.sha256(manifest_bytes).hexdigest()
        """Covers the model's and the tokenizer's digests and the token limit."""
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_tokens)
        self._tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str]) -> Encoded:
        vectors = [np.zeros((0, self.dimension), dtype=np.float32)]
        truncated: list[bool] = []
        cut = self.max_tokens * CHARS_PER_TOKEN
        for start in range(0, len(texts), BATCH):
            whole = texts[start : start + BATCH]
            batch = self._tokenizer.encode_batch([text[:cut] for text in whole])
            ids = np.array([item.ids for item in batch], dtype=np.int64)
            mask = np.array([item.attention_mask for item in batch], dtype=np.int64)
            (out,) = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
            vectors.append(np.asarray(out, dtype=np.float32))
            truncated.extend(bool(item.overflowing) or len(text) > cut
                             for item, text in zip(batch, whole, strict=True))  # fmt: skip
        return Encoded(np.concatenate(vectors), tuple(truncated))
