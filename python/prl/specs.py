"""Experiment specs from the forms users write them in: a text-format file (examples/), a dict
(field names as in proto/experiment.proto, enum values by name), or an ExperimentSpec."""

import os

import grpc
from google.protobuf import json_format, text_format

from prl import v1
from prl.errors import SpecError


def parse_spec_text(text, source="<text>"):
    """Parses text-format ExperimentSpec `text`; `source` names it in errors.

    Raises SpecError (INVALID_ARGUMENT) "source:line:column: message", as prlctl does.
    """
    spec = v1.ExperimentSpec()
    try:
        text_format.Parse(text, spec)
    except text_format.ParseError as e:
        line, column = e.GetLine(), e.GetColumn()
        message = str(e)
        # protobuf's message starts with "line:column : "; keep only its own words
        prefix = f"{line}:{column} : "
        if message.startswith(prefix):
            message = message[len(prefix):]
        where = f"{source}:{line}:{column}" if line is not None else source
        raise SpecError(f"{where}: {message}") from None
    return spec


def read_spec_file(path):
    """Reads and parses a text-format spec file. Raises SpecError: NOT_FOUND naming the file,
    or parse_spec_text's INVALID_ARGUMENT."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        hint = ""
        if any(c in path for c in "{:\n"):
            hint = " (to use text-format text rather than a file, pass prl.parse_spec(text))"
        raise SpecError(f"cannot read spec file '{path}': {e.strerror}{hint}",
                        grpc.StatusCode.NOT_FOUND) from None
    return parse_spec_text(text, path)


def to_spec(spec):
    """An ExperimentSpec from a path (str or os.PathLike) to a text-format file, a dict, or an
    ExperimentSpec (copied). (For text-format text, use parse_spec_text.)

    Raises SpecError for what does not parse (naming the field for dicts, the line and column
    for text), TypeError for other types.
    """
    if isinstance(spec, v1.ExperimentSpec):
        copy = v1.ExperimentSpec()
        copy.CopyFrom(spec)
        return copy
    if isinstance(spec, dict):
        message = v1.ExperimentSpec()
        try:
            json_format.ParseDict(spec, message)
        except json_format.ParseError as e:
            raise SpecError(f"spec dict: {e}") from None
        return message
    if isinstance(spec, (str, os.PathLike)):
        return read_spec_file(spec)
    raise TypeError(
        f"spec must be a path to a text-format file, a dict or a prl.v1.ExperimentSpec, not "
        f"{type(spec).__name__}")
