"""The patch generator on a lightly-shaped tree that the test builds itself.

CI cannot reach lightly's repository, so the tree is the installed lightly package
plus stubs at lightly's paths (tests/, docs/source/, pyproject.toml with lightly's
ruff settings). The series must apply with ``git am`` to a fresh clone, touch only
the manifest's paths, change no identifier, leave no British spelling, and its
tests and docstring examples must pass against the installed lightly.
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tokenize
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

from upstream import manifest, spelling, transform
from upstream.make_patch import PatchError, make_patch
from upstream.stub_tree import build_lightly_tree, git

ROOT = Path(__file__).resolve().parents[2]
# Names the typing module gained in Python 3.8 (lightly's CI runs 3.7).
TYPING_SINCE_38 = {"Final", "Literal", "Protocol", "TypedDict", "final"}


class Series(NamedTuple):
    tree: Path
    fresh: Path
    patches: List[Path]
    base: str
    changed: List[str]


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Series]:
    tmp = tmp_path_factory.mktemp("upstream")
    tree = build_lightly_tree(tmp / "lightly")
    base = git(tree, "rev-parse", "HEAD")
    patches = make_patch(
        tree,
        tmp / "series",
        author="test <test@example.com>",
        date="2026-01-01T00:00:00Z",
    )
    # A fresh clone at the base revision, with the series applied by git am.
    fresh = tmp / "fresh"
    subprocess.run(["git", "clone", "--quiet", str(tree), str(fresh)], check=True)
    git(fresh, "checkout", "--quiet", "-b", "review", base)
    git(fresh, "am", "--quiet", *[str(p) for p in patches[1:]])
    changed = git(fresh, "diff", "--name-only", f"{base}..HEAD").splitlines()
    yield Series(tree, fresh, patches, base, changed)


def test_series_is_one_commit_per_group_with_a_cover_letter(series: Series) -> None:
    names = [p.name for p in series.patches]
    assert names[0] == "0000-cover-letter.patch"
    assert len(names) == 1 + len(manifest.COMMITS)
    subjects = git(series.fresh, "log", "--format=%s", f"{series.base}..HEAD")
    expected = [m.split("\n")[0] for m in manifest.COMMITS.values()]
    assert subjects.splitlines() == expected[::-1]
    cover = series.patches[0].read_text()
    assert "Add entropy and reconstruction (ER) objectives" in cover
    assert manifest.RELEASE_NOTE.split(",")[0] in cover


def test_git_am_gives_the_generators_tree(series: Series) -> None:
    assert git(series.fresh, "rev-parse", "HEAD^{tree}") == git(
        series.tree, "rev-parse", "er-objectives^{tree}"
    )


def test_only_the_manifests_paths_change(series: Series) -> None:
    allowed = {row.target for row in manifest.FILES} | set(manifest.EDITED)
    assert set(series.changed) == allowed


def _prose(text: str) -> str:
    """Comments and string literals of Python source."""
    return "\n".join(
        token.string
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type in (tokenize.COMMENT, tokenize.STRING)
    )


def test_no_british_spelling_remains(series: Series) -> None:
    found: Dict[str, List[str]] = {}
    for path in series.changed:
        text = (series.fresh / path).read_text()
        words = spelling.british_words(_prose(text) if path.endswith(".py") else text)
        if words:
            found[path] = words
    assert found == {}


def test_no_identifier_changed(series: Series) -> None:
    for row in manifest.FILES:
        if not row.source.startswith("lightly_er/"):
            continue
        ours = (ROOT / row.source).read_text()
        theirs = (series.fresh / row.target).read_text()
        assert transform.names_outside_imports(
            theirs
        ) == transform.names_outside_imports(ours), row.target


def test_no_lightly_er_left(series: Series) -> None:
    for path in series.changed:
        text = (series.fresh / path).read_text()
        assert "lightly_er" not in text and "lightly-er" not in text, path


def test_no_typing_name_newer_than_lightlys_python(series: Series) -> None:
    for path in series.changed:
        if not path.endswith(".py"):
            continue
        for node in ast.walk(ast.parse((series.fresh / path).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "typing":
                names = {alias.name for alias in node.names}
                assert not names & TYPING_SINCE_38, (path, node.lineno)


def test_typing_backports_are_split_off() -> None:
    text = "from typing import Dict, Literal as L, Protocol\n\nx: L['a']\n"
    resolver = transform.Resolver({})
    rewritten = transform.rewrite_imports(text, resolver, {}, [])
    assert rewritten == (
        "from typing import Dict\n"
        "from typing_extensions import Literal as L, Protocol\n\nx: L['a']\n"
    )


def _untyped_defs(text: str) -> List[str]:
    """Functions with an argument or the return unannotated (mypy's no-untyped-def)."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            if node.returns is None or any(a.annotation is None for a in args):
                found.append(node.name)
    return found


def _untyped_plt_fallbacks(text: str) -> List[int]:
    """Lines that assign to plt without silencing mypy's [assignment] there."""
    lines = text.splitlines()
    return [
        node.lineno
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "plt" for t in node.targets)
        and not lines[node.lineno - 1].endswith("# type: ignore[assignment]")
    ]


def test_debug_py_is_typed_in_its_own_first_commit(series: Series) -> None:
    # The meter imports lightly.utils.debug, so lightly's mypy checks that module
    # (excluded in its config) and rejects its 4 untyped spots.
    path = "lightly/utils/debug.py"
    before = git(series.fresh, "show", f"{series.base}:{path}")
    after = (series.fresh / path).read_text()
    assert _untyped_defs(before) and _untyped_plt_fallbacks(before)  # the stand-in's
    assert _untyped_defs(after) == []
    assert _untyped_plt_fallbacks(after) == []
    first = git(series.fresh, "rev-list", "--reverse", f"{series.base}..HEAD")
    first = first.splitlines()[0]
    assert git(series.fresh, "show", "--name-only", "--format=", first) == path
    assert "from matplotlib.figure import Figure" in after  # the return's type
    # Only annotations: the same statements once they are stripped.
    assert ast.dump(_without_annotations(after)) == ast.dump(
        _without_annotations(before)
    )


def _without_annotations(text: str) -> ast.Module:
    tree = ast.parse(text)
    body = []
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "typing":
            continue
        body.append(node)
    tree.body = body
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
                arg.annotation = None
    return tree


DEBUG_PY = """\
from PIL import Image

try:
    import matplotlib.pyplot as plt
except ModuleNotFoundError:
    plt = ModuleNotFoundError(
        "Matplotlib is not installed."
    )
except ImportError as ex:
    plt = ex


def apply_transform_without_normalize(
    image: Image.Image,
    transform,
) -> Image.Image:
    return image


def plot_augmented_images(
    input_images: int,
):
    return plt.figure()
"""


def test_debug_py_edit_fails_loudly_on_unexpected_text() -> None:
    from upstream.make_patch import edit_debug_py

    edited = edit_debug_py(DEBUG_PY)
    assert _untyped_defs(edited) == [] and _untyped_plt_fallbacks(edited) == []
    with pytest.raises(PatchError, match="debug.py.*plt = ex"):
        edit_debug_py(DEBUG_PY.replace("    plt = ex\n", "    plt = None\n"))
    with pytest.raises(PatchError, match="debug.py.*transform"):
        edit_debug_py(DEBUG_PY.replace("    transform,\n", "    t,\n"))
    with pytest.raises(PatchError, match="plot_augmented_images"):
        edit_debug_py(DEBUG_PY.replace("\n):\n", "\n) -> None:\n"))
    with pytest.raises(PatchError, match="debug.py"):
        edit_debug_py(edited)  # typed already (say, by lightly): no second edit


def test_exports_and_docs_entries(series: Series) -> None:
    init = (series.fresh / "lightly/loss/__init__.py").read_text()
    assert "from lightly.loss.er_loss import ERLoss\n" in init
    loss_rst = (series.fresh / "docs/source/lightly.loss.rst").read_text()
    assert loss_rst.index("dino_er_loss.ERDINOLoss") < loss_rst.index(
        "dino_loss.DINOLoss"
    )
    assert loss_rst.index("ntx_ent_er_loss") < loss_rst.index("ntx_ent_loss.NTXentLoss")
    index = (series.fresh / "docs/source/index.rst").read_text()
    advanced = index.index(":caption: Advanced")
    assert index.index(manifest.DOCS_PAGE) > advanced
    assert index.index(manifest.DOCS_PAGE) < index.index(":caption: Python API")
    utils_rst = (series.fresh / "docs/source/lightly.utils.rst").read_text()
    assert ".. automodule:: lightly.utils.entropy_reconstruction" in utils_rst


def test_generated_tests_and_examples_pass_against_installed_lightly(
    series: Series,
) -> None:
    library = [
        p for p in series.changed if p.startswith("lightly/") and p.endswith(".py")
    ]
    tests = [p for p in series.changed if p.startswith("tests/")]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            "--doctest-modules",
            "-o",
            "doctest_optionflags=ELLIPSIS NORMALIZE_WHITESPACE",
            *library,
            *tests,
        ],
        cwd=series.fresh,
        env={**os.environ, "PYTHONPATH": str(series.fresh), "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_lightly_ruff_settings_pass(series: Series) -> None:
    # The stand-in's pyproject.toml holds lightly's ruff settings (pydocstyle rules
    # that no formatter fixes: a broken docstring line would fail D209 here).
    python = [p for p in series.changed if p.endswith(".py")]
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [ruff, *command, *python], cwd=series.fresh, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_refuses_an_existing_branch(series: Series) -> None:
    git(series.tree, "checkout", "--quiet", "master")
    with pytest.raises(PatchError, match="exists"):
        make_patch(series.tree, series.tree.parent / "again")


def test_unmapped_import_names_the_manifest(tmp_path: Path) -> None:
    source = tmp_path / "lightly_er" / "loss" / "x_er_loss.py"
    source.parent.mkdir(parents=True)
    source.write_text("from lightly_er.benchmarks_only import thing\n")
    with pytest.raises(transform.TransformError, match="manifest"):
        transform.transform(source, tmp_path, ["lightly.loss"], tmp_path)


def test_americanize_keeps_identifiers_and_capitals() -> None:
    text = "Normalises the centred rows; see num_centres and .normalise(x)."
    assert spelling.americanize(text) == (
        "Normalizes the centered rows; see num_centres and .normalise(x)."
    )
    assert spelling.british_words("the behaviour of the optimiser") == [
        "behaviour",
        "optimiser",
    ]
    assert spelling.british_words("a flavour of string and docstring") == ["flavour"]


def test_lengthened_prose_lines_are_broken_and_others_kept() -> None:
    # A docstring token as tokenize gives it: from its quotes, indented by before.
    original = '"""Short.\n\n    See docs/objectives.md for the choices.\n    """'
    long_line = "    See " + "word " * 20 + "end."
    docstring = '"""Short.\n\n' + long_line + "\n    >>> " + "x" * 90 + '\n    """'
    wrapped = transform._wrap_lengthened(original, docstring, "    ")
    lines = wrapped.splitlines()
    assert all(len(line) <= 88 for line in lines if ">>>" not in line)
    assert any(">>> " + "x" * 90 in line for line in lines)  # code is never broken
    assert " ".join(w for line in lines[2:-2] for w in line.split()) == " ".join(
        long_line.split()
    )
    # A line that was long in our file already is left as it is.
    assert transform._wrap_lengthened(docstring, docstring, "    ") == docstring
    # Nor is a docstring's summary line, however long the rewrite made it.
    summary = '"""' + "word " * 20 + '"""'
    assert transform._wrap_lengthened("", summary, "    ") == summary
    # A message (not a docstring) is never broken.
    message = '"' + "word " * 30 + '"'
    assert transform._wrap_lengthened("", message, "    raise ValueError(") == message


def test_check_patch_reads_pytest_and_the_series(tmp_path: Path) -> None:
    from upstream import check_patch

    output = "x\nFAILED tests/loss/test_a.py::TestA::test_b[1-2] - assert 1 == 2\n"
    output += "ERROR tests/utils/test_c.py - ImportError\n2 failed, 3 passed\n"
    output += "FAILED tests/loss/test_a.py::TestA::test_b[1-2] - assert 1 == 2\n"
    assert check_patch._failed_ids(output) == [
        "tests/loss/test_a.py::TestA::test_b[1-2]",
        "tests/utils/test_c.py",
    ]
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite tests="10" failures="2" errors="1" skipped="3"/>'
        "</testsuites>"
    )
    assert check_patch._junit_counts(report) == (4, 2, 1, 3)
    files = [
        "lightly/loss/er_loss.py",
        "lightly/utils/entropy_reconstruction/_sphere.py",
        "docs/source/getting_started/entropy_reconstruction.rst",
        "docs/source/index.rst",
        "tests/loss/test_er_loss.py",
    ]
    assert check_patch._series_names(files) == [
        "getting_started/entropy_reconstruction.rst",
        "lightly.loss.er_loss",
        "lightly.utils.entropy_reconstruction._sphere",
    ]
    (tmp_path / "tests" / "loss").mkdir(parents=True)
    (tmp_path / "tests" / "utils").mkdir()
    checker = check_patch.Checker(tmp_path, Path(sys.executable), "base", files)
    assert checker.test_folders() == ["tests/loss", "tests/utils"]
