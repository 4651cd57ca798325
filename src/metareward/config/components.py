"""Parts of a run named by `_target_` in the config (the preference loss, the optimizer, the LR schedule, the judge
prompt, the labelling of actor pairs), checked before any model loads and then built.

A component is a config node `{_target_: package.module.Class, <keyword parameters>}`; with `_partial_: true` the
caller supplies the leading arguments later (an optimizer gets the adapter parameters). Adding one is a class plus
a YAML file in its config group (`conf/dpo/loss/`, `conf/dpo/optimizer/`, `conf/dpo/lr_schedule/`,
`conf/judge/prompt/`, `conf/judge/ranking/`, `conf/pairs/label/`): nothing here names the classes. Problems are found in two passes, so that one mistake is reported once: the node's shape (a bare
name in the old `dpo.loss=ipo` spelling, a `_target_` that does not import, parameters the class does not take or
lacks), then, once the shape and the shared values are sound, whatever the constructor itself refuses.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metareward.core.losses import NLLRegularised, PreferenceLoss, with_nll_term
from metareward.core.pair_labels import HardLabels, PairLabels
from metareward.core.prompts import ADDITIVE_FIVE_POINT, JudgePrompt, JudgePromptError
from metareward.engine.ranking import ActorRanking, PointwiseRanking, RankingError
from metareward.engine.rejections import OwnRejections, Rejections
from metareward.training.optim import OptimSettings

TARGET, PARTIAL = "_target_", "_partial_"


@dataclass(frozen=True)
class Component:
    """The class at `target` and the keyword parameters the config gives it; `key` is where the node sits
    (`dpo.loss`), so that messages name it. An empty target stands for a node that could not be read."""

    key: str
    target: str
    params: dict[str, Any]
    partial: bool = False

    @property
    def group(self) -> str:
        """The config group that selects it: `dpo/loss` for the node at `dpo.loss`."""
        return self.key.replace(".", "/")

    def build(self, *args: Any) -> Any:
        """An instance, or with `_partial_` a callable that takes the remaining leading arguments."""
        factory = locate(self.target)
        if self.partial:
            return functools.partial(factory, *args, **self.params)
        return factory(*args, **self.params)

    def problems(self, supplied_later: int = 0) -> list[str]:
        """Does the target import, and does its signature take these parameters (and `supplied_later` leading
        positional arguments given at build time)? An unreadable node (empty target) was reported already."""
        if not self.target:
            return []
        try:
            factory = locate(self.target)
        except (ImportError, AttributeError, TypeError, ValueError) as error:
            reason = one_line(error)
            return [f"{self.key}._target_={self.target!r} does not import ({reason}); name it as package.module.Class"]
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):  # a builtin without a signature: its constructor will say
            return []
        try:
            signature.bind(*([None] * supplied_later), **self.params)
        except TypeError as error:
            reason = one_line(error)
            return [f"{self.key}: {self.target} does not accept these parameters ({reason}); {self._fix(signature)}"]
        return []

    def refused(self, *args: Any) -> list[str]:
        """Builds it (with `args`, and calls a partial with them) and reports what its constructor refuses."""
        try:
            built = self.build()
            if self.partial:
                built = built(*args)
        except Exception as error:  # noqa: BLE001 - the class is the user's: whatever it raises is a problem
            return [f"{self.key}: {self.target} refused its parameters: {one_line(error)}"]
        return []

    def _fix(self, signature: inspect.Signature) -> str:
        names = [name for name in signature.parameters if name not in ("self", "params")]
        return f"it takes {names}; fix the YAML file in conf/{self.group}/ or the {self.key}.<name> override"


def one_line(error: BaseException) -> str:
    """An exception's message on one line, as every config problem is."""
    return " ".join(str(error).split()) or type(error).__name__


def locate(target: str) -> Callable[..., Any]:
    """The object at the dotted path `target` (`torch.optim.AdamW`): the longest importable module, then
    attributes, as Hydra resolves `_target_`. Raises ImportError or AttributeError with a one-line reason."""
    parts = target.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError("not a dotted path")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError as error:
            if split == 1:
                raise ImportError(str(error)) from None
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        if not callable(found):
            raise TypeError(f"{target} is not callable")
        return found
    raise ImportError(f"no module in {target!r}")


def component(cfg: DictConfig, key: str, problems: list[str]) -> Component:
    """The component at `key`; what makes it unreadable goes to `problems` (and an empty component comes back)."""
    return node_component(OmegaConf.select(cfg, key, default=None), key, problems)


def node_component(node: Any, key: str, problems: list[str]) -> Component:
    """`node`, the config node found at `key`, as a component (see `component`)."""
    group = key.replace(".", "/")
    empty = Component(key, "", {})
    if node is None:
        problems.append(f"{key} is missing; select one with {group}=<name> (a YAML file in conf/{group}/)")
        return empty
    if not isinstance(node, DictConfig):
        problems.append(
            f"{key}={node!r} is the old spelling: select the {key.rsplit('.', 1)[-1]} with {group}={node} "
            f"(a YAML file in conf/{group}/)"
        )
        return empty
    try:
        params = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as error:
        problems.append(f"{key} cannot be read: {one_line(error)}")
        return empty
    target = params.pop(TARGET, None)  # type: ignore[union-attr]
    partial = params.pop(PARTIAL, False)  # type: ignore[union-attr]
    reserved = sorted(name for name in params if str(name).startswith("_"))  # type: ignore[union-attr]
    if not isinstance(target, str):
        problems.append(f"{key}._target_={target!r} is not a class path; name one as package.module.Class")
        return empty
    if reserved or not isinstance(partial, bool):
        problems.append(f"{key}: only _target_ and _partial_ (true or false) are understood here, not {reserved}")
        return empty
    return Component(key, target, params, partial)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DPOComponents:
    """What DPO trains with: the preference loss (plus the NLL term when `nll_weight > 0`), the optimizer over the
    adapter parameters and the per-iteration LR schedule."""

    loss: Component
    nll_weight: float
    optimizer: Component
    lr_schedule: Component
    reset_optimizer_each_iteration: bool

    def build_loss(self) -> PreferenceLoss | NLLRegularised:
        return with_nll_term(self.loss.build(), self.nll_weight)

    def build_optim(self) -> OptimSettings:
        return OptimSettings(self.optimizer.build(), self.lr_schedule.build(), self.reset_optimizer_each_iteration)

    def shape_problems(self) -> list[str]:
        """Targets that do not import and parameters the classes do not take (the optimizer takes the adapter
        parameters first, at build time)."""
        found = self.loss.problems() + self.lr_schedule.problems()
        if self.optimizer.target and not self.optimizer.partial:
            return found + ["dpo.optimizer needs `_partial_: true`: it is built later, with the adapter parameters"]
        return found + self.optimizer.problems(supplied_later=1)

    def refused(self) -> list[str]:
        """Each part built once, on a stand-in parameter for the optimizer: what a constructor refuses, a loss that
        is no PreferenceLoss, an optimizer without a learning rate, a schedule that gives no number."""
        found = self.loss.refused() + self.lr_schedule.refused()
        found += self.optimizer.refused([torch.nn.Parameter(torch.zeros(1))])
        if found:
            return found
        loss, optim = self.build_loss(), self.build_optim()
        if not isinstance(loss, (PreferenceLoss, NLLRegularised)):
            found.append(f"dpo.loss: {self.loss.target} is not a metareward.core.losses.PreferenceLoss")
        optimizer = optim.optimizer([torch.nn.Parameter(torch.zeros(1))])
        if not isinstance(optimizer, torch.optim.Optimizer) or "lr" not in optimizer.defaults:
            found.append(f"dpo.optimizer: {self.optimizer.target} is not a torch optimizer with a learning rate (lr)")
        elif not isinstance(_rate(optim, optimizer), float):
            found.append(f"dpo.lr_schedule: {self.lr_schedule.target}.rate(step, total_steps, peak_lr) gives no number")
        return found


def _rate(optim: OptimSettings, optimizer: torch.optim.Optimizer) -> Any:
    try:
        return float(optim.lr_schedule.rate(0, 2, float(optimizer.defaults["lr"])))
    except Exception:  # noqa: BLE001 - a schedule of the user's that gives no rate: the caller reports it
        return None


def dpo_components(cfg: DictConfig, problems: list[str], typed: bool = True) -> DPOComponents:
    """The `dpo` section's components; what makes one unreadable goes to `problems`. With `typed=False` (some
    value of the config has the wrong type) the numbers are not read, only the components' shapes."""
    return DPOComponents(
        loss=component(cfg, "dpo.loss", problems),
        nll_weight=float(cfg.dpo.nll_weight) if typed else 0.0,
        optimizer=component(cfg, "dpo.optimizer", problems),
        lr_schedule=component(cfg, "dpo.lr_schedule", problems),
        reset_optimizer_each_iteration=bool(cfg.dpo.reset_optimizer_each_iteration),
    )


def dpo_shape_problems(cfg: DictConfig) -> list[str]:
    """Every shape problem of the `dpo` components, without reading a number (for a config that has a value of
    the wrong type, whose settings cannot be built)."""
    found: list[str] = []
    components = dpo_components(cfg, found, typed=False)
    return found + components.shape_problems()


def checked_build(
    node: Component, problems: list[str], kind: type, settings_error: type[Exception] | None = None
) -> Any:
    """`node` built, or None with every problem added to `problems`, one sentence each: a `_target_` that does not
    import, parameters the class does not take, what its constructor refuses (each problem of a `settings_error`,
    which carries `.problems`, named by its key), a result that is no `kind`."""
    found = node.problems()
    if not node.target or found:
        problems += found
        return None
    caught = (settings_error,) if settings_error else ()  # () catches nothing: a class without a settings error
    try:
        built = node.build()
    except caught as error:
        problems += [f"{node.key}.{problem}" for problem in error.problems]  # type: ignore[attr-defined]
        return None
    except Exception as error:  # noqa: BLE001 - the class may be the user's: whatever it raises is a problem
        problems.append(f"{node.key}: {node.target} refused its parameters: {one_line(error)}")
        return None
    if not isinstance(built, kind):
        problems.append(f"{node.key}: {node.target} is not a {kind.__module__}.{kind.__qualname__}")
        return None
    return built


def judge_prompt(cfg: DictConfig, problems: list[str]) -> JudgePrompt:
    """The judge prompt at `judge.prompt` (conf/judge/prompt/), built. What is wrong with it goes to `problems`, one
    line per problem (a bad template, a scale whose minimum is not below its maximum, ...), and the default prompt
    stands in so that the other settings are still checked; such settings are never used."""
    built = checked_build(component(cfg, "judge.prompt", problems), problems, JudgePrompt, JudgePromptError)
    return ADDITIVE_FIVE_POINT if built is None else built


def pair_labels(cfg: DictConfig, problems: list[str]) -> PairLabels:
    """The labelling of actor pairs at `pairs.label` (conf/pairs/label/), built; what is wrong with it goes to
    `problems`, and hard labels stand in so that the other settings are still checked."""
    built = checked_build(component(cfg, "pairs.label", problems), problems, PairLabels)
    return HardLabels() if built is None else built


def rejections(cfg: DictConfig, problems: list[str]) -> Rejections:
    """Where actor pairs' rejected answers come from, at `pairs.rejected` (conf/pairs/rejected/), built; what is
    wrong with it goes to `problems`, and the model's own answers stand in so that the other settings are checked."""
    built = checked_build(component(cfg, "pairs.rejected", problems), problems, Rejections)
    return OwnRejections() if built is None else built


def actor_ranking(cfg: DictConfig, problems: list[str]) -> ActorRanking:
    """The ranking of the actor's responses at `judge.ranking` (conf/judge/ranking/), built; what is wrong with it
    goes to `problems`, each problem named by its key (`judge.ranking.method=...`), and the pointwise ranking stands
    in so that the other settings are still checked."""
    built = checked_build(component(cfg, "judge.ranking", problems), problems, ActorRanking, RankingError)
    return PointwiseRanking() if built is None else built


def judge_prompt_problems(cfg: DictConfig) -> list[str]:
    """Every problem of the judge prompt (for a config with a value of the wrong type, whose settings are not built)."""
    found: list[str] = []
    judge_prompt(cfg, found)
    return found
