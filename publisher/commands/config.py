"""``cdr-publisher config``: the effective configuration, secrets redacted.

The TOML form uses the keys a ``--config`` file takes, so it can be saved, edited and fed back
(after putting real secrets in their place, or better, leaving them to the environment). Unset
settings are shown as comments: TOML has no null.

``python -m publisher.commands.config`` prints the settings reference table of
docs/operations.md, generated from :class:`Settings` so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from publisher.cli import EXIT_OK


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "config",
        help="print the effective configuration (secrets redacted); exit 1 if it is invalid",
        description=(
            "Print every setting as the daemon would see it: CDR_PUBLISHER_<NAME> environment "
            "variables win over the --config TOML file, which wins over the defaults. Secrets "
            "print as **********. An invalid or unknown setting exits 1 naming it."
        ),
    )
    parser.add_argument("--config", type=Path, help="TOML file with settings (env vars win)")
    parser.add_argument(
        "--format", choices=["toml", "json"], default="toml", help="output format (default: toml)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import orjson  # noqa: PLC0415 - keep --help fast

    from publisher.errors import ConfigError  # noqa: PLC0415
    from publisher.orgs import build_catalogue  # noqa: PLC0415
    from publisher.settings import load_settings  # noqa: PLC0415

    settings = load_settings(args.config)
    dump = settings.redacted_dump()
    text = (
        orjson.dumps(dump, option=orjson.OPT_INDENT_2).decode() + "\n"
        if args.format == "json"
        else render_toml(dump)
    )
    try:
        catalogue = build_catalogue(settings)
    except ConfigError:
        catalogue = None  # no credentials yet: `run` says so; the settings themselves are valid
    if catalogue is not None and args.format == "toml" and catalogue.from_environment:
        text += f"# orgs: one, from the environment: {catalogue.orgs[0].describe()}\n"
    for warning in catalogue.warnings if catalogue is not None else ():
        sys.stderr.write(f"cdr-publisher: warning: {warning}\n")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # `config | head` closed the pipe: not an error worth a traceback.
        # Point stdout at nothing so that the interpreter's final flush does not fail again.
        sys.stdout = None
    return EXIT_OK


# Settings that are TOML tables in a --config file: written as [table] / [[array]] after the rest.
TABLES = frozenset({"orgs", "service_app"})


def render_toml(values: dict[str, Any]) -> str:
    """``values`` (str, bool, int, float, list of str, dict of str, None) as a TOML document;
    the settings in TABLES as ``[[orgs]]`` / ``[service_app]`` tables at the end."""
    lines = []
    tables: list[str] = []
    for name, value in values.items():
        if name in TABLES and isinstance(value, list) and value:
            for item in value:
                tables += ["", f"[[{name}]]", *_table_body(name, item)]
        elif name in TABLES and isinstance(value, dict):
            tables += ["", f"[{name}]", *_table_body(name, value)]
        elif value is None:
            lines.append(f"# {name} is not set")
        else:
            lines.append(f"{name} = {toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


def _table_body(path: str, table: dict[str, Any]) -> list[str]:
    """Keys of a table, then its sub-tables (TOML puts a table's own keys first)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, sub in table.items():
        if isinstance(sub, dict):
            lines += ["", f"[{path}.{key}]", *_table_body(f"{path}.{key}", sub)]
    return lines


def toml_value(value: object) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # always has a '.' or an exponent, so TOML reads a float back
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_string(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


# --- the reference table in docs/operations.md ----------------------------------------------------


def settings_markdown() -> str:
    """The Markdown table of every setting: variable, type, default, meaning."""
    from publisher.settings import ENV_PREFIX, Settings  # noqa: PLC0415

    rows = [
        "| Environment variable | Type | Default | Meaning |",
        "|---|---|---|---|",
    ]
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        cells = (
            f"`{ENV_PREFIX}{name.upper()}`",
            _type_text(info),
            "unset" if default is None else f"`{_default_text(default)}`",
            (info.description or "").replace("|", "\\|"),
        )
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _type_text(info: FieldInfo) -> str:
    annotation = info.annotation
    args = typing.get_args(annotation)
    optional = (
        typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args
    )
    if optional:
        annotation = next(a for a in args if a is not type(None))
    if annotation is SecretStr:
        text = "secret"
    elif _is_table(annotation):
        text = "TOML table (docs/orgs.md)"
    elif annotation is Path:
        text = "path"
    elif typing.get_origin(annotation) is typing.Literal:
        text = "one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    elif typing.get_origin(annotation) is list:
        text = "JSON list of strings"
    elif typing.get_origin(annotation) is dict:
        text = "JSON object of strings"
    else:
        text = getattr(annotation, "__name__", str(annotation))
    ge = next((m.ge for m in info.metadata if isinstance(m, annotated_types.Ge)), None)
    le = next((m.le for m in info.metadata if isinstance(m, annotated_types.Le)), None)
    if ge is not None and le is not None:
        return f"{text} {ge}..{le}"
    bounds = [_bound_text(m) for m in info.metadata]
    return " ".join([text, *[b for b in bounds if b]])


def _is_table(annotation: object) -> bool:
    """A setting holding TOML tables ([[orgs]], [service_app]): a model or a list of models."""
    from pydantic import BaseModel  # noqa: PLC0415

    args = typing.get_args(annotation)
    inner = args[0] if typing.get_origin(annotation) is list and args else annotation
    return isinstance(inner, type) and issubclass(inner, BaseModel)


def _bound_text(meta: object) -> str:
    if isinstance(meta, annotated_types.Gt):
        return f"> {meta.gt}"
    if isinstance(meta, annotated_types.Ge):
        return f">= {meta.ge}"
    if isinstance(meta, annotated_types.Le):
        return f"<= {meta.le}"
    if isinstance(meta, annotated_types.MaxLen):
        return f"(at most {meta.max_length})"
    if isinstance(meta, annotated_types.MinLen):
        return "(not empty)"
    return ""


def _default_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return "[]" if isinstance(value, list) else "{}"
    return str(value)


if __name__ == "__main__":
    sys.stdout.write(settings_markdown())
