"""ORM tables of the workbench (SQLAlchemy 2.0 typed declarative mapping).

The schema is created only through the Alembic migrations in ``storage/migrations``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

VERSION_STATUSES = ("draft", "in-review", "approved", "rejected")
RUN_STATUSES = ("pending", "running", "succeeded", "failed", "interrupted")
ROLES = ("admin", "auditor", "viewer")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelFamily(Base):
    __tablename__ = "model_families"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    task: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    versions: Mapped[list["ModelVersion"]] = relationship(
        back_populates="family", order_by="ModelVersion.id"
    )


class ModelVersion(Base):
    """An immutable registered model version; corrections are new versions."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("family_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("model_families.id"))
    version: Mapped[str] = mapped_column(String(40))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32))
    architecture: Mapped[str] = mapped_column(String(120))
    arch_kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    labels: Mapped[list[str]] = mapped_column(JSON)
    input_spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    target_layer: Mapped[Optional[str]] = mapped_column(String(200))
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("model_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    notes: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    family: Mapped[ModelFamily] = relationship(back_populates="versions")
    parent: Mapped[Optional["ModelVersion"]] = relationship(remote_side="ModelVersion.id")


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # image | text
    description: Mapped[str] = mapped_column(Text, default="")
    content_sha256: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    samples: Mapped[list["Sample"]] = relationship(back_populates="dataset", order_by="Sample.id")


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("dataset_id", "sample_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    sample_key: Mapped[str] = mapped_column(String(120))
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)
    # ``label`` is a position in the dataset's own name list (``Dataset.labels``); ``label_name`` the class
    # name it stands for. Consumers map names to a model's classes (audit.services.core.datasets.labels_for_model),
    # never positions.
    label: Mapped[Optional[int]] = mapped_column(Integer)
    label_name: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)
    groups: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    text: Mapped[Optional[str]] = mapped_column(Text)
    # A pixel box [x0, y0, x1, y1] in the stored image's coordinates (x1, y1 exclusive) that the data
    # declares for this sample, e.g. where a watermark sits; None when it declares none.
    region: Mapped[Optional[list[int]]] = mapped_column(JSON, nullable=True)
    # Or a binary mask of the stored image's size: the SHA-256 of its PNG artifact (nonzero = the region).
    # A sample declares at most one of the two.
    region_mask: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    dataset: Mapped[Dataset] = relationship(back_populates="samples")


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    model_version_id: Mapped[Optional[int]] = mapped_column(ForeignKey("model_versions.id"))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str] = mapped_column(String(32), default="cpu")
    library_versions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    error: Mapped[Optional[str]] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(80), default="system")
    # The job whose attempt opened the run (None outside the queue): a worker that dies leaves its run
    # open, and the worker that claims the job again closes it as interrupted.
    job_id: Mapped[Optional[int]] = mapped_column(Integer, index=True)


class Explanation(Base):
    """One stored attribution; the unique key makes the store a cache."""

    __tablename__ = "explanations"
    __table_args__ = (
        UniqueConstraint("model_version_id", "sample_sha256", "method", "target", "params_sha256"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    sample_id: Mapped[Optional[int]] = mapped_column(ForeignKey("samples.id"))
    sample_sha256: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(40))
    target: Mapped[int] = mapped_column(Integer)
    params_sha256: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attribution_sha256: Mapped[str] = mapped_column(String(64))
    attribution_shape: Mapped[list[int]] = mapped_column(JSON)
    model_output: Mapped[list[float]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str] = mapped_column(String(32), default="cpu")
    library_versions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # What the engine computed the map on: precision, model copy, occlusion crops, the bf16 guard's
    # outcome (audit.attribution.engine_record). None on rows stored before migration 0008.
    engine: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)


class AnalysisResult(Base):
    """A stored result of a concept test, bias audit, counterfactual search, drift check, ...

    ``kind`` says which; ``summary`` is the JSON that pages and reports read; large arrays live in
    the artifact store, referenced by ``artifact_sha256``.
    """

    __tablename__ = "analysis_results"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    model_version_id: Mapped[Optional[int]] = mapped_column(ForeignKey("model_versions.id"))
    other_version_id: Mapped[Optional[int]] = mapped_column(ForeignKey("model_versions.id"))
    dataset_id: Mapped[Optional[int]] = mapped_column(ForeignKey("datasets.id"))
    params_sha256: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    artifact_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str] = mapped_column(String(32), default="cpu")
    library_versions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id"))
    created_by: Mapped[str] = mapped_column(String(80), default="system")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Report(Base):
    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    signed: Mapped[bool] = mapped_column(Boolean, default=False)
    # The audit-log head at generation: the report.generate event (its hash covers the report's SHA-256).
    log_seq: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    log_hash: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)


class SignOff(Base):
    """The decision on a model version; at most one per version (a unique index, migration 0010)."""

    __tablename__ = "signoffs"
    __table_args__ = (Index("uq_signoffs_model_version_id", "model_version_id", unique=True),)
    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    decision: Mapped[str] = mapped_column(String(16))  # approved | rejected
    reason: Mapped[str] = mapped_column(Text)
    signed_by: Mapped[str] = mapped_column(String(80))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # What was signed (the stored file's SHA-256) and the audit-log head at signing (the report.sign event).
    report_sha256: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    log_seq: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    log_hash: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)


class AuditLogEntry(Base):
    """Append-only, hash-chained: each row's hash covers its content and the previous hash."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[str] = mapped_column(String(40))  # ISO timestamp, hashed verbatim
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(60))
    subject: Mapped[str] = mapped_column(String(255), default="")
    details: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON, hashed verbatim
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement "row ``seq`` of the audit log has hash ``hash``", keyed outside the database:
    rewriting the chain or cutting its tail no longer matches a checkpoint an attacker cannot re-sign."""

    __tablename__ = "audit_checkpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(40))  # ISO timestamp, signed verbatim
    key_id: Mapped[str] = mapped_column(String(16))  # which key signed it (a digest, never the key)
    signature: Mapped[str] = mapped_column(String(128))


class Setting(Base):
    """An installation setting changed by administrators (key -> JSON value); every change is audit-logged."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(80), default="system")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)



# Tables of other areas live in their own modules on the same Base; importing them here registers them.
from storage import orm_jobs, orm_sessions  # noqa: E402,F401
