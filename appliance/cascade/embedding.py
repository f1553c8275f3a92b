"""The cascade's cheap stage: a sentence embedding of the document's head and a linear head over
it, in-process, with no model server and no GPU (``docs/design-cascade.md``).

It reads at most the encoder's ``max_tokens`` (128): a filter in front of the LLM that keeps
what it is sure of, whose mistakes the eval gate measures with that same truncation.
"""

from __future__ import annotations

import hashlib
import json

from appliance.backends.interfaces import ModelIdentity, TokenUsage
from appliance.cascade.encoder import Encoder
from appliance.cascade.head import HeadInvalid, StoredHead
from appliance.classification.labeller import WARM_UP_DOCUMENT, Labelled, Scored
from appliance.classification.taxonomy import Taxonomy

SERVED_NAME = "minilm-linear-head"
NO_TOKENS = TokenUsage(0, 0)
"""The stage uses no model-server tokens: known to be none, so a cascade's usage is known."""


class EmbeddingLabeller:
    """A ``DocumentLabeller``: the encoder's vector, the head's calibrated probabilities."""

    def __init__(self, encoder: Encoder, head: StoredHead, taxonomy: Taxonomy) -> None:
        if head.head.encoder_digest != encoder.digest:
            raise HeadInvalid(f"{head.path} was trained on another encoder than {encoder.name}")
        if sorted(head.head.labels) != sorted(taxonomy.names):
            raise HeadInvalid(f"{head.path} has other labels than taxonomy {taxonomy.version}")
        self._encoder = encoder
        self._head = head.head
        self.model = ModelIdentity(SERVED_NAME, f"sha256:{head.digest}")
        """The head artifact's digest is the model: a new head is a new model."""
        shape = {"encoder": encoder.digest, "max_tokens": encoder.max_tokens}
        self.prompt_version = _digest(shape)
        """How the stage reads a document: which encoder, how many tokens."""
        self.fingerprint = _digest({**shape, "head": head.digest})

    def label(self, text: str) -> Labelled:
        encoded = self._encoder.encode([text])
        (probabilities,) = self._head.probabilities(encoded.vectors)
        scores = {
            label: float(p) for label, p in zip(self._head.labels, probabilities, strict=True)
        }
        label = max(scores, key=scores.__getitem__)
        return Labelled(Scored(label, scores[label], scores), encoded.truncated[0], NO_TOKENS)

    def token_estimate(self, text: str) -> int:
        return 0

    def warm_up(self) -> None:
        self.label(WARM_UP_DOCUMENT)


def _digest(shape: dict[str, object]) -> str:
    canonical = json.dumps({"embedding": shape}, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
