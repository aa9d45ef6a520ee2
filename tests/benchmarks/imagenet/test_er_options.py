"""--kappa, --entropy-weight and --estimator on the ImageNet mains: named and offered
as benchmarks/cifar10.py offers them, checked, and given to the ER losses only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import pytest
from lightly.loss import NegativeCosineSimilarity

from benchmarks.cifar10 import build_parser as cifar_parser
from benchmarks.common.er_options import ESTIMATORS, er_loss_kwargs
from benchmarks.imagenet import _cli
from benchmarks.imagenet.resnet50 import main as resnet50
from benchmarks.imagenet.vitb16 import main as vitb16
from lightly_er.experimental import EntropyEstimator
from lightly_er.utils.checks import SPHERE_ESTIMATORS

MAINS = [resnet50, vitb16]


def _choices(parser: Any, flag: str) -> Any:
    (action,) = [a for a in parser._actions if flag in a.option_strings]
    return action


def test_the_estimators_are_the_librarys_and_cifar10s() -> None:
    assert set(ESTIMATORS) == set(SPHERE_ESTIMATORS) and len(ESTIMATORS) == 5
    assert ESTIMATORS[0] == "plugin"  # the authors' estimator, the default
    assert tuple(_choices(cifar_parser(), "--estimator").choices) == ESTIMATORS


@pytest.mark.parametrize("main", MAINS)
def test_flags_are_named_as_cifar10s_and_default_to_the_losses(main: Any) -> None:
    parser = main.build_parser()
    args = parser.parse_args([])
    assert (args.kappa, args.entropy_weight, args.estimator) == (None, None, None)
    assert tuple(_choices(parser, "--estimator").choices) == ESTIMATORS
    given = parser.parse_args(
        ["--kappa", "5", "--entropy-weight", "0.5", "--estimator", "joe"]
    )
    assert (given.kappa, given.entropy_weight, given.estimator) == (5.0, 0.5, "joe")
    cifar = {a.dest for a in cifar_parser()._actions}
    assert {"kappa", "entropy_weight", "estimator"} <= cifar


@pytest.mark.parametrize("main", MAINS)
def test_an_unknown_estimator_is_one_error_line(
    main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        main.build_parser().parse_args(["--estimator", "parzen"])
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--estimator" in err and "plugin" in err


def _check(main: Any, tmp_path: Path, argv: List[str]) -> None:
    for name in ("train", "val"):
        (tmp_path / name).mkdir(exist_ok=True)
    base = ["--train-dir", str(tmp_path / "train"), "--val-dir", str(tmp_path / "val")]
    base += ["--log-dir", str(tmp_path / "logs")]
    args = main.build_parser().parse_args(base + argv)
    _cli.check_args(main.COMMAND_LINE, args)


@pytest.mark.parametrize(
    "main, argv, message",
    [
        (resnet50, ["--kappa", "0"], "--kappa must be positive, got 0.0"),
        (resnet50, ["--kappa", "nan"], "--kappa must be positive, got nan"),
        (resnet50, ["--entropy-weight", "-1"], "--entropy-weight must be >= 0"),
        (
            resnet50,
            ["--kappa", "5", "--methods", "dino_er", "swav_er", "byol"],
            "--kappa applies to the ER losses on the sphere (simclr_er, mocov2_er, "
            "byol_er); no method in --methods takes it",
        ),
        (vitb16, ["--estimator", "joe"], "(none in this benchmark)"),
    ],
)
def test_bad_values_are_one_error_line(
    main: Any,
    argv: List[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit:
        _check(main, tmp_path, argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_the_sphere_methods_are_the_modules() -> None:
    bench = resnet50.benchmark()
    sphere = {n for n, spec in bench.methods.items() if spec.model.sphere}
    assert sphere == {
        f"{m}{s}" for m in resnet50.COMMAND_LINE.sphere_methods for s in ("", "_er")
    }
    assert not any(spec.model.sphere for spec in vitb16.benchmark().methods.values())
    assert vitb16.COMMAND_LINE.sphere_methods == ()


def test_the_er_loss_gets_them_as_cifar10_gives_them() -> None:
    model = resnet50.build_model(
        "byol_er", 4, 5, backbone="resnet18", kappa=5.0, entropy_weight=0.5,
        estimator="joe",
    )  # fmt: skip
    loss = model.criterion
    assert (float(loss.kappa), loss.entropy_weight, loss.estimator.name) == (
        5.0,
        0.5,
        "joe",
    )
    default = resnet50.build_model("byol_er", 4, 5, backbone="resnet18").criterion
    assert (float(default.kappa), default.entropy_weight, default.estimator) == (
        10.0,
        1.0,
        EntropyEstimator(),
    )
    assert er_loss_kwargs("er", True, 5.0, 0.5, "joe") == {
        "entropy_weight": 0.5,
        "estimator": EntropyEstimator(name="joe"),
        "kappa": 5.0,
    }


def test_a_discrete_loss_gets_the_weight_and_an_original_nothing() -> None:
    swav = resnet50.build_model(
        "swav_er", 4, 5, backbone="resnet18", entropy_weight=0.25
    ).criterion
    assert swav.entropy_weight == 0.25 and swav.use_sinkhorn is False
    byol = resnet50.build_model(
        "byol", 4, 5, backbone="resnet18", kappa=5.0, entropy_weight=0.5
    )
    assert type(byol.criterion) is NegativeCosineSimilarity  # lightly's, untouched
