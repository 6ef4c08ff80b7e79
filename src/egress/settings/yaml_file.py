"""YAML settings files, read safely and strictly: what YAML would let slip is refused by name.

A file (``egress.yaml`` or the seed chart's Helm values) is read through
:func:`~egress.settings.files.read_regular_file` (a regular file, at most 1 MiB), parsed with
PyYAML's safe loader, and its node graph checked before any Python value is built:

- **aliases** (``*name``) may add at most :data:`ALIAS_LIMIT` values once expanded, and may not
  refer to a node that contains them, so a few hundred bytes of nested anchors (a "billion
  laughs") are refused at once instead of growing to gigabytes in whatever walks the result;
- **a key written twice** in one mapping (a second ``proxy:`` block) is refused with both line
  numbers, where YAML would silently keep the last one;
- **a number longer than** :data:`LONGEST_NUMBER` characters is refused with its field (no
  setting takes one, and Python refuses to convert a decimal of more than 4,300 digits).

>>> parse_yaml("proxy: {url: http://p:3128}\\n", "config", "egress.yaml")
{'proxy': {'url': 'http://p:3128'}}
>>> parse_yaml("proxy: {}\\nproxy: {}\\n", "config", "egress.yaml")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
egress.errors.ConfigError: proxy: is written twice in "egress.yaml" (lines 1 and 2); ...
"""

from __future__ import annotations

import os
from typing import Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from egress.errors import ConfigError, Problem
from egress.redact import shown
from egress.settings.fields import Problems, key_field
from egress.settings.files import CONFIG_LIMIT, read_regular_file

ALIAS_LIMIT: Final = 10_000
"""The most values aliases may add to a document once expanded."""
LONGEST_NUMBER: Final = 100
"""The longest number (in characters) a settings file may hold."""
MAX_PROBLEMS: Final = 20
"""The most duplicate-key and number problems reported for one file."""

_INT_TAG: Final = "tag:yaml.org,2002:int"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_SIZE_CAP: Final = 10**9
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml_file(path: str | os.PathLike[str], what: str) -> object:
    """The parsed content of a YAML settings file; ConfigError (field ``what``) if refused."""
    shown_path = str(path)
    p = Problems()
    data = read_regular_file(
        path, what, CONFIG_LIMIT, p, fix="point it at the YAML settings file (at most 1 MiB)"
    )
    if data is None:
        raise ConfigError(p.errors)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(what, f"{shown(shown_path)} is not UTF-8 text", "save the file as UTF-8")]
        ) from exc
    return parse_yaml(text, what, shown_path)


def parse_yaml(text: str, what: str, name: str) -> object:
    """Parse YAML ``text`` (from the file ``name``) after checking its node graph."""
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            _check(root, what, name)
            return loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            [Problem(what, f"{shown(name)} is not valid YAML{where}", "fix the YAML syntax")]
        ) from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise ConfigError(
            [Problem(what, f"{shown(name)} cannot be parsed as YAML", "fix the YAML syntax")]
        ) from exc


def _check(root: Node, what: str, name: str) -> None:
    """Refuse runaway aliases first (bounded work), then duplicate keys and huge numbers."""
    distinct, expanded = _sizes(root, what, name)
    if expanded - distinct > ALIAS_LIMIT:
        raise ConfigError(
            [
                Problem(
                    what,
                    f"{shown(name)} uses YAML aliases (*name) that expand to more than "
                    f"{ALIAS_LIMIT:,} values",
                    "write the values out instead of repeating anchors inside anchors",
                )
            ]
        )
    problems = _strict_problems(root, name)
    if problems:
        raise ConfigError(problems)


def _collections(node: Node) -> list[Node]:
    """The sequence and mapping nodes directly inside ``node`` (keys included)."""
    if isinstance(node, SequenceNode):
        return [c for c in node.value if not isinstance(c, ScalarNode)]
    if isinstance(node, MappingNode):
        return [c for pair in node.value for c in pair if not isinstance(c, ScalarNode)]
    return []


def _sizes(root: Node, what: str, name: str) -> tuple[int, int]:
    """(distinct nodes, nodes once every alias is expanded), without expanding anything.

    A scalar counts once per place it appears: an alias to a scalar cannot multiply anything.
    """
    if isinstance(root, ScalarNode):
        return 1, 1
    size: dict[int, int] = {}
    distinct = 0
    open_: set[int] = set()  # the collections whose children are being counted: the current path
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        key = id(node)
        inner = _collections(node)
        if counted:
            open_.discard(key)
            scalars = len(node.value) * (2 if isinstance(node, MappingNode) else 1) - len(inner)
            total = 1 + scalars + sum(size[id(child)] for child in inner)
            size[key] = min(total, _SIZE_CAP)
            distinct += 1 + scalars
            continue
        if key in size:
            continue
        if key in open_:
            raise ConfigError(
                [
                    Problem(
                        what,
                        f"{shown(name)} has a YAML alias inside the node it refers to "
                        f"(line {node.start_mark.line + 1}), which never ends",
                        "write the values out instead of a recursive alias",
                    )
                ]
            )
        open_.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in inner if id(child) not in size)
    return distinct, size[id(root)]


# A path is built only when a problem is reported: each node keeps a link to its parent's path
# and its own step (a key, or an index), so a deep or wide document costs no strings.
_Path = tuple["_Path", "str | int"] | None
_LONGEST_FIELD: Final = 200


def _field(path: _Path) -> str:
    """The dotted field name of ``path`` (``proxy.url``, ``excluded_domains[3]``), bounded."""
    parts: list[str] = []
    length = 0
    while path is not None and length <= _LONGEST_FIELD:
        path, step = path
        parts.append(f"[{step}]" if isinstance(step, int) else key_field(".", step))
        length += len(parts[-1])
    text = "".join(reversed(parts)).removeprefix(".")
    if path is not None:
        text = "..." + text[-_LONGEST_FIELD:]
    return text or "settings"


def _number_problem(node: Node, path: _Path) -> Problem | None:
    """A problem if ``node`` is a number too long for any setting."""
    if node.tag != _INT_TAG or len(node.value) <= LONGEST_NUMBER:
        return None
    return Problem(
        _field(path),
        f"a number of {len(node.value):,} characters (line {node.start_mark.line + 1}) is too "
        "large for any setting",
        "write the value this setting expects",
    )


def _strict_problems(root: Node, name: str) -> list[Problem]:
    """A problem for each key written twice and each number too long, named by its path.

    Only collections are walked (each once, aliases included); their scalars are checked in place.
    """
    problems: list[Problem] = []
    seen: set[int] = set()
    stack: list[tuple[Node, _Path]] = [(root, None)]
    while stack and len(problems) < MAX_PROBLEMS:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[Node, _Path]] = []
        if isinstance(node, SequenceNode):
            children = [(item, (path, i)) for i, item in enumerate(node.value)]
        elif isinstance(node, MappingNode):
            first: dict[tuple[str, str], Node] = {}
            for key, value in node.value:
                step = key.value if isinstance(key, ScalarNode) else "?"
                children.append((key, (path, step)))
                children.append((value, (path, step)))
                if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
                    continue
                earlier = first.setdefault((key.tag, key.value), key)
                if earlier is not key:
                    label = key_field("", step)
                    problems.append(
                        Problem(
                            _field((path, step)),
                            f"is written twice in {shown(name)} (lines "
                            f"{earlier.start_mark.line + 1} and {key.start_mark.line + 1}); "
                            "YAML would silently keep only the last one",
                            f"keep one {label}: and merge the other into it",
                        )
                    )
        else:
            children = [(node, path)]
        for child, child_path in reversed(children):
            if isinstance(child, ScalarNode):
                problem = _number_problem(child, child_path)
                if problem is not None:
                    problems.append(problem)
            else:
                stack.append((child, child_path))
    return problems[:MAX_PROBLEMS]
