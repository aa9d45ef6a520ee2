"""The run record of the benchmarks and studies: one JSON file per finished run.

Every engine (the CIFAR-10 sweep, the ImageNet runner, the mechanism study) writes
its finished runs as a :class:`RunRecord`: the run's id, the engine, the code it was
made with (:class:`benchmarks.common.code.CodeVersion`: commit, dirty flag, versions)
and the engine's own fields, flat in one JSON object. :class:`RunResult` is the
CIFAR-10 sweep's fields, typed.

Every file is written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted run leaves either the old file or the new one, never
half of one. A run's JSON is written only when the run has finished, which is what a
resumed sweep checks to skip it. The format is that of record version 2, which the
records of earlier releases already on disk use (a test loads one written then);
the fields added since have defaults, so those records still load (their code is
unknown: None).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional

from benchmarks.common.code import CodeVersion
from benchmarks.common.runs import run_id

ENVELOPE = ("run_id", "engine", "code")
"""The keys every record has beside its engine's own fields."""


@dataclass
class RunRecord:
    """One finished run of any engine, as written to disk.

    Attributes:
        run_id: The run's identifier (:func:`benchmarks.common.runs.run_id`).
        engine: What ran it: ``"cifar10"``, ``"imagenet/resnet50"``,
            ``"imagenet/vitb16"``, ``"mechanism"``, ...
        code: The code it was made with; None for a record written before records
            named their code.
        data: The engine's own fields (settings and results), JSON-serializable.
    """

    run_id: str
    engine: str
    code: Optional[CodeVersion]
    data: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        """The flat JSON object: the engine's fields and the envelope's."""
        clash = set(self.data) & set(ENVELOPE)
        if clash:
            raise ValueError(f"the record's data may not set {sorted(clash)}")
        return {
            **self.data,
            "run_id": self.run_id,
            "engine": self.engine,
            "code": None if self.code is None else self.code.to_dict(),
        }

    def save(self, path: Path, indent: int = 2) -> None:
        """Writes the record as JSON with sorted keys, atomically."""
        save_json(path, self.to_json(), indent)

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        """Reads a record; one written before the envelope gets the file's stem as
        its id, an empty engine and no code.

        Raises:
            ValueError: If the file is not a JSON object.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a run record: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a run record: not a JSON object")
        return cls.from_json(data, default_id=path.stem)

    @classmethod
    def from_json(cls, data: Dict[str, Any], default_id: str = "") -> RunRecord:
        """The record of a flat JSON object (:meth:`to_json`)."""
        data = dict(data)
        code = data.pop("code", None)
        return cls(
            run_id=str(data.pop("run_id", default_id)),
            engine=str(data.pop("engine", "")),
            code=None if code is None else CodeVersion.from_dict(code),
            data=data,
        )


RECORD_VERSION = 2


@dataclass
class RunResult:
    """Settings and metrics of one finished pretraining run.

    Attributes:
        method: Method name, e.g. ``"byol_er"``.
        model: Display name of the method, e.g. ``"BYOL"``.
        objective: ``"original"`` or ``"er"``.
        dataset: Dataset name.
        batch_size: Batch size.
        ema: Teacher EMA coefficient, or None for methods without a teacher.
        epochs: Epochs trained.
        seed: Random seed.
        knn_top1: Best kNN top-1 accuracy over the epochs, in [0, 1] (lightly's).
        knn_top1_final: kNN top-1 after the last epoch.
        knn_top1_per_epoch: kNN top-1 after every epoch.
        kappa: The kappa at which the run's loss is measured (sphere support; from
            the loss, :meth:`lightly_er.monitoring.EntropyMeter.for_loss`); None on
            a discrete support.
        estimator: The sphere entropy estimator, or None on a discrete support.
        entropy_weight: The ER loss's entropy weight; None for an original run.
        er_entropy_kind: ``"gap"`` (H - H_min in nats, sphere) or ``"normalized"``
            (H / log K, discrete).
        er_entropy_per_epoch: The ER entropy of the objective output on the
            held-out batch after every epoch.
        output_collapse_score_per_epoch: The collapse score of that output.
        collapse_score_per_epoch: The collapse score of the backbone features.
        rankme_per_epoch: RankMe of the backbone features.
        runtime_s: Wall-clock seconds of pretraining and evaluation, summed over
            the processes that trained the run (it resumes after an interruption).
        runtime_parts_s: The seconds of each of those processes, in order (a
            killed process's up to its last checkpoint); empty in older records.
        rebuilt_from_checkpoint: True when the process that wrote the record
            trained nothing: the run's ``last.ckpt`` was complete (its record had
            been lost), and the record was rebuilt from it.
        peak_gpu_memory_gb: Peak GPU memory in GiB, or None on the CPU.
        settings: Every other setting of the run.
        record_version: The record format (records of another version are rerun).
        code: The code the run was made with; None in records written before
            records named their code.
    """

    method: str
    model: str
    objective: str
    dataset: str
    batch_size: int
    ema: Optional[float]
    epochs: int
    seed: int
    knn_top1: float
    knn_top1_final: float
    knn_top1_per_epoch: List[float] = field(default_factory=list)
    kappa: Optional[float] = None
    estimator: Optional[str] = None
    entropy_weight: Optional[float] = None
    er_entropy_kind: str = "gap"
    er_entropy_per_epoch: List[float] = field(default_factory=list)
    output_collapse_score_per_epoch: List[float] = field(default_factory=list)
    collapse_score_per_epoch: List[float] = field(default_factory=list)
    rankme_per_epoch: List[float] = field(default_factory=list)
    runtime_s: float = 0.0
    runtime_parts_s: List[float] = field(default_factory=list)
    rebuilt_from_checkpoint: bool = False
    peak_gpu_memory_gb: Optional[float] = None
    settings: Dict[str, Any] = field(default_factory=dict)
    record_version: int = RECORD_VERSION
    code: Optional[CodeVersion] = None

    ENGINE: ClassVar[str] = "cifar10"

    @property
    def run_id(self) -> str:
        """The run's identifier, the stem of its record and of its Lightning folder."""
        return run_id(
            self.method,
            batch_size=self.batch_size,
            seed=self.seed,
            ema=self.ema,
            epochs=self.epochs,
        )

    def to_record(self) -> RunRecord:
        """The run as the record every engine writes."""
        data = asdict(self)
        del data["code"]
        return RunRecord(self.run_id, self.ENGINE, self.code, data)

    def save(self, path: Path) -> None:
        """Writes the record as JSON, atomically."""
        self.to_record().save(path)

    @classmethod
    def load(cls, path: Path) -> RunResult:
        """Reads a record written by :meth:`save`.

        Raises:
            ValueError: If the file is not a complete run record of this version.
        """
        record = RunRecord.load(path)
        try:
            result = cls(**record.data, code=record.code)
        except TypeError as error:
            raise ValueError(f"{path} is not a run record: {error}") from error
        if result.record_version != RECORD_VERSION:
            raise ValueError(
                f"{path} is a run record of version {result.record_version}, not "
                f"{RECORD_VERSION}"
            )
        return result


def save_json(path: Path, data: Dict[str, Any], indent: int = 2) -> None:
    """Writes data as indented JSON with sorted keys, atomically: every record and
    results file of the benchmarks."""
    from lightly_er.utils.io import write_atomic  # loads torch: not at --help

    write_atomic(path, json.dumps(data, indent=indent, sort_keys=True) + "\n")


def load_results(directory: Path) -> List[RunResult]:
    """Every run record in directory (``runs/*.json``), sorted by file name."""
    return [RunResult.load(p) for p in sorted((directory / "runs").glob("*.json"))]
