"""Reading a config file: YAML (duplicate keys refused) → the sections → one :class:`Config`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from smppgw.config.model import Config
from smppgw.config.reader import ConfigError, Invalid, Reader
from smppgw.config.sections import HINTS, TOP_KEYS, read_sections


def parse_config(
    data: object,
    *,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate a decoded YAML document; relative file names are resolved from ``base_dir``."""
    r = Reader(base_dir, os.environ if environ is None else environ)
    if data is None:
        raise ConfigError(["config: the file is empty; at least carriers: is required"])
    top = r.mapping("", data, TOP_KEYS, hints=HINTS)
    if isinstance(top, Invalid):
        raise ConfigError(r.problems)
    parts = read_sections(r, top)
    if r.problems:
        raise ConfigError(r.problems)
    return Config(**parts, warnings=tuple(r.warnings))


class _Loader(yaml.SafeLoader):
    """``safe_load`` that refuses duplicate keys, which YAML silently resolves to the last.

    Two ``port:`` lines in one carrier are a copy-paste slip, not a choice.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable key: SafeConstructor reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str | bytes) -> object:
    """Parse YAML; syntax errors become a ConfigError with line and column.

    Only the problem and position are reported, never the offending line: it may hold a
    password.
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
        message = exc.problem or "invalid YAML"
        if exc.context:
            message += f" ({exc.context})"
        raise ConfigError([f"{where}: {message}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"yaml: {type(exc).__name__}"]) from None


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file (file names inside it are relative to its directory)."""
    file = Path(path)
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror or exc}"]) from None
    return parse_config(load_yaml(text), base_dir=file.resolve().parent, environ=environ)


# ---------------------------------------------------------------------- summary
