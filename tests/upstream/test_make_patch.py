"""The patch generator on a lightly-shaped tree that the test builds itself.

CI cannot reach lightly's repository, so the tree is the installed lightly package
plus stubs at lightly's paths (upstream/stub_tree.py). For every pull request of
the series: its patch applies with ``git am`` on a fresh clone on top of the ones
before it, it touches only its manifest paths, its files are copies (nothing but
the module map changes), nothing of lightly-er or its research options is sent,
and lightly's ruff settings and the series' tests pass.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

from tests.upstream.test_plugin_only import research_mentions
from upstream import examples, manifest
from upstream.make_patch import (
    BRANCH_PREFIX,
    PatchError,
    copy_text,
    make_patch,
    map_module,
)
from upstream.stub_tree import build_lightly_tree, git

ROOT = Path(__file__).resolve().parents[2]
KEYS = [pr.key for pr in manifest.PULL_REQUESTS]


class Series(NamedTuple):
    tree: Path
    fresh: Path
    base: str
    patches: Dict[str, List[Path]]
    changed: Dict[str, List[str]]  # key -> paths the pull request changes


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Series]:
    tmp = tmp_path_factory.mktemp("upstream")
    tree = build_lightly_tree(tmp / "lightly")
    base = git(tree, "rev-parse", "HEAD")
    patches = make_patch(tree, tmp / "series")
    # A fresh clone at the base, each pull request applied by git am in order.
    fresh = tmp / "fresh"
    subprocess.run(["git", "clone", "--quiet", str(tree), str(fresh)], check=True)
    git(fresh, "config", "user.name", "test")
    git(fresh, "config", "user.email", "test@example.com")
    git(fresh, "checkout", "--quiet", "-b", "review", base)
    changed = {}
    for key in KEYS:
        before = git(fresh, "rev-parse", "HEAD")
        git(fresh, "am", "--quiet", *[str(p) for p in patches[key]])
        changed[key] = git(fresh, "diff", "--name-only", f"{before}..HEAD").split()
    yield Series(tree, fresh, base, patches, changed)


def test_one_patch_per_pull_request_titled_as_the_manifest(series: Series) -> None:
    assert list(series.patches) == KEYS
    assert all(len(p) == 1 for p in series.patches.values())
    subjects = git(series.fresh, "log", "--format=%s", f"{series.base}..HEAD")
    assert subjects.splitlines() == [pr.title for pr in manifest.PULL_REQUESTS][::-1]
    for pr in manifest.PULL_REQUESTS:
        text = series.patches[pr.key][0].read_text()
        assert "arxiv.org/abs/2307.10907" in text and "## Tests" in text


@pytest.mark.parametrize("key", KEYS)
def test_git_am_gives_each_branch(series: Series, key: str) -> None:
    # The clone after pull request `key` has the tree of the generator's branch.
    index = KEYS.index(key)
    commit = git(series.fresh, "rev-list", "--reverse", f"{series.base}..HEAD")
    commit = commit.splitlines()[index]
    assert git(series.fresh, "rev-parse", f"{commit}^{{tree}}") == git(
        series.tree, "rev-parse", f"{BRANCH_PREFIX}{key}^{{tree}}"
    )


@pytest.mark.parametrize("pr", manifest.PULL_REQUESTS, ids=KEYS)
def test_each_pull_request_touches_only_its_paths(
    series: Series, pr: manifest.PullRequest
) -> None:
    allowed = {target for _, target in pr.files} | set(_example_paths(pr))
    if pr.examples:
        allowed |= {examples.MODELS_RST, examples.LOSS_RST}
    if pr.exports:
        allowed.add("lightly/loss/__init__.py")
    if pr.key == "debug-typing":
        allowed |= {"lightly/utils/debug.py", "pyproject.toml"}
    assert set(series.changed[pr.key]) <= allowed
    assert {target for _, target in pr.files} <= set(series.changed[pr.key])
    assert set(_example_paths(pr)) <= set(series.changed[pr.key])


def _example_paths(pr: manifest.PullRequest) -> List[str]:
    paths = []
    for example in pr.examples:
        paths += [examples.example_path(lay, example.method, True) for lay in LAYOUTS]
        paths.append(examples.page_path(example))
    return paths


LAYOUTS = examples.LAYOUTS
METHOD_PRS = [pr for pr in manifest.PULL_REQUESTS if pr.key != "debug-typing"]


@pytest.mark.parametrize("pr", METHOD_PRS, ids=[pr.key for pr in METHOD_PRS])
def test_each_method_has_examples_in_three_layouts_and_a_docs_page(
    series: Series, pr: manifest.PullRequest
) -> None:
    assert pr.examples
    for example in pr.examples:
        for layout in LAYOUTS:
            parent = series.fresh / examples.example_path(layout, example.method, False)
            ours = series.fresh / examples.example_path(layout, example.method, True)
            text = ours.read_text()
            # lightly's script with only the class swapped (and a comment header),
            # and the example's arguments in the constructor call.
            body = "\n".join(
                line for line in text.splitlines() if not line.startswith("#")
            )
            expected = re.sub(
                rf"\b{example.parent}\b", example.er_class, parent.read_text()
            )
            if example.arguments:
                call = f"{example.er_class}({example.arguments})"
                expected = expected.replace(f"{example.er_class}()", call)
                assert call in text
            assert body.strip() == expected.strip()
            assert f"import {example.er_class}" in text
            compile(text, str(ours), "exec")
        page = (series.fresh / examples.page_path(example)).read_text()
        includes = re.findall(r"literalinclude:: \.\./\.\./\.\./(\S+)", page)
        assert includes == [
            examples.example_path(layout, example.method, True) for layout in LAYOUTS
        ]
        assert "arxiv.org/abs/2307.10907" in page
        if example.arguments:
            assert f"(with ``{example.arguments}``)" in page
        models = (series.fresh / examples.MODELS_RST).read_text()
        assert f"    {example.method}_er.rst\n" in models
        api = (series.fresh / examples.LOSS_RST).read_text()
        assert (
            f".. autoclass:: {example.er_module}.{example.er_class}\n   :members:"
            in api
        )


def test_example_edits_fail_loudly_on_unexpected_text() -> None:
    example = manifest.PULL_REQUESTS[1].examples[0]
    with pytest.raises(examples.ExampleError, match="does not name NTXentLoss"):
        examples.derive_example("criterion = Other()\n", example, "pytorch")
    byol = manifest.PULL_REQUESTS[2].examples[0]
    assert byol.arguments == 'prediction="x0"'
    with pytest.raises(examples.ExampleError, match="does not call"):
        examples.derive_example(
            "from lightly.loss import NegativeCosineSimilarity\n", byol, "pytorch"
        )
    derived = examples.derive_example(
        "c = NegativeCosineSimilarity()\nd = NegativeCosineSimilarity(dim=1)\n",
        byol,
        "pytorch",
    )
    assert 'c = ERNegativeCosineSimilarity(prediction="x0")\n' in derived
    assert 'd = ERNegativeCosineSimilarity(prediction="x0", dim=1)\n' in derived
    with pytest.raises(examples.ExampleError, match="simclr.rst"):
        examples.edit_models_rst("   byol.rst\n", example)
    with pytest.raises(examples.ExampleError, match="NTXentLoss"):
        examples.edit_loss_rst(".. autoclass:: x.Y\n   :members:\n", example)


def test_lightly_gets_only_the_estimators_that_the_losses_call() -> None:
    import lightly_er.functional as functional

    init = "upstream/files/lightly/utils/entropy_reconstruction/__init__.py"
    sent = ast.literal_eval(
        next(
            node.value
            for node in ast.parse((ROOT / init).read_text()).body
            if isinstance(node, ast.Assign)
            and getattr(node.targets[0], "id", "") == "__all__"
        )
    )
    assert set(sent) <= set(functional.__all__)
    targets = {target for pr in manifest.PULL_REQUESTS for _, target in pr.files}
    for module in ("_diagnostics", "_prototypes"):
        assert f"lightly/utils/entropy_reconstruction/{module}.py" not in targets


@pytest.mark.parametrize("pr", manifest.PULL_REQUESTS, ids=KEYS)
def test_files_are_copies_up_to_the_module_map(
    series: Series, pr: manifest.PullRequest
) -> None:
    for source, target in pr.files:
        ours = (ROOT / source).read_text()
        theirs = (series.fresh / target).read_text()
        assert "lightly_er" not in theirs and "experimental" not in theirs, target
        # Same statements once the module paths are mapped (ruff may re-sort
        # the imports and rewrap lines).
        assert _statements(theirs) == _statements(copy_text(source)), target
        if "import" not in ours:
            assert theirs == ours


def _statements(text: str) -> List[str]:
    """The module's statements other than imports and docstrings.

    lightly's ruff sorts and merges imports and formats docstring examples.
    """
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body.pop(0)
    body = tree.body
    return [
        ast.dump(node)
        for node in body
        if not isinstance(node, (ast.Import, ast.ImportFrom))
    ]


def test_no_research_option_is_sent(series: Series) -> None:
    sent = " ".join(
        (series.fresh / path).read_text()
        for paths in series.changed.values()
        for path in paths
        if path.startswith("lightly/loss/")
    )
    for option in ("learn_kappa", "memory_size", "EntropyEstimator", "estimator: "):
        assert option not in sent


def test_no_research_estimator_is_sent(series: Series) -> None:
    # Every line the series adds (library files, tests, examples, docs pages and
    # the descriptions): the plug-in estimate only (tests/upstream/test_plugin_only.py).
    for key, paths in series.patches.items():
        for path in paths:
            added = "\n".join(
                line[1:]
                for line in path.read_text().splitlines()
                if line.startswith("+") and not line.startswith("+++")
            )
            assert research_mentions(added) == [], key


def test_module_map_and_copy_refuse_what_lightly_lacks(tmp_path: Path) -> None:
    assert map_module("lightly_er.loss._core.dino_er_loss.ERDINOLoss") == (
        "lightly.loss.dino_er_loss.ERDINOLoss"
    )
    assert map_module("lightly_er.functional._sphere") == (
        "lightly.utils.entropy_reconstruction._sphere"
    )
    with pytest.raises(PatchError, match="MODULE_MAP"):
        map_module("lightly_er.experimental.EntropyEstimator")
    with pytest.raises(PatchError, match="lightly_er/loss/ntx_ent_er_loss.py:7"):
        copy_text("lightly_er/loss/ntx_ent_er_loss.py")  # the research class


def test_series_tests_pass_against_installed_lightly(series: Series) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/loss",
            "tests/utils",
        ],
        cwd=series.fresh,
        env={
            "PYTHONPATH": str(series.fresh),
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_series_ddp_tests_pass_on_a_gloo_pool(series: Series) -> None:
    # lightly's `make test-distributed`: the DDP-marked tests on a 2-process pool.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-m", "DDP"]
        + ["tests/loss", "tests/utils"],
        cwd=series.fresh,
        env={
            "PYTHONPATH": str(series.fresh),
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
            "USE_PYTEST_POOL": "1",
            "STUB_DDP_PORT": str(20000 + os.getpid() % 20000),
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Every loss of the series has its gather_distributed test on the pool.
    losses = ("ntx_ent_er_loss", "negative_cosine_similarity_er", "dino_er_loss")
    for loss in (*losses, "swav_er_loss"):
        assert re.search(rf"test_{loss}\.py::\S+ PASSED", result.stdout), loss
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed is not None and int(passed.group(1)) >= 8, result.stdout[-2000:]


def test_lightly_ruff_settings_pass(series: Series) -> None:
    python = [p for ps in series.changed.values() for p in ps if p.endswith(".py")]
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [ruff, *command, *python], cwd=series.fresh, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_debug_py_is_typed_in_its_own_first_pull_request(series: Series) -> None:
    path = "lightly/utils/debug.py"
    assert series.changed["debug-typing"] == [path]
    before = git(series.fresh, "show", f"{series.base}:{path}")
    after = (series.fresh / path).read_text()
    assert _untyped_defs(before) and _untyped_plt_fallbacks(before)
    assert _untyped_defs(after) == [] and _untyped_plt_fallbacks(after) == []
    assert ast.dump(_without_annotations(after)) == ast.dump(
        _without_annotations(before)
    )


def test_refuses_existing_branches(series: Series) -> None:
    git(series.tree, "checkout", "--quiet", "master")
    with pytest.raises(PatchError, match="exists"):
        make_patch(series.tree, series.tree.parent / "again")


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
    for item in ast.walk(tree):
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            item.returns = None
            for arg in item.args.posonlyargs + item.args.args + item.args.kwonlyargs:
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
