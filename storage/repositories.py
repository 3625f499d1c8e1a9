"""Repositories: typed queries over the ORM. They take a session and never commit."""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.orm import (
    AnalysisResult,
    Dataset,
    Explanation,
    ModelFamily,
    ModelVersion,
    Report,
    Run,
    Sample,
    Setting,
    SignOff,
    User,
)


class ModelRepository:
    def __init__(self, session: Session) -> None:
        self.s = session

    def families(self) -> Sequence[ModelFamily]:
        return self.s.scalars(select(ModelFamily).order_by(ModelFamily.name)).all()

    def family(self, name: str) -> Optional[ModelFamily]:
        return self.s.scalars(select(ModelFamily).where(ModelFamily.name == name)).first()

    def get_or_create_family(self, name: str, task: str, description: str = "") -> ModelFamily:
        fam = self.family(name)
        if fam is None:
            fam = ModelFamily(name=name, task=task, description=description)
            self.s.add(fam)
            self.s.flush()
        return fam

    def version(self, family: str, version: str) -> Optional[ModelVersion]:
        return self.s.scalars(
            select(ModelVersion)
            .join(ModelFamily)
            .where(ModelFamily.name == family, ModelVersion.version == version)
        ).first()

    def version_by_id(self, version_id: int) -> Optional[ModelVersion]:
        return self.s.get(ModelVersion, version_id)

    def versions(self, family: str) -> Sequence[ModelVersion]:
        return self.s.scalars(
            select(ModelVersion).join(ModelFamily).where(ModelFamily.name == family).order_by(ModelVersion.id)
        ).all()

    def add_version(self, version: ModelVersion) -> ModelVersion:
        self.s.add(version)
        self.s.flush()
        return version

    def count_versions(self) -> int:
        return int(self.s.scalar(select(func.count(ModelVersion.id))) or 0)


class DatasetRepository:
    def __init__(self, session: Session) -> None:
        self.s = session

    def all(self) -> Sequence[Dataset]:
        return self.s.scalars(select(Dataset).order_by(Dataset.name)).all()

    def get(self, name: str) -> Optional[Dataset]:
        return self.s.scalars(select(Dataset).where(Dataset.name == name)).first()

    def add(self, dataset: Dataset, samples: Iterable[Sample]) -> Dataset:
        self.s.add(dataset)
        self.s.flush()
        for sample in samples:
            sample.dataset_id = dataset.id
            self.s.add(sample)
        self.s.flush()
        return dataset

    def samples(self, dataset_id: int) -> Sequence[Sample]:
        return self.s.scalars(select(Sample).where(Sample.dataset_id == dataset_id).order_by(Sample.id)).all()

    def sample(self, dataset_id: int, key: str) -> Optional[Sample]:
        return self.s.scalars(
            select(Sample).where(Sample.dataset_id == dataset_id, Sample.sample_key == key)
        ).first()


class RunRepository:
    def __init__(self, session: Session) -> None:
        self.s = session

    def add(self, run: Run) -> Run:
        self.s.add(run)
        self.s.flush()
        return run

    def get(self, run_id: int) -> Optional[Run]:
        return self.s.get(Run, run_id)

    def recent(self, limit: int = 50) -> Sequence[Run]:
        return self.s.scalars(select(Run).order_by(Run.id.desc()).limit(limit)).all()

    def open_for_job(self, job_id: int) -> Sequence[Run]:
        """Runs a job's attempts opened and nobody closed (their worker stopped)."""
        return self.s.scalars(select(Run).where(Run.job_id == job_id, Run.status == "running")
                              .order_by(Run.id)).all()


class ExplanationRepository:
    def __init__(self, session: Session) -> None:
        self.s = session

    def find(self, *, model_version_id: int, sample_sha256: str, method: str, target: int,
             params_sha256: str) -> Optional[Explanation]:
        return self.s.scalars(
            select(Explanation).where(
                Explanation.model_version_id == model_version_id,
                Explanation.sample_sha256 == sample_sha256,
                Explanation.method == method,
                Explanation.target == target,
                Explanation.params_sha256 == params_sha256,
            )
        ).first()

    def add(self, row: Explanation) -> Explanation:
        self.s.add(row)
        self.s.flush()
        return row

    def for_version(self, model_version_id: int, method: Optional[str] = None) -> Sequence[Explanation]:
        q = select(Explanation).where(Explanation.model_version_id == model_version_id)
        if method:
            q = q.where(Explanation.method == method)
        return self.s.scalars(q.order_by(Explanation.id)).all()

    def count(self, model_version_id: Optional[int] = None) -> int:
        q = select(func.count(Explanation.id))
        if model_version_id is not None:
            q = q.where(Explanation.model_version_id == model_version_id)
        return int(self.s.scalar(q) or 0)


class ResultRepository:
    def __init__(self, session: Session) -> None:
        self.s = session

    def add(self, row: AnalysisResult) -> AnalysisResult:
        self.s.add(row)
        self.s.flush()
        return row

    def find(self, *, kind: str, model_version_id: Optional[int], params_sha256: str) -> Optional[AnalysisResult]:
        return self.s.scalars(
            select(AnalysisResult).where(
                AnalysisResult.kind == kind,
                AnalysisResult.model_version_id == model_version_id,
                AnalysisResult.params_sha256 == params_sha256,
            )
        ).first()

    def for_version(self, model_version_id: int, kind: Optional[str] = None) -> Sequence[AnalysisResult]:
        q = select(AnalysisResult).where(AnalysisResult.model_version_id == model_version_id)
        if kind:
            q = q.where(AnalysisResult.kind == kind)
        return self.s.scalars(q.order_by(AnalysisResult.id)).all()


class ReportRepository:
    def __init__(self, session: Session) -> None:
        self.s = session

    def add(self, row: Report) -> Report:
        self.s.add(row)
        self.s.flush()
        return row

    def get(self, report_id: int) -> Optional[Report]:
        return self.s.get(Report, report_id)

    def for_version(self, model_version_id: int) -> Sequence[Report]:
        return self.s.scalars(
            select(Report).where(Report.model_version_id == model_version_id).order_by(Report.id.desc())
        ).all()

    def newest_first(self, model_version_ids: Optional[Iterable[int]] = None) -> Sequence[Report]:
        """Every report (or those of the given versions), newest first."""
        q = select(Report).order_by(Report.id.desc())
        if model_version_ids is not None:
            q = q.where(Report.model_version_id.in_(list(model_version_ids)))
        return self.s.scalars(q).all()

    def add_signoff(self, row: SignOff) -> SignOff:
        self.s.add(row)
        self.s.flush()
        return row

    def signoff_for_report(self, report_id: int) -> Optional[SignOff]:
        return self.s.scalars(select(SignOff).where(SignOff.report_id == report_id)).first()

    def signoffs_for_version(self, model_version_id: int) -> Sequence[SignOff]:
        """The version's sign-offs in the order they were recorded (at most one is accepted)."""
        return self.s.scalars(
            select(SignOff).where(SignOff.model_version_id == model_version_id).order_by(SignOff.id)
        ).all()


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.s = session

    def get(self, username: str) -> Optional[User]:
        return self.s.scalars(select(User).where(User.username == username)).first()

    def all(self) -> Sequence[User]:
        return self.s.scalars(select(User).order_by(User.username)).all()

    def add(self, user: User) -> User:
        self.s.add(user)
        self.s.flush()
        return user

    def count(self, role: Optional[str] = None) -> int:
        q = select(func.count(User.id))
        if role:
            q = q.where(User.role == role)
        return int(self.s.scalar(q) or 0)


class SettingsRepository:
    def __init__(self, session: Session) -> None:
        self.s = session

    def get(self, key: str) -> Optional[Setting]:
        return self.s.get(Setting, key)

    def put(self, key: str, value: Any, *, updated_by: str, updated_at: Any) -> Setting:
        row = self.s.get(Setting, key)
        if row is None:
            row = Setting(key=key, value=value, updated_by=updated_by, updated_at=updated_at)
            self.s.add(row)
        else:
            row.value, row.updated_by, row.updated_at = value, updated_by, updated_at
        self.s.flush()
        return row


def as_dict(row: Any, fields: Iterable[str]) -> dict[str, Any]:
    return {f: getattr(row, f) for f in fields}
