"""The engine additions of the alarm study and its generator.

The registered studies' arms must be untouched: every arm's model and first loss
are compared with the values the same computation gave at the commit before the
additions (a4f8564, 2-core CPU). The new arms are checked against independent
computations, and the generator runs its ``smoke`` preset end to end.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Dict, List, Optional, Tuple, cast

import numpy as np
import pytest
import torch
from lightly.loss import NegativeCosineSimilarity
from torch import nn

from benchmarks.studies.alarm import cli, generate, plan
from benchmarks.studies.mechanism import corpus
from benchmarks.studies.mechanism.config import (
    ARMS,
    WIDE_OF,
    RunSpec,
    Task,
    eval_steps,
)
from benchmarks.studies.mechanism.models import (
    build_model,
    head_outputs,
    model_recipe,
    training_loss,
)
from benchmarks.studies.mechanism.views import augmented_views
from tests.benchmarks.studies.mechanism_data import fake_fashion_mnist

PARENT: Dict[Tuple[str, Optional[float], Optional[str]], Tuple[float, float]] = {
    ("byol", 0.0, None): (10513.056346983718, -34.36219024658203),
    ("byol-nopred", 0.0, None): (7402.801516536116, -34.80160140991211),
    ("byol-ema0", 0.0, None): (10513.056346983718, -34.36219024658203),
    ("byol-nopred-ema0", 0.0, None): (7402.801516536116, -34.80160140991211),
    ("byol-unif", None, None): (10513.056346983718, -35.054298400878906),
    ("simsiam", 0.0, None): (14509.68208708396, -489.82867431640625),
    ("simsiam-nosg", 0.0, None): (14509.68208708396, -489.82867431640625),
    ("dino", 0.0, None): (19769.294572070667, 7.82508659362793),
    ("dino-nocenter", 0.0, None): (19769.294572070667, 7.82508659362793),
    ("dino-ema0", 0.0, None): (19769.294572070667, 7.622312068939209),
    ("dino-nocenter-ema0", 0.0, None): (19769.294572070667, 7.622312068939209),
    ("dino-nosharpen", 0.0, None): (19769.294572070667, 7.816397666931152),
    ("swav", 0.0, None): (1024.8057971351043, 6.744871139526367),
    ("swav-nosinkhorn", 0.0, None): (1024.8057971351043, 5.958556175231934),
    ("simclr", None, None): (1411.6952173004233, 2.5317041873931885),
    ("simclr-er", 0.0, None): (1411.6952173004233, -127.12626647949219),
    ("byol-nopred-ema0", 0.0, "koleo"): (7402.801516536116, -34.81671905517578),
    ("dino-ema0", 0.0, "sigreg"): (19769.294572070667, 7.7435688972473145),
    ("simsiam-nosg", 1.0, None): (14509.68208708396, 0.7995318174362183),
    ("swav-nosinkhorn", 1.0, None): (1024.8057971351043, -0.05093574523925781),
    ("dino-nocenter-ema0", 1.0, None): (19769.294572070667, 0.03514528274536133),
}
"""(weighted sum of every float of the state dict, first training loss) of each
registered arm at batch 8, seed 3, on :func:`views`, at commit a4f8564."""
NEW_ARMS = {"simsiam-nosg-nopred"} | {a + plan.SHIFT for a in WIDE_OF}


def views(seed: int = 0, n: int = 8) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, 3, 28, 28, generator=g).contiguous(
            memory_format=torch.channels_last
        )
        for _ in range(2)
    ]


def fingerprint(spec: RunSpec) -> Tuple[float, float]:
    model = build_model(spec)
    total = 0.0
    for value in model.state_dict().values():
        if value.is_floating_point():
            x = value.detach().double().flatten()
            total += float((x * torch.linspace(1, 2, len(x), dtype=x.dtype)).sum())
    model.train()
    return total, float(training_loss(model, views(), 0).detach())


def test_every_registered_arm_builds_and_trains_as_before() -> None:
    # The stored losses were computed with one thread; other thread counts sum in
    # another order (seen: 1e-5 relative on SwAV's near-zero loss with two threads).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _every_registered_arm_as_before()
    finally:
        torch.set_num_threads(threads)


def _every_registered_arm_as_before() -> None:
    assert set(ARMS) - NEW_ARMS == {arm for arm, _, _ in PARENT}
    for (arm, weight, term), (weights, loss) in PARENT.items():
        got = fingerprint(RunSpec(arm, weight, 8, 10, 3, term))
        assert got[0] == pytest.approx(weights, rel=1e-12), arm
        assert got[1] == pytest.approx(loss, rel=1e-6), (arm, weight, term)


def test_simsiam_without_predictor_nor_stop_gradient() -> None:
    model = build_model(RunSpec("simsiam-nosg-nopred", 0.0, 8, 10, 3))
    assert not hasattr(model, "prediction_head")
    model.train()
    x0, x1 = views()
    training_loss(model, [x0, x1], 0).backward()  # type: ignore[no-untyped-call]
    ours = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    # lightly's loss between the projections, both with gradient
    head = cast(nn.Module, model.projection_head)
    z0, z1 = head(model.features(x0)), head(model.features(x1))
    criterion = NegativeCosineSimilarity()
    (0.5 * (criterion(z0, z1) + criterion(z1, z0))).backward()
    theirs = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(ours) == len(theirs) == len(list(model.parameters()))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    model.eval()
    assert set(head_outputs(model, x0)) == {"backbone", "projection"}


@pytest.mark.parametrize("arm", WIDE_OF)
def test_wide_arms_double_the_backbone_and_nothing_else(arm: str) -> None:
    wide = ARMS[arm + plan.SHIFT]
    assert (wide.method, wide.ema, wide.weights) == (
        ARMS[arm].method, ARMS[arm].ema, ARMS[arm].weights,
    )  # fmt: skip
    assert model_recipe(arm + plan.SHIFT, 0.0) == model_recipe(arm, 0.0)
    narrow = build_model(RunSpec(arm, 0.0, 8, 10, 3))
    model = build_model(RunSpec(arm + plan.SHIFT, 0.0, 8, 10, 3))
    layers = cast(nn.Sequential, model.backbone)
    convs = [m.out_channels for m in layers if isinstance(m, nn.Conv2d)]
    assert convs == [64, 128, 256] and model.feature_dim == 256
    assert narrow.feature_dim == 128
    model.eval()
    outputs = head_outputs(model, views()[0])
    assert outputs["backbone"].shape == (8, 256)
    narrow.eval()
    shapes = {k: v.shape for k, v in head_outputs(narrow, views()[0]).items()}
    assert {k: v.shape for k, v in outputs.items()} == {
        k: (8, 256) if k.endswith("backbone") else s for k, s in shapes.items()
    }


def test_views_are_seeded_and_leave_the_run_random_state() -> None:
    images = np.random.default_rng(0).integers(0, 255, (6, 28, 28), dtype=np.uint8)
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    a = augmented_views(images, "byol", 200)
    after = (torch.rand(1), random.random(), np.random.rand())
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    assert after == (torch.rand(1), random.random(), np.random.rand())
    np.testing.assert_array_equal(a, augmented_views(images, "byol", 200))
    assert a.shape == (6, 2, 28, 28) and not np.array_equal(a[:, 0], a[:, 1])
    assert not np.array_equal(a, augmented_views(images, "byol", 201))


def test_the_generator_runs_exactly_the_registered_new_runs() -> None:
    config = generate.engine("alarm")
    main = {t.key for t in generate.all_tasks(config) if t.kind == "run"}
    both = generate.all_tasks(config, ["embedding", "prototype"])
    assert {t.key for t in both if t.kind == "run"} == plan.NEW_RUNS
    top_up = {f"{a}_w0_b128_s1000_seed{s}" for a in plan.COLLAPSE_ARMS
              for s in range(220, 230)}  # fmt: skip
    assert main == plan.NEW_RUNS - top_up and len(main) == 93
    embedding = generate.all_tasks(config, ["embedding"])
    assert {t.key for t in embedding if t.kind == "run"} - main == {
        k for k in top_up if k.startswith(("byol", "simsiam"))
    }
    # each run after its stream and its (narrow or wide) untrained network
    keys = [t.key for t in both]
    for i, task in enumerate(both):
        assert all(d in keys[:i] for d in task.depends), task.key
    assert Task("untrained", seed=210, wide=True).key in keys
    assert Task("untrained", seed=210).key not in keys
    assert config.steps == 1000 and config.batch == 128 and config.knn_every == 100
    assert eval_steps(config.steps, config.evaluations) == list(range(0, 1001, 50))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    data = fake_fashion_mnist(tmp_path_factory.mktemp("fashion"))
    log = tmp_path_factory.mktemp("alarm")
    args = ["generate", "--preset", "smoke", "--log-dir", str(log),
            "--data-dir", str(data), "--workers", "1"]  # fmt: skip
    assert cli.main(args) == 0
    return {"log": log, "data": data}


def test_smoke_corpus_has_every_run_and_backbone_views(smoke: Dict[str, Path]) -> None:
    config = generate.engine("smoke")
    specs = [t.spec for t in generate.all_tasks(config) if t.spec is not None]
    assert len(specs) == 18
    index = corpus.read_index(smoke["log"] / "corpus")
    assert [r["run_id"] for r in index["runs"]] == [s.run_id for s in specs]
    for entry, spec in zip(index["runs"], specs, strict=True):
        arrays = corpus.load_run(smoke["log"] / "corpus" / entry["file"])
        d = 256 if spec.arm.endswith(plan.SHIFT) else 128
        steps = eval_steps(config.steps, config.evaluations)
        np.testing.assert_array_equal(arrays["step"], steps)
        assert arrays["backbone"].shape == (len(steps), 16, d)
        assert arrays["backbone_views"].shape == (2, 16, d)
        assert np.isfinite(arrays["backbone_views"].astype(np.float32)).all()
        assert not np.array_equal(arrays["backbone_views"][0], arrays["backbone"][-1])
        assert "backbone_views" not in entry["heads"]
        if spec.arm.startswith("simsiam-nosg-nopred"):
            assert set(entry["heads"]) == {"backbone", "projection"}
    untrained = sorted(p.name for p in (smoke["log"] / "untrained").glob("*.json"))
    assert untrained == ["seed200.json", "seed210_wide.json"]
    assert not list((smoke["log"] / "corpus" / "partial").glob("*/*"))


def test_smoke_resumes_and_refuses_a_code_change(
    smoke: Dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log = smoke["log"]
    args = ["generate", "--preset", "smoke", "--log-dir", str(log),
            "--data-dir", str(smoke["data"]), "--workers", "1"]  # fmt: skip
    assert cli.main(args) == 0
    total = len(generate.all_tasks(generate.engine("smoke")))
    assert f"{total} of {total} tasks already done" in capsys.readouterr().out
    path = sorted((log / "records").glob("*.json"))[0]
    original = path.read_text()
    record = json.loads(original)
    record["code"]["commit"] = "0" * 40
    path.write_text(json.dumps(record))
    assert cli.main(args) == 2
    assert "--allow-code-change" in capsys.readouterr().err
    assert cli.main(args + ["--allow-code-change"]) == 0
    path.write_text(original)
    assert cli.main(args[:1] + ["--preset", "alarm"] + args[3:]) == 2  # other engine
    assert "other settings" in capsys.readouterr().err
