"""How a lightly-er library file becomes a lightly file: imports, references, spelling.

Three rewrites, and nothing else:

- imports: every ``from lightly_er... import name`` becomes an import from the module
  that defines ``name`` at its lightly path (re-exports through a package
  ``__init__`` are followed, so nothing in lightly imports from a package that is
  still being initialised); ``from lightly.<package> import name`` likewise becomes
  an import from the defining module of the target checkout (lightly's own style,
  and the one that cannot be circular); ``typing`` names newer than lightly's
  Python 3.7 (``Literal``) come from ``typing_extensions``, as in lightly;
- references in comments, docstrings and messages: the phrases of
  ``manifest.PROSE``, then dotted names ``lightly_er.x.y`` to their lightly paths;
- spelling: British to American (``spelling.py``), in comments, docstrings and
  string literals only (in f-strings, outside the braces).

Identifiers never change: :func:`transform` checks that the names of the file,
outside its import statements, are the same before and after.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from upstream import spelling
from upstream.manifest import FILES, PROSE

SOURCE_PACKAGE = "lightly_er"


class TransformError(ValueError):
    """A file cannot move as it is (the message names the file, line and fix)."""


def module_name(path: str) -> str:
    """'lightly/loss/er_loss.py' -> 'lightly.loss.er_loss' (a package: its name)."""
    parts = path[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_map() -> Dict[str, str]:
    """Our module -> its lightly module, for every library file of the manifest."""
    return {
        module_name(row.source): module_name(row.target)
        for row in FILES
        if row.source.startswith(SOURCE_PACKAGE + "/")
    }


def exported_names() -> Dict[str, str]:
    """Name -> lightly package that exports it (the manifest's exports)."""
    return {
        name: module_name(row.target).rsplit(".", 1)[0]
        for row in FILES
        for name in row.exports
    }


class Resolver:
    """Finds the module that defines a name imported from a package, by reading files.

    ``roots`` maps a top-level package to the folder that holds it: our repository
    for ``lightly_er``, the target checkout for ``lightly``.
    """

    def __init__(self, roots: Dict[str, Path]) -> None:
        self.roots = roots

    def _file(self, module: str) -> Optional[Path]:
        root = self.roots.get(module.split(".")[0])
        if root is None:
            return None
        base = root.joinpath(*module.split("."))
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
        return None

    def is_module(self, module: str) -> bool:
        return self._file(module) is not None

    def is_package(self, module: str) -> bool:
        path = self._file(module)
        return path is not None and path.name == "__init__.py"

    def defining_module(self, module: str, name: str) -> str:
        """The module where ``name``, imported from ``module``, is defined."""
        seen = set()
        while self.is_package(module) and (module, name) not in seen:
            seen.add((module, name))
            path = self._file(module)
            assert path is not None
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    for alias in node.names:
                        if (alias.asname or alias.name) == name:
                            assert node.module is not None
                            module, name = node.module, alias.name
                            break
                    else:
                        continue
                    break
            else:
                return module
        return module


def _target_module(module: str, mapping: Dict[str, str]) -> str:
    """Our module's lightly module; raises for a module the manifest does not move."""
    if module in mapping:
        return mapping[module]
    raise TransformError(
        f"imports {module}, which upstream/manifest.py does not move: add a row for "
        "it, or keep the import out of the files that move"
    )


# typing names newer than lightly's oldest Python (3.7 in its CI): imported from
# typing_extensions, as lightly does itself (lightly/data/_image.py).
BACKPORTS = {"Literal": "typing_extensions", "Protocol": "typing_extensions"}


def _backport_typing(node: ast.ImportFrom) -> Tuple[int, int, str]:
    """The edit that imports the BACKPORTS names of ``from typing import ...``."""
    groups: Dict[str, List[str]] = {}
    for alias in node.names:
        entry = (
            alias.name if alias.asname is None else f"{alias.name} as {alias.asname}"
        )
        groups.setdefault(BACKPORTS.get(alias.name, "typing"), []).append(entry)
    indent = " " * node.col_offset
    statement = "".join(
        f"{indent}from {module} import {', '.join(names)}\n"
        for module, names in groups.items()
    )
    assert node.end_lineno is not None
    return node.lineno - 1, node.end_lineno, statement


def rewrite_imports(
    text: str,
    resolver: Resolver,
    mapping: Dict[str, str],
    rewrite_lightly: Sequence[str],
) -> str:
    """The text with lightly-er imports (and lightly package imports) rewritten.

    ``rewrite_lightly`` names the lightly packages whose re-exports are followed to
    their defining modules (those the patch adds to, such as ``lightly.loss``).
    """
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    edits: List[Tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == SOURCE_PACKAGE:
                    raise TransformError(
                        f"line {node.lineno}: 'import {alias.name}': use "
                        "'from ... import ...'"
                    )
            continue
        if not isinstance(node, ast.ImportFrom) or node.level != 0 or not node.module:
            continue
        if node.module == "typing" and any(a.name in BACKPORTS for a in node.names):
            edits.append(_backport_typing(node))
            continue
        top = node.module.split(".")[0]
        if top != SOURCE_PACKAGE and node.module not in rewrite_lightly:
            continue
        groups: Dict[str, List[str]] = {}
        if node.module in mapping:
            # A module (or a package with its __init__) that moves as a whole.
            entries = [
                a.name if a.asname is None else f"{a.name} as {a.asname}"
                for a in node.names
            ]
            groups[mapping[node.module]] = entries
        for alias in [] if node.module in mapping else node.names:
            local = alias.asname or alias.name
            submodule = f"{node.module}.{alias.name}"
            if resolver.is_module(submodule):
                target = (
                    _target_module(submodule, mapping)
                    if top == SOURCE_PACKAGE
                    else submodule
                )
                parent, _, last = target.rpartition(".")
                entry = (
                    last
                    if alias.asname is None and last == local
                    else f"{last} as {local}"
                )
                groups.setdefault(parent, []).append(entry)
                continue
            defining = resolver.defining_module(node.module, alias.name)
            if top == SOURCE_PACKAGE:
                defining = _target_module(defining, mapping)
            entry = alias.name if alias.asname is None else f"{alias.name} as {local}"
            groups.setdefault(defining, []).append(entry)
        indent = " " * node.col_offset
        statement = "".join(
            f"{indent}from {module} import {', '.join(names)}\n"
            for module, names in groups.items()
        )
        assert node.end_lineno is not None
        edits.append((node.lineno - 1, node.end_lineno, statement))
    for start, end, statement in sorted(edits, reverse=True):
        lines[start:end] = [statement]
    return "".join(lines)


# Between two words of a phrase: white space, or the end of one string literal and the
# start of the next (a message split over lines).
_SEPARATOR = r'(?:\s|"\s*\n\s*[rRfF]*")+'


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in phrase.split()]
    pattern = _SEPARATOR.join(words)
    if phrase.startswith(" "):
        pattern = _SEPARATOR + pattern
    return re.compile(pattern)


_PROSE = [(_phrase_pattern(old), new) for old, new in PROSE]
_REFERENCE = re.compile(rf"\b{SOURCE_PACKAGE}(?:\.\w+)+")


def rewrite_prose(text: str) -> str:
    """The phrases of manifest.PROSE replaced (they may span string literals)."""
    for pattern, new in _PROSE:
        text = pattern.sub(new, text)
    return text


_PROSE_IMPORT = re.compile(
    rf"\bfrom ({SOURCE_PACKAGE}(?:\.\w+)*) import (\w+(?:, \w+)*)"
)


def rewrite_references(
    text: str, resolver: Resolver, mapping: Dict[str, str], exports: Dict[str, str]
) -> str:
    """lightly-er names in prose (an example's import, ``lightly_er.loss.ERLoss``)
    to their lightly paths: an exported name to its package, anything else to the
    module that defines it."""

    def where(module: str, name: str) -> str:
        if module in mapping:
            # A module (or a package with its __init__) that moves: its names too.
            return mapping[module]
        if name in exports:
            return exports[name]
        return _target_module(resolver.defining_module(module, name), mapping)

    def example_import(match: re.Match[str]) -> str:
        module, names = match.group(1), match.group(2).split(", ")
        if resolver.is_module(f"{module}.{names[0]}") and len(names) == 1:
            parent, _, last = _target_module(
                f"{module}.{names[0]}", mapping
            ).rpartition(".")
            return f"from {parent} import {last}"
        targets = {where(module, name) for name in names}
        if len(targets) != 1:
            raise TransformError(
                f"'{match.group(0)}' imports from {sorted(targets)} in lightly: "
                "import them one module at a time"
            )
        return f"from {targets.pop()} import {', '.join(names)}"

    def reference(match: re.Match[str]) -> str:
        parts = match.group(0).split(".")
        # The longest prefix that is a module of ours, then the rest as attributes.
        for end in range(len(parts), 0, -1):
            module = ".".join(parts[:end])
            if resolver.is_module(module):
                break
        rest = parts[end:]
        if rest and module not in mapping:
            # A package that does not move as a whole: where the name lives.
            return ".".join([where(module, rest[0]), *rest])
        return ".".join([_target_module(module, mapping), *rest])

    text = _PROSE_IMPORT.sub(example_import, text)
    return _REFERENCE.sub(reference, text)


def _map_text_tokens(
    text: str, change: Callable[[str, bool], str], original: Optional[str] = None
) -> str:
    """Applies change(token_text, is_fstring) to every comment and string token.

    With ``original``, the prose lines of the result that are not lines of
    original and are too long are then broken (:func:`_wrap_lengthened`).
    """
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    edits = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in (tokenize.COMMENT, tokenize.STRING):
            continue
        start = offsets[token.start[0] - 1] + token.start[1]
        end = offsets[token.end[0] - 1] + token.end[1]
        prefix = re.match(r"[A-Za-z]*", token.string)
        is_f = (
            token.type == tokenize.STRING
            and "f" in (prefix.group(0) if prefix else "").lower()
        )
        new = change(token.string, is_f)
        if original is not None:
            line_start = offsets[token.start[0] - 1]
            before = text[line_start : line_start + token.start[1]]
            new = _wrap_lengthened(original, new, before)
        if new != token.string:
            edits.append((start, end, new))
    for start, end, new in reversed(edits):
        text = text[:start] + new + text[end:]
    return text


LINE_LENGTH = 88


def _wrap_lengthened(original: str, new: str, before: str) -> str:
    """new with the prose lines that the rewrite made too long broken at a space.

    Only lines of a docstring or of a comment on its own line are broken, and only
    those that are not lines of ``original`` (our file) and are longer than
    LINE_LENGTH; what was long in our file stays as it was.
    """
    is_comment = new.startswith("#")
    if is_comment and before.strip():
        return new  # a comment after code
    if not is_comment and not new.lstrip("rRbBuUfF").startswith(('"""', "'''")):
        return new  # a message or other one-line string
    old_lines = set(original.splitlines())
    out = []
    for number, line in enumerate(new.split("\n")):
        prefix = before if number == 0 else ""
        # A docstring's summary line stays one line (lightly's pydocstyle rules).
        summary = number == 0 and not is_comment
        while (
            not summary
            and prefix + line not in old_lines
            and len(prefix) + len(line) > LINE_LENGTH
            and not line.lstrip().startswith((">>>", "..."))
        ):
            limit = LINE_LENGTH - len(prefix)
            cut = line.rfind(" ", 0, limit + 1)
            indent = (prefix + line)[
                : len(prefix + line) - len((prefix + line).lstrip())
            ]
            if cut <= len(indent) - len(prefix):
                break  # no space to break at
            head, line = line[:cut].rstrip(), line[cut + 1 :]
            out.append(head)
            line = indent + ("# " if is_comment else "") + line
            prefix = ""
        out.append(line)
    return "\n".join(out)


def _outside_braces(text: str, change: Callable[[str], str]) -> str:
    """change() applied to the literal parts of an f-string, not its expressions."""
    out, depth, literal = [], 0, []
    i = 0
    while i < len(text):
        char = text[i]
        if depth == 0 and text.startswith("{{", i):
            literal.append("{{")
            i += 2
            continue
        if char == "{":
            if depth == 0:
                out.append(change("".join(literal)))
                literal = []
            depth += 1
            out.append(char)
        elif char == "}" and depth > 0:
            depth -= 1
            out.append(char)
        elif depth > 0:
            out.append(char)
        else:
            literal.append(char)
        i += 1
    out.append(change("".join(literal)))
    return "".join(out)


def names_outside_imports(text: str) -> List[str]:
    """The NAME tokens of text, in order, leaving out import statements."""
    tree = ast.parse(text)
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            assert node.end_lineno is not None
            skip.update(range(node.lineno, node.end_lineno + 1))
    return [
        token.string
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type == tokenize.NAME and token.start[0] not in skip
    ]


def transform(
    source: Path, lightly_root: Path, rewrite_lightly: Sequence[str], repo_root: Path
) -> str:
    """The text of our library file ``source`` as it goes into lightly."""
    relative = source.relative_to(repo_root).as_posix()
    resolver = Resolver({SOURCE_PACKAGE: repo_root, "lightly": lightly_root})
    mapping = module_map()
    original = source.read_text(encoding="utf-8")
    try:
        text = rewrite_imports(original, resolver, mapping, rewrite_lightly)
        text = rewrite_prose(text)
        exports = exported_names()

        def change(token: str, is_fstring: bool) -> str:
            def words(part: str) -> str:
                return spelling.americanize(
                    rewrite_references(part, resolver, mapping, exports)
                )

            return _outside_braces(token, words) if is_fstring else words(token)

        text = _map_text_tokens(text, change)
        # Longer names and lightly's doc references lengthen some prose lines.
        text = _map_text_tokens(text, lambda token, _: token, original=original)
    except TransformError as error:
        raise TransformError(f"{relative}: {error}") from None
    if names_outside_imports(text) != names_outside_imports(original):
        raise TransformError(f"{relative}: an identifier changed in the rewrite")
    leftover = re.search(r"lightly_er|lightly-er|docs/\w+\.md", text)
    if leftover:
        line = text[: leftover.start()].count("\n") + 1
        raise TransformError(
            f"{relative}:{line}: '{leftover.group(0)}' has no lightly counterpart: "
            "add the phrase to PROSE in upstream/manifest.py"
        )
    return text
