"""Runs of the ImageNet ViT benchmark's DINO on the CPU, and its command line.

dino and dino_er pretrain for one batch with a one-block test ViT on 56-pixel crops;
the last layer stays frozen in the first epoch, the weight decay follows its
schedule, and, as in lightly's script, no gradient is clipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightly.data.multi_view_collate import MultiViewCollate
from pytorch_lightning.callbacks import EarlyStopping

from benchmarks.common.cli import DefaultsHelpFormatter
from benchmarks.imagenet import _common
from benchmarks.imagenet.vitb16 import dino, evaluation
from benchmarks.imagenet.vitb16 import main as bench
from tests.benchmarks.imagenet.helpers import (
    NUM_CLASSES,
    csv_metrics,
    vitb16_args,
)
from tests.benchmarks.lightly_imagenet import (
    LIGHTLY_VITB16,
)

EXPECTED = LIGHTLY_VITB16["dino"]


@pytest.mark.parametrize("method", ["dino", "dino_er"])
def test_pretrains_and_evaluates(
    method: str, image_folder: Path, tmp_path: Path
) -> None:
    args = vitb16_args(image_folder, tmp_path) + ["--methods", method]
    if method == "dino_er":
        args += ["--skip-linear-eval", "--skip-finetune-eval"]
    results = bench.main(args)
    (run_dir,) = (tmp_path / method).iterdir()
    pretrain = csv_metrics(run_dir / "pretrain")
    assert np.isfinite(pretrain["train_loss"]).all()
    assert "val_online_cls_top1" in pretrain
    assert "ema_momentum" in pretrain
    logged = {k.split("/")[1] for k in pretrain if k.startswith("entropy/")}
    # The student's head and backbone; an ER criterion's terms too.
    expected = {"student_projection_head", "student_backbone"}
    assert logged == expected | ({"criterion"} if method == "dino_er" else set())
    if method == "dino_er":
        assert np.isfinite(pretrain["train_entropy"]).all()
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == results[method]
    assert 0.0 <= saved["knn_eval/val_knn_top1"] <= 1.0
    if method == "dino":
        for stage in ("linear_eval", "finetune_eval"):
            assert 0.0 <= saved[f"{stage}/val_top1"] <= 1.0
            assert csv_metrics(run_dir / stage)["val_top5"]


def test_last_layer_frozen_in_first_epoch_and_no_clipping(image_folder: Path) -> None:
    assert EXPECTED["gradient_clip"] is None
    assert dino.DINO.configure_gradient_clipping is (
        pl.LightningModule.configure_gradient_clipping
    )
    pl.seed_everything(0, workers=True)
    model = bench.build_model("dino", 4, NUM_CLASSES, backbone="vit_test")
    start = {
        k: v.clone() for k, v in model.student_projection_head.state_dict().items()
    }
    norms: Dict[str, float] = {}
    last = set(map(id, model.student_projection_head.last_layer.parameters()))

    def grad_norm(optimizer: Any) -> float:
        grads = [
            p.grad
            for g in optimizer.param_groups
            for p in g["params"]
            if p.grad is not None and id(p) not in last
        ]
        return float(torch.stack([g.norm() for g in grads]).norm())

    class Norms(pl.Callback):
        def on_before_optimizer_step(
            self, trainer: pl.Trainer, module: Any, optimizer: Any
        ) -> None:
            norms["before"] = grad_norm(optimizer)

    config = _common.RunConfig(
        image_folder, image_folder, 4, 0, "cpu", 1, "32-true", "auto", NUM_CLASSES
    )
    loader = _common.make_loader(
        image_folder,
        dino.transform(56),
        config,
        shuffle=True,
        drop_last=True,
        persistent=False,
        collate_fn=bench.BENCHMARK.collate_fn,
    )
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[Norms()],
    )
    trainer.fit(model, loader)
    assert trainer.global_step == 2
    # The gradient the optimizer used is the unclipped one (lightly clips none).
    assert grad_norm(trainer.optimizers[0]) == pytest.approx(norms["before"], rel=1e-6)
    end = model.student_projection_head.state_dict()
    for key, value in start.items():
        moved = not torch.equal(end[key], value)
        assert moved != key.startswith("last_layer"), key


def test_pretraining_trainer_is_lightlys(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: Dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fit(self: pl.Trainer, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None, ckpt_path: Any = None) -> None:  # fmt: skip
        captured.update(trainer=self, train=train_dataloaders, val=val_dataloaders)
        raise Stop

    monkeypatch.setattr(pl.Trainer, "fit", fit)
    with pytest.raises(Stop):
        bench.main(vitb16_args(image_folder, tmp_path) + ["--methods", "dino"])
    trainer = captured["trainer"]
    (early,) = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert early.monitor == "train_loss" and early.check_finite
    assert trainer.num_sanity_val_steps == 0  # lightly's vitb16 main.py
    assert isinstance(captured["train"].collate_fn, MultiViewCollate)
    assert captured["train"].drop_last
    assert not isinstance(captured["val"], list)  # no online kNN for DINO
    assert not (tmp_path / "dino").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--image-size", "60", "patch size"),
        ("--eval-method", "linear", "--eval-method"),
        ("--backbone", "vit_base_patch16_224", "--backbone"),
        ("--methods", "mae", "--methods"),
        ("--epochs", "-1", "--epochs must be >= 0, got -1"),
        ("--log-dir", "{file}", "--log-dir {file} exists and is not a directory"),
        ("--knn-k", "5", "--knn-k 5 exceeds the kNN bank of at most 4 images"),
    ],
)
def test_bad_input_is_one_error_line(
    flag: str,
    value: str,
    message: str,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = vitb16_args(image_folder, tmp_path / "logs")
    (tmp_path / "a-file").write_text("x")
    value = value.replace("{file}", str(tmp_path / "a-file"))
    message = message.replace("{file}", str(tmp_path / "a-file"))
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(SystemExit) as info:
        bench.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "logs").exists()


def test_help_shows_every_default() -> None:
    parser = bench.build_parser()
    formatter = DefaultsHelpFormatter(parser.prog)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in formatter._get_help_string(action), action.dest


def test_command_line_names_are_the_modules() -> None:
    """The names --help offers without importing the methods are theirs."""
    assert bench.COMMAND_LINE.methods == tuple(bench.METHODS)
    assert bench.COMMAND_LINE.backbones == tuple(dino.VIT_BACKBONES)
    assert bench.COMMAND_LINE.eval_methods == evaluation.EVAL_METHODS
    assert bench.COMMAND_LINE.knn_t == bench.BENCHMARK.knn_t
