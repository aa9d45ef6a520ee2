"""Checks the files that would move into lightly against lightly's own rules.

Copies them to the paths docs/contributing_upstream.md proposes, rewrites the
``lightly_er`` imports to those paths, and runs lightly's ruff settings
(.ci/lightly-ruff.toml: lint and format) and vermin (oldest Python: lightly's 3.8)
on the copy. Exits non-zero if anything fails.

    python .ci/upstream_check.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".ci" / "lightly-ruff.toml"
OLDEST_PYTHON = "3.8"

# lightly-er file -> path in lightly's repository.
MAPPING = {
    **{
        f"lightly_er/functional/{name}.py": (
            f"lightly/utils/entropy_reconstruction/{name}.py"
        )
        for name in (
            "__init__",
            "_checks",
            "_diagnostics",
            "_discrete",
            "_special",
            "_sphere",
        )
    },
    "lightly_er/loss/_base.py": "lightly/loss/_er_base.py",
    "lightly_er/loss/_kappa.py": "lightly/loss/_er_kappa.py",
    "lightly_er/loss/er_loss.py": "lightly/loss/er_loss.py",
    "lightly_er/loss/ntx_ent_er_loss.py": "lightly/loss/ntx_ent_er_loss.py",
    "lightly_er/loss/negative_cosine_similarity_er.py": (
        "lightly/loss/negative_cosine_similarity_er.py"
    ),
    "lightly_er/loss/dino_er_loss.py": "lightly/loss/dino_er_loss.py",
    "lightly_er/loss/swav_er_loss.py": "lightly/loss/swav_er_loss.py",
    "lightly_er/models/modules/heads.py": "lightly/models/modules/er_heads.py",
    "lightly_er/monitoring/meter.py": "lightly/utils/entropy_meter.py",
    "lightly_er/utils/checks.py": "lightly/utils/er_checks.py",
    "lightly_er/utils/dist.py": "lightly/utils/er_dist.py",
}

# Module renames for the imports, longest first.
MODULES = {
    "lightly_er.loss._base": "lightly.loss._er_base",
    "lightly_er.loss._kappa": "lightly.loss._er_kappa",
    "lightly_er.functional": "lightly.utils.entropy_reconstruction",
    "lightly_er.monitoring.meter": "lightly.utils.entropy_meter",
    "lightly_er.utils.checks": "lightly.utils.er_checks",
    "lightly_er.utils.dist": "lightly.utils.er_dist",
    "lightly_er.loss": "lightly.loss",
    "lightly_er.models.modules": "lightly.models.modules",
}


def rewrite(text: str) -> str:
    """The file's text with lightly-er's imports pointing at lightly's paths."""
    text = re.sub(
        r"^from lightly_er import functional$",
        "from lightly.utils import entropy_reconstruction as functional",
        text,
        flags=re.MULTILINE,
    )
    for old, new in MODULES.items():
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    return text


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for source, target in MAPPING.items():
            path = root / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rewrite((ROOT / source).read_text(encoding="utf-8")))
        files = [str(root / target) for target in MAPPING.values()]
        bin_dir = Path(sys.executable).parent
        # Imports move between blocks when lightly-er becomes lightly: let ruff
        # re-sort them, as a contributor would, then check everything else.
        subprocess.run(
            [
                str(bin_dir / "ruff"),
                "check",
                "--config",
                str(CONFIG),
                "--select",
                "I",
                "--fix",
                "--quiet",
                *files,
            ],
            cwd=root,
            check=False,
        )
        # Formatting is checked on our files as they are (the longer module names
        # of the copy rewrap a few lines, which ruff format would do on the move).
        ours = [str(ROOT / source) for source in MAPPING]
        checks = [
            [str(bin_dir / "ruff"), "check", "--config", str(CONFIG), *files],
            [
                str(bin_dir / "ruff"),
                "format",
                "--config",
                str(CONFIG),
                "--check",
                *ours,
            ],
            [
                str(bin_dir / "vermin"),
                "--no-tips",
                "--violations",
                f"-t={OLDEST_PYTHON}-",
                *files,
            ],
        ]
        failed = False
        for command in checks:
            result = subprocess.run(command, cwd=root, capture_output=True, text=True)
            name = Path(command[0]).name + " " + command[1]
            print(f"{name}: {'ok' if result.returncode == 0 else 'FAILED'}")
            if result.returncode != 0:
                failed = True
                print(result.stdout + result.stderr)
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
