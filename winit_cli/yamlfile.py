"""The one YAML reader: every config, sweep and run record goes through it.

YAML from a user (or from a copied results folder) may be hostile or broken, so reading it is
bounded before anything is built from it:

- regular files only (a FIFO or /dev/zero would be read forever), at most MAX_BYTES, UTF-8;
- a key given twice in one mapping is an error (YAML says keys are unique; PyYAML silently keeps
  the last, so a second `train:` section would replace the first whole);
- what aliases expand to is counted on the node graph before anything is constructed: an alias
  bomb (`&a [*b, *b, ...]` nested ten deep) is a few hundred bytes that expand to billions of
  values, and every later deep copy, hash or validation walks the expansion;
- nesting deeper than MAX_DEPTH is refused (PyYAML composes recursively).

Parsing uses libyaml's C parser where PyYAML has it (a report reads every run's config.yaml: the
pure-Python parser was ~10 ms a file, most of a cold report's reading); the checks above sit on
the composed node graph and the Python constructors, so they hold with either parser (libyaml
also refuses nesting past 1,000 levels itself).

PyYAML follows YAML 1.1, where `1e-3` (no dot) is a string; the loader reads it as a float, as
YAML 1.2 does, so `lr: 1e-3` and `--set init.params.std=1e-2` mean what they say.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from winit_cli.bounded import Unreadable, read_bytes
from winit_cli.errors import ConfigError, shorten

MAX_BYTES = 1 << 20  # 1 MiB: a config is a few hundred bytes, a large sweep a few kB
MAX_NODES = 100_000  # scalars, sequences and mappings after alias expansion
MAX_DEPTH = 64
MAX_INT_DIGITS = 100


class Refused(yaml.YAMLError):
    """YAML that parses but is refused: duplicate keys, too large once expanded, too deep."""

    def __init__(self, problem: str, mark: yaml.Mark | None = None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


# The C parser, with SafeLoader's constructors and resolver (CSafeLoader), where libyaml is built.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):
    def get_single_node(self) -> yaml.Node | None:
        # the node graph as composed, before anything is constructed from it (the C parser
        # composes inside get_single_node, never through a Python compose_document)
        node = super().get_single_node()
        _check_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges; explicit keys then override, as YAML intends
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it itself
            if first is not key_node:
                raise Refused(f"duplicate key {shorten(key)} (first on line "
                              f"{first.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        # Python refuses to convert more than 4,300 digits with a bare ValueError (a traceback
        # where one line is promised); no setting is a number of more than MAX_INT_DIGITS.
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise Refused(f"an integer of {digits:,} digits; at most {MAX_INT_DIGITS}",
                          node.start_mark)
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _check_expansion(root: yaml.Node | None) -> None:
    """Count the nodes `root` expands to, an alias counting as often as it is used. Sizes are
    memoized per node, so a bomb is measured in time linear in its (small) graph."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if depth > MAX_DEPTH:
            raise Refused(f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
        if id(node) in open_:
            raise Refused("an alias refers to the node that contains it", node.start_mark)
        open_.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                raise Refused(f"expands to more than {MAX_NODES:,} values (aliases included)",
                              node.start_mark)
        open_.discard(id(node))
        sizes[id(node)] = total
        return total

    if root is not None:
        size(root, 0)


def load_yaml(text: str) -> Any:
    """Parse YAML text safely (SafeLoader, bounded as above). Raises yaml.YAMLError: `Refused`
    for what parses but is refused."""
    if len(text) > MAX_BYTES:
        raise Refused(f"longer than {MAX_BYTES:,} characters")
    try:
        return yaml.load(text, Loader=_Loader)  # SafeConstructor: as safe as safe_load
    except RecursionError:
        raise Refused("nested too deeply") from None
    except yaml.MarkedYAMLError as e:
        if e.problem == "exceeded maximum nesting depth":  # libyaml's own limit (1,000): the
            # same refusal as a shallower nesting past MAX_DEPTH gets, in the same words
            raise Refused(f"nested more than {MAX_DEPTH} levels deep", e.problem_mark) from None
        raise


def describe_error(e: yaml.YAMLError) -> str:
    """`line N: problem`, for one-line messages."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark else ""
    return f"{where}{getattr(e, 'problem', None) or e}"


def parse_yaml(text: str, source: str) -> Any:
    """`load_yaml`, with any problem as a one-line ConfigError naming `source`."""
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        problem = getattr(e, "problem", None) or e
        raise ConfigError(f"{source}:{where} invalid YAML ({problem})") from None


def read_text(path: Path, what: str = "file") -> str:
    """A regular file's text, at most MAX_BYTES of UTF-8, or a one-line ConfigError."""
    try:
        data = read_bytes(path, MAX_BYTES)
    except Unreadable as e:
        if e.why == "not a regular file":
            raise ConfigError(f"{path}: not a regular file; give the {what} as a file") from None
        if e.size is not None:
            raise ConfigError(f"{path}: {e.size:,} bytes; a {what} may be at most "
                              f"{MAX_BYTES:,}") from None
        raise ConfigError(f"{path}: cannot read {what} ({e.why})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                          f"{e.start}); a {what} is a YAML text file") from None


def read_yaml(path: Path, what: str = "file") -> Any:
    """A YAML file, read and parsed with every bound above, or a one-line ConfigError."""
    return parse_yaml(read_text(path, what), str(path))
