"""Identity -> roles, from a YAML table given by ``APPLIANCE_ROLES_PATH``. Default deny.

The file::

    version: 1
    rules:
      - uri: "spiffe://hospital/svc/intake"      # exactly one of uri, dns, email, cn
        roles: [classifier]
      - email: "*@records.hospital.example"
        roles: [reader, reviewer]
        description: medical records staff        # optional, for people reading the file
      - cn: prometheus
        roles: [metrics]
      - uri: "spiffe://hospital/svc/archive-*"
        roles: [classifier]
        quota:                                    # optional: a budget for this rule's callers
          documents_per_minute: 600               # any of documents_/tokens_ per_minute/per_day
          tokens_per_day: 20000000
          shared: true                            # one budget for all it matches (default: each)

A certificate gets the union of the roles of every rule that matches it; no match means no role.
A request must fit the quota of every matching rule that has one (``appliance.usage.quotas``).
``uri``, ``dns`` and ``email`` match any SAN of that kind, ``cn`` the subject's common name.
Patterns are exact strings unless they contain ``*`` (one or more characters) or ``?`` (exactly
one), which never cross a separator: ``/`` for uri, ``.`` for dns, ``@`` for email (cn has none).
dns and email compare case-insensitively, uri and cn exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from appliance.identity.interfaces import ROLES, QuotaLimits, RuleQuota
from appliance.identity.peercert import CertFacts

FIELDS: dict[str, tuple[str, bool]] = {
    # field: (separator that wildcards never cross, case-insensitive)
    "uri": ("/", False),
    "dns": (".", True),
    "email": ("@", True),
    "cn": ("", False),
}


class RoleConfigError(ValueError):
    """The roles file is missing, not YAML, or not a valid role table."""


class QuotaModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    documents_per_minute: int | None = Field(default=None, ge=0)
    documents_per_day: int | None = Field(default=None, ge=0)
    tokens_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    shared: bool = False

    @model_validator(mode="after")
    def _some_limit(self) -> QuotaModel:
        if all(getattr(self, name) is None for name in LIMITS):
            raise ValueError(f"a quota needs at least one of {list(LIMITS)}")
        return self


LIMITS = ("documents_per_minute", "documents_per_day", "tokens_per_minute", "tokens_per_day")


class RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str | None = Field(default=None, min_length=1)
    dns: str | None = Field(default=None, min_length=1)
    email: str | None = Field(default=None, min_length=1)
    cn: str | None = Field(default=None, min_length=1)
    roles: frozenset[str] = Field(min_length=1)
    description: str | None = None
    quota: QuotaModel | None = None

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: frozenset[str]) -> frozenset[str]:
        unknown = roles - ROLES
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; want some of {sorted(ROLES)}")
        return roles

    @model_validator(mode="after")
    def _one_matcher(self) -> RuleModel:
        given = [name for name in FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"want exactly one of {sorted(FIELDS)} per rule, got {given}")
        return self


class RoleTableModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    rules: list[RuleModel]


@dataclass(frozen=True)
class Rule:
    """One compiled rule: a field, its pattern, and the roles it grants."""

    field: str
    pattern: str
    regex: re.Pattern[str]
    roles: frozenset[str]
    quota: QuotaLimits | None = None

    def matches(self, facts: CertFacts) -> bool:
        if self.field == "cn":
            values: tuple[str, ...] = () if facts.common_name is None else (facts.common_name,)
        else:
            values = facts.san_values({"uri": "URI:", "dns": "DNS:", "email": "email:"}[self.field])
        return any(self.regex.fullmatch(value) for value in values)


class RoleMap:
    """The loaded role table; ``roles_for(facts)`` is the union of matching rules' roles."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    def roles_for(self, facts: CertFacts) -> frozenset[str]:
        granted: set[str] = set()
        for rule in self.rules:
            if rule.matches(facts):
                granted |= rule.roles
        return frozenset(granted)

    def quotas_for(self, facts: CertFacts) -> tuple[RuleQuota, ...]:
        """The quotas of the matching rules, in the table's order."""
        return tuple(
            RuleQuota(f"{rule.field}={rule.pattern}", rule.quota)
            for rule in self.rules
            if rule.quota is not None and rule.matches(facts)
        )

    def quotas_by_rule(self) -> dict[str, QuotaLimits]:
        return {f"{rule.field}={rule.pattern}": rule.quota for rule in self.rules if rule.quota}

    def quota_declarations(self) -> list[dict[str, object]]:
        """Every rule's quota as plain data, in the table's order: what an audited change of
        quotas records."""
        return [
            {"rule": f"{rule.field}={rule.pattern}", **asdict(rule.quota)}
            for rule in self.rules
            if rule.quota is not None
        ]


def compile_pattern(field: str, pattern: str) -> re.Pattern[str]:
    """Turn a rule pattern into an anchored regex (see the module doc for the syntax)."""
    separator, insensitive = FIELDS[field]
    any_char = f"[^{re.escape(separator)}]" if separator else "."
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(f"{any_char}+")
        elif char == "?":
            parts.append(any_char)
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if insensitive else re.DOTALL)


def parse_role_table(text: str, *, source: str = "<roles>") -> RoleMap:
    """Validate a YAML role table and compile it; raises ``RoleConfigError``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoleConfigError(f"{source}: not valid YAML: {exc}") from exc
    try:
        table = RoleTableModel.model_validate(data)
    except ValidationError as exc:
        raise RoleConfigError(f"{source}: not a valid role table: {exc}") from exc
    rules = []
    for model in table.rules:
        field = next(name for name in FIELDS if getattr(model, name) is not None)
        pattern: str = getattr(model, field)
        quota = QuotaLimits(**model.quota.model_dump()) if model.quota else None
        regex = compile_pattern(field, pattern)
        rules.append(Rule(field, pattern, regex, model.roles, quota))
    return RoleMap(rules)


def load_role_map(path: Path | None) -> RoleMap:
    """The role table at ``path``; ``None`` gives an empty table (every caller is denied)."""
    if path is None:
        return RoleMap(())
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoleConfigError(f"cannot read the roles file {path}: {exc}") from exc
    return parse_role_table(text, source=str(path))
