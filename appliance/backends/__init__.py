"""Model backends: what answers a classification question (see ``interfaces.ModelBackend``).

``build_backend`` picks one by ``Settings.model_backend``; add a new backend by implementing
the protocol and adding a line to ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.backends.interfaces import ModelBackend
from appliance.backends.vllm import VllmBackend
from appliance.settings import Settings

BACKENDS: dict[str, Callable[[Settings], ModelBackend]] = {"vllm": VllmBackend.from_settings}


def build_backend(settings: Settings) -> ModelBackend:
    return BACKENDS[settings.model_backend](settings)
