"""Role checks for views: default deny, the identity only from the verified certificate."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import request

from appliance.errors import Forbidden, Unauthenticated
from appliance.identity.interfaces import IDENTITY_ENVIRON_KEY, ROLES, Identity

P = ParamSpec("P")
R = TypeVar("R")


def current_identity() -> Identity | None:
    """The verified caller of the current request, or None when there is none."""
    identity = request.environ.get(IDENTITY_ENVIRON_KEY)
    return identity if isinstance(identity, Identity) else None


def require_identity(*roles: str) -> Identity:
    """The caller, if it holds at least one of ``roles``; else raise 401 or 403."""
    identity = current_identity()
    if identity is None:
        raise Unauthenticated("a verified client certificate is required")
    if identity.roles.isdisjoint(roles):
        wanted = " or ".join(sorted(roles))
        raise Forbidden(f"this endpoint needs the role {wanted}")
    return identity


def requires_roles(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a view so that only callers holding one of ``roles`` reach it."""
    unknown = set(roles) - ROLES
    if unknown or not roles:
        raise ValueError(
            f"unknown roles {sorted(unknown)}; want a non-empty subset of {sorted(ROLES)}"
        )

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            require_identity(*roles)
            return view(*args, **kwargs)

        return guarded

    return decorate
