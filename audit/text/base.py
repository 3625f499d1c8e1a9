"""The text method base class, the padded batch a method reads, and the scores it returns.

A method class declares what it is (name, label, options, cost, what the batch's shared forward pass
must give it) and registers itself; its module only says how its scores come from the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from audit.declarations import Evaluations, Option, OptionsView

from . import registry
from ._encoding import EncodedText, PaddedBatch
from ._model import target_output
from .options import ENGINE_OPTIONS, TextOptions
from .registry import TextGeometry

__all__ = ["AttentionMethod", "Evaluations", "TextAttributionMethod", "TextBatch", "TextGeometry", "TextScores"]

BAD_DECLARATION = "text attribution method {cls}: {problem}"


@dataclass
class TextScores:
    """What a method gives for one batch: per text, a score per token (special tokens included); per
    word where the method scores words itself (else the token scores are summed into words); and the
    completeness gap sum(scores) - (f(x) - f(baseline)) where the method has one."""

    tokens: list[torch.Tensor]
    words: list[torch.Tensor] | None = None
    delta: torch.Tensor | None = None


@dataclass
class TextBatch:
    """One padded batch of texts and what its one shared forward pass produced."""

    model: nn.Module
    tokenizer: Any
    embedding: nn.Module  # the word-embedding layer (model.get_input_embeddings())
    encoded: list[EncodedText]
    padded: PaddedBatch
    targets: torch.Tensor  # [B]
    logits: torch.Tensor  # [B, labels], detached
    attentions: list[torch.Tensor] | None  # per text [layers, heads, T, T], when a method needs them
    shared_gradient: torch.Tensor | None  # gradient x input [B, T] from the shared pass, when it gave one
    options: TextOptions | OptionsView
    pad_id: int
    mask_id: int | None
    max_length: int
    device: torch.device

    def explained(self) -> torch.Tensor:
        """The explained scalar of each text on its own (the target's logit or probability), [B]."""
        return target_output(self.logits, self.targets, self.options.output)

    def unpad(self, scores: torch.Tensor) -> list[torch.Tensor]:
        """Per-text rows of a padded [B, T] tensor, cut back to each text's own tokens."""
        return [scores[i, : len(e)] for i, e in enumerate(self.encoded)]


class TextAttributionMethod:
    """A method reads one batch and returns raw token scores; it never normalises.

    Subclasses that set ``name`` register themselves. They declare as data: ``label`` (the name as people
    say it), ``summary`` (one line), ``paper``, ``options`` (every option they read: those that change
    their result, and execution ones with ``result=False``), ``default`` (run when no method is named),
    ``preselected`` (ticked where a person picks methods), what the batch's forward pass must give them
    (``needs_attentions``, ``shares_gradient``), and their cost (:meth:`evaluations`).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str] = ""  # the publication that defines the method, cited once in reports
    options: ClassVar[tuple[Option, ...]] = ()
    result_options: ClassVar[tuple[str, ...]] = ()  # derived on subclassing: own result options + shared
    stochastic: ClassVar[bool] = False  # True when a seed would change the scores (none of today's methods)
    listing: ClassVar[int] = 1000  # position in method listings (ties: registration order)
    default: ClassVar[bool] = False
    preselected: ClassVar[bool] = False
    needs_attentions: ClassVar[bool] = False  # the batch's forward returns every layer's attention
    shares_gradient: ClassVar[bool] = False  # the batch's forward keeps its graph for gradient x input

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.result_options = tuple(o.name for o in cls.options if o.result) + registry.SHARED_RESULT_OPTIONS
        if "name" not in cls.__dict__:
            return  # a family base or helper class, not a method
        problems = []
        for attr, what in (("label", "the method's name as people say it"), ("summary", "one line on what it does")):
            if not isinstance(cls.__dict__.get(attr), str):
                problems.append(f"set `{attr}`, {what}")
        names = [o.name for o in cls.options]
        if len(set(names)) != len(names):
            problems.append(f"options are declared twice: {names}")
        shadowed = sorted(set(names) & {o.name for o in ENGINE_OPTIONS})
        if shadowed:
            problems.append(f"{shadowed} are the engine's options, not the method's")
        if next(k for k in cls.__mro__ if "evaluations" in k.__dict__) is TextAttributionMethod:
            problems.append("declare its cost: a classmethod `evaluations(opts, geometry) -> Evaluations`")
        if problems:
            raise TypeError(BAD_DECLARATION.format(cls=cls.__qualname__, problem="; ".join(problems)))
        registry.register(cls)

    @classmethod
    def check_options(cls, opts: TextOptions) -> None:
        """Checks across several of the method's options (single values are checked by ``Option``)."""

    @classmethod
    def check_texts(cls, encoded: list[EncodedText], opts: TextOptions) -> None:
        """Refuse, before any model call, texts the method cannot attribute (ValueError saying why)."""

    @classmethod
    def evaluations(cls, opts: TextOptions, geometry: TextGeometry) -> Evaluations:
        """Rows the method sends through the model for ``geometry``, beyond the batch's shared forward."""
        raise NotImplementedError(f"{cls.__name__} does not declare its cost")

    def run(self, batch: TextBatch) -> TextScores:
        raise NotImplementedError


class AttentionMethod(TextAttributionMethod):
    """Scores read from the attention weights of the batch's shared forward pass: no evaluation of their own.
    A subclass says how one text's attentions [layers, heads, T, T] become a score per token."""

    needs_attentions = True

    @classmethod
    def evaluations(cls, opts: TextOptions, geometry: TextGeometry) -> Evaluations:
        return Evaluations(forward=0, backward=0)

    def score(self, attentions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def run(self, batch: TextBatch) -> TextScores:
        if batch.attentions is None:
            raise RuntimeError(f"{self.name} needs the attentions of the batch's forward pass, which did not return them")
        return TextScores(tokens=[self.score(a) for a in batch.attentions])
