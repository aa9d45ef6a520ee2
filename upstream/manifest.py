"""What goes into lightly, as a series of pull requests: the table the generator reads.

Files are copied as they are. The one rewrite is :data:`MODULE_MAP`: a dotted name
``lightly_er.x.y`` (in an import, a docstring example or a cross-reference) becomes
the lightly module it is copied to. A file that still names anything else of
lightly-er (another module, a docs/*.md page) stops the generator: fix the source.

Each :class:`PullRequest` is one branch on top of the one before it; its files are
(source in this repository, target in lightly). Library files come from
``lightly_er/``; the tests written in lightly's style come from ``upstream/files/``.
The research options (``lightly_er.experimental``) are never sent: the losses sent
are the core classes of ``lightly_er/loss/_core/``.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Tuple

from upstream.examples import Example

_ER = "lightly.utils.entropy_reconstruction"

# lightly-er module -> lightly module. The longest matching prefix wins.
MODULE_MAP: Dict[str, str] = {
    "lightly_er.functional": _ER,
    "lightly_er.utils._checks": "lightly.utils.er_checks",
    "lightly_er.utils.dist": "lightly.utils.er_dist",
    "lightly_er.utils.compat": "lightly.utils.er_compat",
    "lightly_er.loss._base": "lightly.loss._er_base",
    "lightly_er.loss._terms": "lightly.loss._er_terms",
    "lightly_er.loss._core": "lightly.loss",
    "lightly_er.loss": "lightly.loss",
}

# The estimator modules SimCLR-ER and the later losses call: the plug-in vMF kernel
# entropy (the authors' settings, the self-term kept), the vMF reconstruction, the
# discrete terms, the log-normalizer and the input checks. Not sent: the functional
# package's own __init__ (lightly gets upstream/files' one, which exports only what
# is sent); the research estimators of lightly_er.experimental (_sphere: the
# ``estimator`` choice; _kernel_estimators: joe, renyi2, leave-one-out, a memory's
# mask; _samples: knn, logdet); and the label-free diagnostics (_diagnostics,
# _prototypes: RankMe, LiDAR, effective rank, prototype usage), which no loss calls.
_FUNCTIONAL = (
    "_checks",
    "_discrete",
    "_kde",
    "_special",
    "_vmf",
)


_DOCS = (
    "[x] Examples in examples/{pytorch,pytorch_lightning,pytorch_lightning_distributed}\n"
    "  (lightly's example of the parent method, the loss class swapped), a page in\n"
    "  docs/source/examples and the class in docs/source/lightly.loss.rst.\n"
    "  Notebooks not regenerated (make generate-example-notebooks)."
)


def _example(
    method: str,
    title: str,
    parent: str,
    er_class: str,
    module: str,
    note: str,
    arguments: str = "",
) -> Example:
    parent_module = {
        "NTXentLoss": "ntx_ent_loss",
        "NegativeCosineSimilarity": "negative_cosine_similarity",
        "DINOLoss": "dino_loss",
        "SwaVLoss": "swav_loss",
    }[parent]
    return Example(
        method,
        title,
        parent,
        er_class,
        f"lightly.loss.{module}",
        f"lightly.loss.{parent_module}",
        note,
        arguments,
    )


class PullRequest(NamedTuple):
    """One pull request of the series.

    Attributes:
        key: Short name; the branch is ``er/<key>``.
        title: The pull request's title and commit subject (lightly's prefixes).
        files: (source, target) pairs copied into lightly.
        exports: Names the pull request adds to ``lightly/loss/__init__.py``, as
            (module in lightly, name) pairs.
        description: The pull request's description (lightly's template).
        examples: The methods whose examples (lightly's three layouts, the parent
            class swapped) and docs page the pull request adds
            (upstream/examples.py).
    """

    key: str
    title: str
    files: Tuple[Tuple[str, str], ...]
    exports: Tuple[Tuple[str, str], ...]
    description: str
    examples: Tuple[Example, ...] = ()


def _template(what: str, tests: str, docs: str = _DOCS) -> str:
    """A description in the shape of lightly's PR_template_minimal.md."""
    return (
        "## Description\n"
        f"{what}\n\n"
        "Reference: Rodriguez-Galvez et al., The Role of Entropy and Reconstruction\n"
        "in Multi-View Self-Supervised Learning, ICML 2023,\n"
        "https://arxiv.org/abs/2307.10907\n\n"
        "## Documentation\n"
        "- [x] Docstrings with Args/Raises/Examples on every public class.\n"
        f"- {docs}\n\n"
        "## Tests\n"
        f"- [x] {tests}\n"
    )


def _loss(name: str) -> Tuple[str, str]:
    return (f"lightly_er/loss/_core/{name}.py", f"lightly/loss/{name}.py")


def _written(path: str) -> Tuple[str, str]:
    return (f"upstream/files/{path}", path)


PULL_REQUESTS: Tuple[PullRequest, ...] = (
    PullRequest(
        key="debug-typing",
        title="fix(utils): type debug.py and check it with mypy",
        files=(),
        exports=(),
        description=_template(
            "Adds the missing type annotations to lightly/utils/debug.py (the\n"
            "matplotlib fallback, apply_transform_without_normalize's transform, the\n"
            "figure of plot_augmented_images) and removes the file from mypy's\n"
            "exclude list. No change in behavior. Independent of the rest of the\n"
            "series; reviewed first because it is the smallest.",
            "make type-check; tests/utils/test_debug.py unchanged and passing.",
            docs="[ ] No docs or examples: typing only, no change in behavior.",
        ),
    ),
    PullRequest(
        key="simclr-er",
        title="feat(loss): add ERNTXentLoss (SimCLR-ER, MoCo-ER) and the ER estimators",
        files=(
            *(
                (
                    f"lightly_er/functional/{m}.py",
                    f"lightly/utils/entropy_reconstruction/{m}.py",
                )
                for m in _FUNCTIONAL
            ),
            _written("lightly/utils/entropy_reconstruction/__init__.py"),
            ("lightly_er/utils/_checks.py", "lightly/utils/er_checks.py"),
            ("lightly_er/utils/dist.py", "lightly/utils/er_dist.py"),
            ("lightly_er/utils/compat.py", "lightly/utils/er_compat.py"),
            ("lightly_er/loss/_base.py", "lightly/loss/_er_base.py"),
            ("lightly_er/loss/_terms.py", "lightly/loss/_er_terms.py"),
            _loss("ntx_ent_er_loss"),
            _written("tests/utils/test_entropy_reconstruction.py"),
            _written("tests/loss/test_ntx_ent_er_loss.py"),
        ),
        exports=(
            ("lightly.loss._er_base", "ERComponents"),
            ("lightly.loss.ntx_ent_er_loss", "ERNTXentLoss"),
        ),
        description=_template(
            "Adds ERNTXentLoss, a drop-in subclass of NTXentLoss that optimizes the\n"
            "entropy-and-reconstruction (ER) bound instead of InfoNCE: the same\n"
            "constructor arguments plus kappa and entropy_weight, the same forward.\n"
            "The estimators it uses (the plug-in vMF kernel-density entropy, the vMF\n"
            "reconstruction, the exact log-normalizer) are pure functions in\n"
            "lightly.utils.entropy_reconstruction, with their argument checks\n"
            "(lightly.utils.er_checks) and a gather with gradient\n"
            "(lightly.utils.er_dist).",
            "tests/utils/test_entropy_reconstruction.py (NumPy float64 references,\n"
            "closed forms) and tests/loss/test_ntx_ent_er_loss.py, with a DDP-marked\n"
            "  test of gather_distributed (make test-distributed).",
        ),
        examples=(
            _example(
                "simclr",
                "SimCLR-ER",
                "NTXentLoss",
                "ERNTXentLoss",
                "ntx_ent_er_loss",
                "kappa, the concentration of the von Mises-Fisher densities, is\n"
                "1 / temperature, so the reconstruction term is NTXentLoss's positive\n"
                "term; the entropy of the batch replaces its negatives. The\n"
                "distributed example gathers the batch for the entropy\n"
                "(``gather_distributed=True``), as NTXentLoss gathers its negatives.",
            ),
        ),
    ),
    PullRequest(
        key="byol-er",
        title="feat(loss): add ERNegativeCosineSimilarity (BYOL-ER, SimSiam-ER)",
        files=(
            _loss("negative_cosine_similarity_er"),
            _written("tests/loss/test_negative_cosine_similarity_er.py"),
        ),
        exports=(
            (
                "lightly.loss.negative_cosine_similarity_er",
                "ERNegativeCosineSimilarity",
            ),
        ),
        description=_template(
            "Adds ERNegativeCosineSimilarity, the ER version of the loss of BYOL and\n"
            "SimSiam: the parent's arguments plus kappa, entropy_weight,\n"
            "gather_distributed and prediction (which input is the prediction:\n"
            "an argument, so the value does not depend on requires_grad). The BYOL\n"
            'examples pass prediction="x0" (BYOL calls criterion(p, z)).',
            "tests/loss/test_negative_cosine_similarity_er.py, with a DDP-marked\n"
            "  test of gather_distributed (make test-distributed).",
        ),
        examples=(
            _example(
                "byol",
                "BYOL-ER",
                "NegativeCosineSimilarity",
                "ERNegativeCosineSimilarity",
                "negative_cosine_similarity_er",
                "The loss adds the entropy of the predictions to the cosine\n"
                "similarity, and divides the sum by kappa so that the learning rate\n"
                "of the example stays right. The examples pass\n"
                '``prediction="x0"``: BYOL calls ``criterion(p, z)``, so the first\n'
                "input is the prediction whose entropy is the term (the default,\n"
                '``"both"``, averages the entropies of both inputs; SimSiam\'s\n'
                '``criterion(z, p)`` order is ``"x1"``). The distributed example,\n'
                "as lightly's, does not gather, so the entropy is over each GPU's\n"
                "batch (``gather_distributed=True`` gathers it).",
                arguments='prediction="x0"',
            ),
        ),
    ),
    PullRequest(
        key="dino-er",
        title="feat(loss): add ERDINOLoss (DINO-ER)",
        files=(_loss("dino_er_loss"), _written("tests/loss/test_dino_er_loss.py")),
        exports=(("lightly.loss.dino_er_loss", "ERDINOLoss"),),
        description=_template(
            "Adds ERDINOLoss: DINOLoss plus the entropy of the student's marginal\n"
            "prediction. Centering stays on by default (centering=False is the\n"
            "paper's variant); at entropy_weight=0 the loss equals DINOLoss.",
            "tests/loss/test_dino_er_loss.py, with a DDP-marked test of\n"
            "  gather_distributed (make test-distributed; the center is the global\n"
            "  batch's through DINOLoss's own all-reduce).",
        ),
        examples=(
            _example(
                "dino",
                "DINO-ER",
                "DINOLoss",
                "ERDINOLoss",
                "dino_er_loss",
                "The teacher is still centered and sharpened, as in DINO; the loss\n"
                "adds the entropy of the student's mean prediction. The paper's\n"
                "DINO-ER, the entropy term in place of centering, is\n"
                "``ERDINOLoss(..., centering=False)``.",
            ),
        ),
    ),
    PullRequest(
        key="swav-er",
        title="feat(loss): add ERSwaVLoss (SwAV-ER)",
        files=(_loss("swav_er_loss"), _written("tests/loss/test_swav_er_loss.py")),
        exports=(("lightly.loss.swav_er_loss", "ERSwaVLoss"),),
        description=_template(
            "Adds ERSwaVLoss: SwaVLoss plus the entropy of the marginal prediction.\n"
            "Sinkhorn stays on by default (use_sinkhorn=False is the paper's\n"
            "variant); at entropy_weight=0 the loss equals SwaVLoss.",
            "tests/loss/test_swav_er_loss.py, with DDP-marked tests of\n"
            "  gather_distributed (make test-distributed): it gathers the entropy\n"
            "  term; Sinkhorn keeps SwaVLoss's own sinkhorn_gather_distributed.",
        ),
        examples=(
            _example(
                "swav",
                "SwAV-ER",
                "SwaVLoss",
                "ERSwaVLoss",
                "swav_er_loss",
                "The codes still come from Sinkhorn-Knopp, as in SwAV; the loss adds\n"
                "the entropy of the mean prediction over the high-resolution crops.\n"
                "The paper's SwAV-ER, the entropy term in place of Sinkhorn, is\n"
                "``ERSwaVLoss(use_sinkhorn=False)``.",
            ),
        ),
    ),
)

# lightly's mypy exclude entry that the typing pull request removes.
DEBUG_EXCLUDE_LINE = "    lightly/utils/debug.py |\n"
