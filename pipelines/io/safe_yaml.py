"""A YAML loader for files a user hands over (the header/label mapping, ``--mapping``), bounded in
size and in what aliases can expand to (issue #15: a 1 KB "billion laughs" mapping expands to gigabytes).

The document is first *composed* (a node graph, in which an alias is a second reference to the
anchored node, so composing costs only the text's size), then checked, then constructed with
PyYAML's safe constructor (plain data only, no Python objects):

* the file is at most ``MAX_BYTES`` (1,000,000) bytes, read no further;
* at most ``MAX_ALIASES`` (100) alias uses (``*name``), and no alias inside its own anchor;
* the document, with every alias expanded, has at most ``MAX_NODES`` (200,000) nodes, counted on
  the graph with memoisation (never expanded). The shipped mapping has under 300.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.domain.errors import DataError

MAX_BYTES = 1_000_000
MAX_ALIASES = 100
MAX_NODES = 200_000

RULE_YAML = "mapping file not valid / 対応表の形式が不正です"


def _loader():
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _error(name: str, detail: str) -> DataError:
    return DataError(name, RULE_YAML, detail=detail)


def _check_graph(root, name: str) -> None:
    """Alias uses, recursion and the expanded size of a composed node graph."""
    import yaml

    expanded: dict[int, int] = {}
    seen: set[int] = set()
    aliases = 0
    # iterative post-order DFS (a deep document must not hit Python's recursion limit)
    stack: list[tuple[object, bool]] = [(root, False)]
    active: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            total = 1
            for child in _children(node, yaml):
                total += expanded[id(child)]
            if total > MAX_NODES:
                raise _error(
                    name,
                    f"the document expands to more than {MAX_NODES:,} values (YAML aliases "
                    f"*name repeat what they refer to) / エイリアスの展開で値が{MAX_NODES:,}個を超えます",
                )
            expanded[key] = total
            continue
        if key in seen:
            if key in active:
                raise _error(
                    name,
                    "a YAML alias refers to the value that contains it (recursive) / "
                    "エイリアスが自分自身を含む値を参照しています",
                )
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _error(
                    name,
                    f"more than {MAX_ALIASES} YAML aliases (*name) / エイリアス（*name）が{MAX_ALIASES}個を超えます",
                )
            continue
        seen.add(key)
        active.add(key)
        stack.append((node, True))
        for child in reversed(_children(node, yaml)):
            stack.append((child, False))


def _children(node, yaml) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load(path: Path, name: str | None = None) -> object:
    """The YAML document of ``path`` (plain data). Raises DataError naming the file for a file over
    the size limit, invalid YAML, too many or recursive aliases, or too large an expansion."""
    import yaml

    path = Path(path)
    name = name or path.name
    with open(path, "rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise _error(
            name,
            f"larger than {MAX_BYTES:,} bytes: a mapping file is a short list of headers and "
            f"labels / {MAX_BYTES:,}バイトを超えています",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _error(
            name, f"not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 / UTF-8で保存してください"
        ) from None
    loader = _loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, name)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise _error(name, f"not valid YAML ({where}{exc.problem or exc.context}) / YAMLとして読めません") from None
    except yaml.YAMLError as exc:
        raise _error(name, f"not valid YAML ({str(exc).splitlines()[0]}) / YAMLとして読めません") from None
    finally:
        loader.dispose()
