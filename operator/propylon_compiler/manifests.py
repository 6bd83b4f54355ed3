"""Reading manifests: files and folders of multi-document YAML, each document with its origin.

This is the only module of the compiler that touches the file system; ``compiler.compile``
itself is pure and takes the documents this returns.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from propylon_compiler import diagnostics

YAML_SUFFIXES = (".yaml", ".yml", ".json")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    origin: diagnostics.Origin
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion") or "")

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "")

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "default")


@dataclasses.dataclass(frozen=True, slots=True)
class LoadResult:
    documents: tuple[Document, ...]
    diagnostics: tuple[diagnostics.Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not self.diagnostics


def expand_paths(paths: Iterable[str]) -> list[tuple[str, Path]]:
    """Files in path order; a folder contributes its YAML files sorted, recursively.

    Returns (display name, path) pairs; the display name is the path as the user gave it
    (joined with the relative file name for folders), which is what diagnostics print.
    """
    out: list[tuple[str, Path]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES and not p.name.startswith(".")
            )
            out.extend((os.path.join(given, str(p.relative_to(path))), p) for p in found)
        else:
            out.append((given, path))
    return out


def load_paths(paths: Sequence[str]) -> LoadResult:
    """Read every document under ``paths``. Unreadable or unparsable files become diagnostics."""
    documents: list[Document] = []
    problems: list[diagnostics.Diagnostic] = []
    for display, path in expand_paths(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(_file_problem(display, 0, f"cannot read file: {exc.strerror or exc}"))
            continue
        except UnicodeDecodeError as exc:
            problems.append(_file_problem(display, 0, f"cannot read file: not UTF-8 ({exc.reason})"))
            continue
        docs, parse_problems = parse_text(text, display)
        documents.extend(docs)
        problems.extend(parse_problems)
    return LoadResult(tuple(documents), tuple(problems))


def parse_text(text: str, display: str) -> tuple[list[Document], list[diagnostics.Diagnostic]]:
    """Split one file's text into documents; empty documents are skipped but still counted.
    The items of a List document are documents of their own, all under its number."""
    documents: list[Document] = []
    problems: list[diagnostics.Diagnostic] = []
    index = 0
    try:
        for index, body in enumerate(yaml.load_all(text, Loader=_StrictLoader), start=1):
            if body is None:
                continue
            if not isinstance(body, dict):
                problems.append(_file_problem(display, index, NOT_A_MAPPING))
                continue
            if _is_list(body):
                items = [
                    (diagnostics.Origin(file=display, document=index, item=i), item)
                    for i, item in enumerate(body["items"])
                ]
            else:
                items = [(diagnostics.Origin(file=display, document=index), body)]
            for origin, item in items:
                if not isinstance(item, dict):
                    problems.append(diagnostics.Diagnostic(origin=origin, message=NOT_A_MAPPING, reason="Unreadable"))
                    continue
                if _ESCAPED_SURROGATE.search(text) is not None:
                    item, lone = _joined(item, ())
                    if lone is not None:
                        problems.append(_lone_surrogate(origin, item, lone))
                        continue
                documents.append(Document(origin=origin, body=item))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problems.append(_file_problem(display, index + 1, f"invalid YAML{where}: {problem}"))
    return documents, problems


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice.

    PyYAML keeps the last value silently, so a second ``routes:`` would drop the first list
    unseen; kubectl and the API server refuse such a manifest ("key already set in map"), and
    so does Propylon, naming both lines. Keys merged in with ``<<`` may still be overridden.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class says so
                break
            if first is not None:
                shown = json.dumps(key) if isinstance(key, str) else repr(key)
                raise yaml.constructor.ConstructorError(
                    f"while constructing a mapping (from line {node.start_mark.line + 1})",
                    node.start_mark,
                    f"duplicate key {shown} (first at line {first.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


NOT_A_MAPPING = "a manifest must be a mapping (apiVersion, kind, ...)"


def _is_list(body: dict[str, Any]) -> bool:
    """A ``kind: List`` (or ``ApiList``, ...) of manifests, as ``kubectl get -o yaml`` writes
    them: kubectl and the API server read its items as documents, and so does Propylon, rather
    than skip it as a kind of its own (a broken export would then validate as empty)."""
    return str(body.get("kind") or "").endswith("List") and isinstance(body.get("items"), list)


def _file_problem(display: str, document: int, message: str) -> diagnostics.Diagnostic:
    return diagnostics.Diagnostic(
        origin=diagnostics.Origin(file=display, document=document), message=message, reason="Unreadable"
    )


# A UTF-16 surrogate can only reach a document through an escape in a double-quoted string
# ("\\ud83d\\ude00", as JSON writers spell a character past U+FFFF): the file itself was read as
# strict UTF-8. PyYAML keeps the two halves of such a pair as two characters.
_ESCAPED_SURROGATE = re.compile(r"\\(?:u[dD][89a-fA-F]|U0000[dD][89a-fA-F])")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _joined(value: Any, path: tuple[str | int, ...]) -> tuple[Any, tuple[str | int, ...] | None]:
    """``value`` with every escaped surrogate pair joined into its one character, as a JSON
    parser (and the API server) reads it; and the path of the first lone surrogate, which no
    parser can make a character of (None when there is none)."""
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value, None
        try:
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le"), None
        except UnicodeDecodeError:
            return value, path
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            key, lone = _joined(key, (*path, _SURROGATE.sub(_escaped, key) if isinstance(key, str) else str(key)))
            if lone is not None:
                return value, lone
            out[key], lone = _joined(item, (*path, key))
            if lone is not None:
                return value, lone
        return out, None
    if isinstance(value, list):
        items: list[Any] = []
        for index, item in enumerate(value):
            joined, lone = _joined(item, (*path, index))
            if lone is not None:
                return value, lone
            items.append(joined)
        return items, None
    return value, None


def _escaped(found: re.Match[str]) -> str:
    """A surrogate as its escape, so a diagnostic naming the key it is in can be printed."""
    return f"\\u{ord(found.group()):04x}"


def _lone_surrogate(
    origin: diagnostics.Origin, body: dict[str, Any], path: tuple[str | int, ...]
) -> diagnostics.Diagnostic:
    document = Document(origin=origin, body=body)
    return diagnostics.Diagnostic(
        origin=origin,
        kind=_SURROGATE.sub(_escaped, document.kind),
        namespace=_SURROGATE.sub(_escaped, document.namespace),
        name=_SURROGATE.sub(_escaped, document.name),
        field=diagnostics.field_path(path),
        message="Invalid value: an escaped UTF-16 surrogate without its pair is not a character"
        " (write the character itself, or both halves of its pair)",
    )
