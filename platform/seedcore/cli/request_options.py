"""The options of `tune` and `train`, derived from their request models in seedcore.request_models (the one
declaration of request fields): one option per field, only short aliases added here; and the request built back
from the options given."""

from __future__ import annotations

import argparse
import json
import types
import typing
from typing import Any

# Short names kept from earlier releases of the command.
ALIASES = {"space_type": ("--space",), "config_type": ("--config",), "data_source": ("--data",),
           "custom_search_space": ("--custom-space",), "custom_tune_config": ("--custom-config",)}


def add_request_options(parser: argparse.ArgumentParser, model) -> None:
    """One option per field of `model`: booleans as flags, literals as choices, lists of names as
    comma-separated text, anything structured as JSON. Unset options keep the model's default."""
    for name, field in model.model_fields.items():
        flag, annotation = "--" + name.replace("_", "-"), _without_none(field.annotation)
        help_text = field.description or ""
        if annotation is bool:
            if field.default:
                parser.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_false",
                                    default=argparse.SUPPRESS, help=f"do not {help_text}" if help_text else None)
            else:
                parser.add_argument(flag, dest=name, action="store_true", default=argparse.SUPPRESS, help=help_text)
            continue
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = typing.get_args(annotation)
        elif annotation in (str, int, float):
            kwargs["type"] = annotation
        elif annotation == list[str]:
            kwargs.update(type=_names, metavar="A,B,...")
        else:
            kwargs.update(type=_json, metavar="JSON")
        parser.add_argument(flag, *ALIASES.get(name, ()), **kwargs)


def _without_none(annotation):
    """`X` for `X | None`; anything else as it is."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a plain word ("knee"); the request model decides whether it is allowed


def request_from(args: argparse.Namespace, model):
    """The request model built from the options given (pydantic names the field of any mistake)."""
    return model(**{name: value for name, value in vars(args).items() if name in model.model_fields})
