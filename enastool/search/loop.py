"""The search loop: shared-weight training driven by a strategy, in a run directory.

The loop is the same for every space and strategy. What depends on the data and the networks
(batches, supernet, loss, rewards, derive scores) is the run's *task* (``tasks.py``: images
for macro and micro, text for rnn); what decides the children and learns from rewards is its *strategy*
(``strategies.py``). One epoch of a search (reference sec. 1 and 4):

1. one SGD step of the shared weights per training batch, each on a freshly chosen child
   (enas: sampled from the controller without grad; random: uniform; oneshot: every path with
   path dropout; nao: uniform from its pool);
2. the strategy updates due after those steps (enas: ``controller_updates`` controller
   updates, see ``strategies``, each child rewarded on the next validation batch with the
   shared weights, eval mode, no grad; nao at its evaluation points: scoring its pool, EPD
   training, generation, see ``nao``), one metrics record each; an epoch without updates has
   ``PROBE_ARCHS`` uniform architectures scored the same way, only to report a validation
   figure; an epoch with updates reports the mean of each update figure over the updates that
   have it;
3. an epoch record in metrics.jsonl and, every ``checkpoint_every`` epochs, last.pt.

The image task splits the data as the authors' search does: training batches from the
``train`` split, rewards and derive scores from the held-out ``valid`` split (``val_size``
re-cuts them); the test split is never read. The text task reads a corpus's train and valid
splits the same way (see ``TextTask``). Choices where the reference is silent or wrong:

- Gradient clipping of the shared weights is really applied (``clip_grad_norm_`` at
  ``grad_clip``; 0 = off). The authors' code computed clipped gradients and then ignored them.
- ``l2`` means the authors' flag: their loss gains ``l2 * sum(w ** 2)``, a gradient of
  ``2 * l2 * w``, which SGD applies as ``weight_decay = 2 * l2`` to every parameter, batch
  norms included (``parameter_groups``, shared with final training). Gradients are reset to
  None before each step and only the modules a step runs get a gradient, so SGD's momentum
  and weight decay touch only the parameters of the child that step trained (enas, random)
  or of the paths it kept (oneshot; Bender et al.: "L2 only on active paths"). The authors'
  ENAS search decays every variable in every step, unused ops included; enastool does not.
- The micro search supernet has no drop path (the authors' search child applies it only to
  fixed architectures); drop path is a final-training setting.
- The learning rate follows the cosine-restart curve per step (fractional epoch), as in final
  training; the controller phase does not advance it.
- Loss and accuracy accumulate on the device; the host reads them only when a record is due
  (each step emits only a ``tick`` event with its number, for a progress bar). The controller
  phase reads the rewards once per update.

Resume is exact: the checkpoint holds the supernet, the strategy (controller, its optimiser,
baseline, generators; nao's pool, scores and EPD), both optimisers' states, the task's state
(the loaders' positions and generators), the global RNG states (all seeded from the run seed,
Python's and NumPy's included), the running sums of the current log interval and epoch, and
the counters. A run
interrupted at any step (shared or controller) and resumed ends with the same weights, bit for
bit on the CPU, as one that never stopped, and writes the same checkpoint bytes. Before
anything is restored the checkpoint is checked against the run (``enastool.checkpoints``):
kind, format, space, strategy, data shape, and that every tensor fits what the config builds.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..checkpoints import check_checkpoint, resume_fix
from ..encoding.textio import format_record
from ..errors import EnasError
from ..runs import LAST_CHECKPOINT as LAST
from ..runs import RunEvents, capture_rng_state, restore_rng_state, seed_generators
from ..train import distributed
from ..train.device import autocast, needs_grad_scaler, resolve_placement
from ..train.schedule import CosineWarmRestarts, set_lr
from ..train.trainer import RunningMeter, sgd_optimizer
from .strategies import Strategy, build_strategy
from .tasks import RUN_KIND, SearchTask, build_task, uniform_arch

CHECKPOINT_VERSION = 2  # 2: micro x/y slot weights, no BN after macro layer 0
PROBE_ARCHS = 10  # random/oneshot: uniform architectures scored at each epoch end (a figure only)
PROBE_SEED_STRIDE = 1_000_003  # keeps (seed, epoch) probe seeds apart
# Controller figures averaged over an epoch's updates in its record (the baseline is its latest value).
# Step records carry the step's own figures only: the controller's are in its own records and
# the epoch's, so a step line never shows the previous epoch's reward as if it were current.
MEAN_FIGURES = (
    "reward", "valid_acc", "valid_ppl", "entropy", "controller_loss", "skip_rate", "skip_penalty",
)

Callback = Callable[[dict], None]


@dataclass
class Progress:
    """The counters a checkpoint restores. ``epoch`` is the epoch in progress (0-based)."""

    epoch: int = 0
    step: int = 0  # shared-weight steps since the start of the run
    controller_step: int = 0  # strategy updates (controller updates) since the start
    epoch_updates: int = 0  # strategy updates done after the current epoch's steps

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "Progress":
        return cls(**{name: data[name] for name in cls().to_dict()})


# ------------------------------------------------------------------------------ shared helpers
def check_single_process() -> None:
    """Search runs in one process: refuse under torchrun (WORLD_SIZE > 1)."""
    info = distributed.env_info()
    if info.world_size > 1:
        raise EnasError(
            f"search runs on one process, but WORLD_SIZE={info.world_size} says torchrun started "
            f"{info.world_size}; run `enastool search` without torchrun (the controller and the "
            "shared weights are updated one child at a time)"
        )


def run_expectations(config, network: dict) -> dict:
    """What a search checkpoint must say about its run (for ``check_checkpoint``)."""
    other_run = f"it was written by another search; put this run's own {LAST} back"
    return {
        "space": (config.space, other_run),
        "strategy_name": (config.strategy, other_run),
        "network": (network, "it was trained on another data set; use the run's own"),
    }


# ------------------------------------------------------------------------------ the loop
class SearchLoop(RunEvents):
    """Builds everything a search run needs and runs its epochs.

    ``run`` may be None while building, so that a caller can check the device, the data and
    the sizes before it creates a run directory; set ``self.run`` before :meth:`search`.
    """

    def __init__(self, config, run, *, callback: Callback | None = None, interrupt=None):
        check_single_process()
        self.config = config
        self.run = run
        self.callback = callback
        self.interrupt = interrupt
        self.placement = resolve_placement(config)
        self.device = self.placement.device
        self.dtype = self.placement.dtype
        self.channels_last = self.placement.channels_last
        self._build()

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        config = self.config
        seed_generators(config.seed)
        self.task: SearchTask = build_task(config, self.device, self.dtype, self.channels_last)
        self.placement.prepare(self.task.supernet)  # op kernels (and memory format) by the device
        self.supernet = self.task.supernet
        self.strategy: Strategy = build_strategy(config, self.device)
        self.strategy.prepare(self.task)
        self.steps_per_epoch = self.task.steps_per_epoch
        self.optimizer = sgd_optimizer(self.task.parameter_groups(), config)
        self.schedule = CosineWarmRestarts.from_config(config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=needs_grad_scaler(self.dtype))
        self.params = [p for p in self.supernet.parameters() if p.requires_grad]
        self.progress = Progress()
        self.interval = RunningMeter(self.device)  # the current log interval
        self.epoch_meter = RunningMeter(self.device)  # the current epoch
        self.figure_sums: dict = {}  # sums of the controller figures of the current epoch
        self.lr = config.lr_max  # the rate of the latest step
        self.last_arch: str | None = None  # record of the latest sampled architecture
        self.last_saved_step: tuple[int, int, int] | None = None  # _position() of the newest last.pt

    # ------------------------------------------------------------------ events and I/O
    def _checkpoint_state(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "kind": RUN_KIND,
            "space": self.config.space,
            "strategy_name": self.config.strategy,
            "supernet": self.supernet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "strategy": self.strategy.state_dict(),
            "task": self.task.state_dict(),
            "rng": capture_rng_state(),
            "progress": self.progress.to_dict(),
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "meters": {"interval": self.interval.state_dict(), "epoch": self.epoch_meter.state_dict()},
            "figure_sums": dict(self.figure_sums),
            "last_arch": self.last_arch,
            "network": dict(self.task.network),
        }

    def _position(self) -> tuple[int, int, int]:
        return (self.progress.epoch, self.progress.step, self.progress.controller_step)

    def _save(self) -> None:
        where = self._position()
        if self.last_saved_step == where:
            return  # already written here (epoch end followed by an interrupt)
        self.run.save_checkpoint(LAST, self._checkpoint_state())
        self.last_saved_step = where
        self._emit({"kind": "checkpoint", "name": LAST, "epoch": self.progress.epoch,
                    "step": self.progress.step})

    def _restore(self) -> None:
        if not self.run.has_checkpoint(LAST):
            # Stopped (hard) before its first checkpoint: nothing to keep but the config.
            self._forget_records_after(self.progress)
            return
        state = self.run.load_checkpoint(LAST)
        check_checkpoint(
            state, self.run.checkpoint_path(LAST), kind=RUN_KIND, version=CHECKPOINT_VERSION,
            expected=run_expectations(self.config, self.task.network),
            # What this loop writes is what it needs back; the live optimizer checks its moments.
            template={**self._checkpoint_state(), "optimizer": self.optimizer},
            fix=resume_fix(LAST),
        )
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.strategy.load_state_dict(state["strategy"])
        self.task.load_state_dict(state["task"])
        restore_rng_state(state["rng"])
        self.progress = Progress.from_dict(state["progress"])
        self.interval.load_state_dict(state["meters"]["interval"])
        self.epoch_meter.load_state_dict(state["meters"]["epoch"])
        self.figure_sums = dict(state["figure_sums"])
        self.last_arch = state["last_arch"]
        self.last_saved_step = self._position()
        self.lr = self.schedule.lr_at(max(self.progress.step - 1, 0) / self.steps_per_epoch)
        self._forget_records_after(self.progress)

    def _forget_records_after(self, progress: Progress) -> None:
        """Drop metrics written after the checkpoint (a hard stop): they are about to be redone."""
        self.run.truncate_after(progress.step)
        records = self.run.read_metrics()
        kept = [
            r for r in records
            if r.get("controller_step", 0) <= progress.controller_step
            and not (r.get("kind") == "epoch" and r.get("epoch", 0) > progress.epoch)
        ]
        if len(kept) != len(records):
            self.run.rewrite_metrics(kept)

    # ------------------------------------------------------------------ shared-weight phase
    def _train_step(self, batch) -> tuple[torch.Tensor, torch.Tensor | None, int, object]:
        """One SGD step of the shared weights on a fresh child; (loss, correct, count, child)."""
        epoch = self.progress.step / self.steps_per_epoch
        self.lr = self.schedule.lr_at(epoch)
        set_lr(self.optimizer, self.lr * self.task.lr_factor(batch))
        child = self.strategy.child()
        with autocast(self.device, self.dtype):
            loss, reported, correct, count = self.task.train_loss(batch, self.strategy, child, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return reported, correct, count, child

    def _shared_phase(self) -> bool:
        """The rest of the epoch's shared-weight steps; False when interrupted part-way."""
        progress = self.progress
        done = progress.step - progress.epoch * self.steps_per_epoch
        if done >= self.steps_per_epoch:
            return True
        self.supernet.train()
        for batch in self.task.train_batches():
            loss, correct, count, child = self._train_step(batch)
            self.interval.add(loss, correct, count)
            self.epoch_meter.add(loss, correct, count)
            progress.step += 1
            self._emit({"kind": "tick", "step": progress.step})  # moves a progress bar; no sync
            if progress.step % self.config.log_every == 0:
                self._log_step(child)
            # After the last step the loop runs out first, so the loader rolls over to its
            # next epoch and the checkpoint matches an uninterrupted run's exactly.
            last_of_epoch = progress.step == (progress.epoch + 1) * self.steps_per_epoch
            if not last_of_epoch and self._interrupted():
                return False
        return not self._interrupted()

    def _log_step(self, child) -> None:
        reading = self.interval.read()
        epoch = self.progress.step / self.steps_per_epoch
        record = {
            "kind": "step",
            "step": self.progress.step,
            "epoch": epoch,
            **self.task.figures(reading),
            "lr": self.lr,
            f"{self.task.unit}_per_s": reading["per_s"],
            **self.strategy.step_figures(epoch),
        }
        if child is not None:
            record["arch"] = self.last_arch = format_record(child)
        self._record(record)
        self.interval.reset()

    # ------------------------------------------------------------------ validation phase
    def _update_phase(self) -> bool:
        """The strategy updates due after the epoch's steps (enas: controller updates), each
        reading the shared weights through the task; False when interrupted part-way."""
        progress = self.progress
        self.supernet.eval()
        try:
            while self.strategy.update_due(progress.epoch, progress.epoch_updates):
                figures = self.strategy.update(self.task)
                progress.controller_step += 1
                progress.epoch_updates += 1
                self._add_figures(figures)
                self.last_arch = figures.get("arch", self.last_arch)
                self._record({
                    "kind": "controller",
                    "step": progress.step,
                    "controller_step": progress.controller_step,
                    "epoch": progress.step / self.steps_per_epoch,
                    "controller_updates": self.strategy.updates_per_epoch,
                    **figures,
                })
                if self._interrupted():
                    return False
        finally:
            self.supernet.train()
        return True

    @torch.no_grad()
    def _probe(self) -> dict:
        """The reward figures of PROBE_ARCHS uniform architectures (random, oneshot: a figure
        only, so that every strategy reports how the shared weights rank on validation data)."""
        rng = random.Random(self.config.seed * PROBE_SEED_STRIDE + self.progress.epoch)
        self.supernet.eval()
        try:
            rewards = [self.task.reward(uniform_arch(self.config, rng)) for _ in range(PROBE_ARCHS)]
        finally:
            self.supernet.train()
        return self.task.reward_figures(torch.stack(rewards).float().tolist())

    def _add_figures(self, figures: dict) -> None:
        sums = self.figure_sums
        counts = sums.setdefault("counts", {})  # per figure: not every update has every figure
        for name in MEAN_FIGURES:
            if name in figures:
                sums[name] = sums.get(name, 0.0) + figures[name]
                counts[name] = counts.get(name, 0) + 1
        sums["updates"] = sums.get("updates", 0) + 1
        if "baseline" in figures:
            sums["baseline"] = figures["baseline"]

    # ------------------------------------------------------------------ epoch end
    def _end_epoch(self) -> None:
        config, progress = self.config, self.progress
        reading = self.epoch_meter.read()
        record = {
            "kind": "epoch",
            "step": progress.step,
            "epoch": progress.epoch + 1,
            **self.task.figures(reading),
            "lr": self.lr,
            f"{self.task.unit}_per_s": reading["per_s"],
            **self.strategy.step_figures(float(progress.epoch + 1)),
        }
        sums = self.figure_sums
        if sums.get("updates"):
            counts = sums.get("counts", {})  # absent from checkpoints of older versions: all updates
            record.update({name: sums[name] / counts.get(name, sums["updates"]) for name in MEAN_FIGURES
                           if name in sums})
            if "baseline" in sums:
                record["baseline"] = sums["baseline"]
            record["controller_step"] = progress.controller_step
        else:
            record.update(self._probe())
        if self.last_arch is not None:
            record["arch"] = self.last_arch
        progress.epoch += 1
        progress.epoch_updates = 0
        self.epoch_meter.reset()
        self.figure_sums = {}
        self._record(record)
        if progress.epoch % config.checkpoint_every == 0 or progress.epoch == config.epochs:
            self._save()

    # ------------------------------------------------------------------ run
    def search(self, resume: bool = False) -> dict:
        config = self.config
        if resume:
            self._restore()
        self.strategy.attach(self.run)
        self._emit({
            "kind": "start",
            "space": config.space,
            "strategy": config.strategy,
            "epochs": config.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": config.epochs * self.steps_per_epoch,
            "controller_updates": self.strategy.updates_per_epoch,
            "start_epoch": self.progress.epoch,
            "start_step": self.progress.step,
            **self.placement.describe(),
            "params": sum(p.numel() for p in self.params),
        })
        started = time.perf_counter()
        while self.progress.epoch < config.epochs:
            if not self._shared_phase() or not self._update_phase():
                return self._stop(started)
            self._end_epoch()
            if self._interrupted() and self.progress.epoch < config.epochs:
                return self._stop(started)
        result = self._result(interrupted=False, started=started)
        if self.run.finished():  # resuming a finished run adds no second record
            self._emit({"kind": "done", **result})
        else:
            self._record({"kind": "done", **result})
        return result

    def _stop(self, started: float) -> dict:
        self._save()
        return self._result(interrupted=True, started=started)

    def _result(self, *, interrupted: bool, started: float) -> dict:
        return {
            "interrupted": interrupted,
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "controller_step": self.progress.controller_step,
            "arch": self.last_arch,
            "seconds": time.perf_counter() - started,
        }


def search(config, run, *, resume: bool = False, callback: Callback | None = None, interrupt=None) -> dict:
    """Run (or, with ``resume``, continue) the search ``config`` describes in ``run``.

    ``run`` is the RunDir created for ``config`` (RunDir.create, or RunDir.open to resume).
    ``callback(event)`` receives the progress events: ``start``, ``tick`` (every step: its
    number only, for a progress bar), ``step`` (every ``log_every`` steps), ``controller``
    (every controller update), ``epoch``, ``checkpoint``, ``done``; step, controller and epoch
    events are also the records of metrics.jsonl.
    ``interrupt`` is anything with an ``interrupted`` attribute (a GracefulInterrupt): once it
    turns true the current step or update ends, last.pt is written and the result carries
    ``"interrupted": True``. Refuses to run under torchrun with more than one process.
    """
    return SearchLoop(config, run, callback=callback, interrupt=interrupt).search(resume)
