"""What goes into lightly, and where: the one table the patch generator reads.

Each row of ``FILES`` is one file of the patch series:

- ``source``: a path in this repository. A library file (``lightly_er/...``) is
  transformed on the way (imports to lightly's paths, British to American spelling
  in comments, docstrings and messages, references to our docs to lightly's docs
  page); a file under ``upstream/files/`` is written for lightly already (its tests
  and docs page) and is copied as it is.
- ``target``: its path in lightly's repository.
- ``commit``: the commit of the series that adds it (a key of ``COMMITS``).
- ``exports``: names to export from ``lightly/loss/__init__.py`` (loss modules only).

A new loss is one row (and one row for its lightly-style test), for example::

    Row("lightly_er/loss/msn_er_loss.py", "lightly/loss/msn_er_loss.py", "loss",
        ("ERMSNLoss",)),
"""

from __future__ import annotations

from typing import NamedTuple, Tuple


class Row(NamedTuple):
    source: str
    target: str
    commit: str
    exports: Tuple[str, ...] = ()


_FUNCTIONAL = "lightly/utils/entropy_reconstruction"

FILES: Tuple[Row, ...] = (
    # The estimators: lightly keeps such helpers in lightly/utils (debug.py, dist.py).
    Row("lightly_er/functional/__init__.py", f"{_FUNCTIONAL}/__init__.py", "utils"),
    Row("lightly_er/functional/_checks.py", f"{_FUNCTIONAL}/_checks.py", "utils"),
    Row(
        "lightly_er/functional/_diagnostics.py",
        f"{_FUNCTIONAL}/_diagnostics.py",
        "utils",
    ),
    Row("lightly_er/functional/_discrete.py", f"{_FUNCTIONAL}/_discrete.py", "utils"),
    Row(
        "lightly_er/functional/_prototypes.py",
        f"{_FUNCTIONAL}/_prototypes.py",
        "utils",
    ),
    Row("lightly_er/functional/_kde.py", f"{_FUNCTIONAL}/_kde.py", "utils"),
    Row("lightly_er/functional/_samples.py", f"{_FUNCTIONAL}/_samples.py", "utils"),
    Row("lightly_er/functional/_special.py", f"{_FUNCTIONAL}/_special.py", "utils"),
    Row("lightly_er/functional/_sphere.py", f"{_FUNCTIONAL}/_sphere.py", "utils"),
    Row("lightly_er/utils/checks.py", "lightly/utils/er_checks.py", "utils"),
    Row("lightly_er/utils/dist.py", "lightly/utils/er_dist.py", "utils"),
    Row("lightly_er/utils/compat.py", "lightly/utils/er_compat.py", "utils"),
    # The losses: one module per lightly loss, exported from lightly.loss.
    Row(
        "lightly_er/loss/_kappa.py",
        "lightly/loss/_er_kappa.py",
        "loss",
    ),
    Row("lightly_er/experimental/_memory.py", "lightly/loss/_er_memory.py", "loss"),
    Row(
        "lightly_er/experimental/estimator.py", "lightly/loss/_er_estimator.py", "loss"
    ),
    Row(
        "lightly_er/experimental/_learnable_kappa.py",
        "lightly/loss/_er_learnable_kappa.py",
        "loss",
    ),
    Row(
        "lightly_er/loss/_base.py",
        "lightly/loss/_er_base.py",
        "loss",
        ("ERComponents",),
    ),
    Row("lightly_er/loss/_terms.py", "lightly/loss/_er_terms.py", "loss"),
    Row("lightly_er/loss/er_loss.py", "lightly/loss/er_loss.py", "loss", ("ERLoss",)),
    Row(
        "lightly_er/loss/ntx_ent_er_loss.py",
        "lightly/loss/ntx_ent_er_loss.py",
        "loss",
        ("ERNTXentLoss",),
    ),
    Row(
        "lightly_er/loss/negative_cosine_similarity_er.py",
        "lightly/loss/negative_cosine_similarity_er.py",
        "loss",
        ("ERNegativeCosineSimilarity",),
    ),
    Row(
        "lightly_er/loss/dino_er_loss.py",
        "lightly/loss/dino_er_loss.py",
        "loss",
        ("ERDINOLoss",),
    ),
    Row(
        "lightly_er/loss/swav_er_loss.py",
        "lightly/loss/swav_er_loss.py",
        "loss",
        ("ERSwaVLoss",),
    ),
    # The meter: plain PyTorch (the Lightning callback stays in lightly-er).
    Row("lightly_er/monitoring/meter.py", "lightly/utils/entropy_meter.py", "meter"),
    Row(
        "lightly_er/monitoring/_names.py",
        "lightly/utils/_entropy_meter_names.py",
        "meter",
    ),
    # Tests, written in lightly's style (classes, reference implementations).
    *(
        Row(f"upstream/files/{path}", path, "tests")
        for path in (
            "tests/utils/test_entropy_reconstruction.py",
            "tests/utils/test_entropy_meter.py",
            "tests/loss/test_er_loss.py",
            "tests/loss/test_ntx_ent_er_loss.py",
            "tests/loss/test_negative_cosine_similarity_er.py",
            "tests/loss/test_dino_er_loss.py",
            "tests/loss/test_swav_er_loss.py",
        )
    ),
    # The docs page (reStructuredText, as lightly's docs/source).
    Row(
        "upstream/files/docs/source/getting_started/entropy_reconstruction.rst",
        "docs/source/getting_started/entropy_reconstruction.rst",
        "docs",
    ),
)

# Existing lightly files the series edits (and nothing else): type annotations in
# lightly/utils/debug.py (the meter imports it, so lightly's mypy checks it), the
# exports, the API entries, and the docs page's place in the table of contents.
EDITED: Tuple[str, ...] = (
    "lightly/utils/debug.py",
    "lightly/loss/__init__.py",
    "docs/source/lightly.loss.rst",
    "docs/source/lightly.utils.rst",
    "docs/source/index.rst",
)

# The docs page's entry in docs/source/index.rst: the toctree with this caption.
DOCS_TOCTREE_CAPTION = "Advanced"
DOCS_PAGE = "getting_started/entropy_reconstruction.rst"

# Sections appended to docs/source/lightly.utils.rst: (title, module).
UTILS_API = (
    (".entropy_reconstruction", "lightly.utils.entropy_reconstruction"),
    (".entropy_meter", "lightly.utils.entropy_meter"),
)

# The commits of the series, in order: key -> message (lightly's commit style,
# conventional-commit prefixes as in its history).
COMMITS = {
    "typing": (
        "fix(utils): add missing type annotations in debug.py\n\n"
        "lightly.utils.debug is in the mypy exclude list, but mypy checks it as\n"
        "soon as a checked module imports it (EntropyMeter, later in this series,\n"
        "imports std_of_l2_normalized). Type the matplotlib fallback, the transform\n"
        "argument of apply_transform_without_normalize and the figure that\n"
        "plot_augmented_images returns. No change in behavior.\n"
    ),
    "utils": (
        "feat(utils): add entropy and reconstruction estimators\n\n"
        "Add lightly.utils.entropy_reconstruction: pure PyTorch functions for the\n"
        "terms of the ER bound on the mutual information between two views\n"
        "(Rodriguez-Galvez et al., ICML 2023): the vMF log-normalizer with an exact\n"
        "log-Bessel function, the vMF kernel-density entropy and reconstruction on\n"
        "the sphere, their discrete counterparts, and label-free diagnostics\n"
        "(effective rank, alignment, uniformity, a collapse score). Argument checks\n"
        "and the row gathering they share are in lightly.utils.er_checks and\n"
        "lightly.utils.er_dist.\n"
    ),
    "loss": (
        "feat(loss): add ER losses\n\n"
        "Add the ER objective as drop-in subclasses of lightly's losses, with the\n"
        "parents' constructor arguments and forward signatures: ERNTXentLoss\n"
        "(SimCLR-ER, MoCo-ER), ERNegativeCosineSimilarity (BYOL-ER, SimSiam-ER),\n"
        "ERDINOLoss (DINO-ER), ERSwaVLoss (SwAV-ER) and the generic two-view ERLoss.\n"
        "Each returns -(entropy_weight * entropy + reconstruction) and keeps the\n"
        "detached terms in last_components for logging.\n"
    ),
    "meter": (
        "feat(utils): add EntropyMeter\n\n"
        "A plain PyTorch meter of the entropy and collapse of a batch of\n"
        "representations, measured as the ER objective sees them, for training\n"
        "loops and callbacks.\n"
    ),
    "tests": (
        "test: add tests for the ER estimators, losses and meter\n\n"
        "Reference implementations in NumPy float64 of each term, closed forms of\n"
        "the vMF normalizer, and equality with the parent losses where the ER\n"
        "losses reduce to them.\n"
    ),
    "docs": (
        "docs: add entropy and reconstruction (ER) page and API entries\n\n"
        "A page on the ER objective (what it is, how to swap a loss, the choices\n"
        "where the paper leaves room) in the Advanced section, and the new classes\n"
        "and modules in the API reference.\n"
    ),
}

# Where lightly keeps its release notes: GitHub releases (it has no CHANGELOG file).
# The series' cover letter carries the pull request's description and this entry.
RELEASE_NOTE = (
    "Entropy and reconstruction (ER) objectives: ERNTXentLoss, "
    "ERNegativeCosineSimilarity, ERDINOLoss, ERSwaVLoss and ERLoss in lightly.loss, "
    "the estimators in lightly.utils.entropy_reconstruction and EntropyMeter in "
    "lightly.utils.entropy_meter (Rodriguez-Galvez et al., ICML 2023)."
)

COVER_LETTER = (
    "Add entropy and reconstruction (ER) objectives\n\n"
    'This series adds the ER objective of Rodriguez-Galvez et al., "The Role of\n'
    'Entropy and Reconstruction in Multi-View Self-Supervised Learning" (ICML 2023,\n'
    "https://arxiv.org/abs/2307.10907) to lightly as subclasses of its losses:\n"
    "swapping NTXentLoss for ERNTXentLoss (or NegativeCosineSimilarity, DINOLoss,\n"
    "SwaVLoss for their ER versions) in a training script is the whole change.\n\n"
    "1. type annotations in lightly.utils.debug, which the meter imports (mypy\n"
    "   checks an excluded module once a checked one imports it);\n"
    "2. the estimators (lightly.utils.entropy_reconstruction), argument checks and\n"
    "   row gathering (lightly.utils.er_checks, lightly.utils.er_dist);\n"
    "3. the losses (lightly/loss/*_er*.py), exported from lightly.loss;\n"
    "4. EntropyMeter (lightly.utils.entropy_meter), plain PyTorch;\n"
    "5. tests in tests/loss and tests/utils;\n"
    "6. a docs page (Advanced > Entropy and Reconstruction) and API entries.\n\n"
    "Release notes:\n\n"
    f"- {RELEASE_NOTE}\n\n"
    "Generated by lightly-er's upstream/make_patch.py.\n"
)

# Phrases of our docstrings, comments and messages that point at lightly-er's own
# docs or at code that stays in lightly-er, and what they become in lightly. Matched
# with any run of white space for a space; applied in order, before the spelling.
PROSE = (
    (
        "When to measure is the caller's choice: the "
        ":class:`lightly_er.monitoring.EntropyMonitor` callback decides it for "
        "Lightning.",
        "When to measure is the caller's choice.",
    ),
    (
        "the ER losses' constructors, the heads' meters, "
        ":class:`lightly_er.monitoring.EntropyMeter` and "
        ":class:`lightly_er.monitoring.EntropyMonitor`.",
        "the ER losses' constructors and :class:`lightly_er.monitoring.EntropyMeter`.",
    ),
    ("the one rule of lightly-er.", "the one rule of the ER losses."),
    (" (pass kappa= to choose; docs/kappa.md)", " (pass kappa= to choose)"),
    ("See docs/objectives.md.", "See :ref:`entropy-reconstruction`."),
    ("docs/objectives.md", ":ref:`entropy-reconstruction`"),
    ("docs/kappa.md", ":ref:`entropy-reconstruction-kappa`"),
    ("docs/reading_the_numbers.md", ":ref:`entropy-reconstruction-meter`"),
    ("a monitor's or a head's", "a meter's"),
    ("2.6 s of `import lightly_er`.", "seconds of an import."),
    ("which `import lightly_er` should not pay", "which an import should not pay"),
    (
        "tests/test_functional.py holds the flag",
        "tests/utils/test_entropy_reconstruction.py holds the flag",
    ),
)
