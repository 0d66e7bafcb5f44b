"""Final training of a fixed architecture from scratch (reference sec. 4, "final" columns).

One run = one run directory. The loop is plain SGD (momentum 0.9, Nesterov) with the cosine
warm-restart learning rate set before every step from the fractional epoch, so nothing but
the counters in the checkpoint is needed to resume exactly. Choices where the reference is
silent or wrong:

- ``config.l2`` means the authors' flag. Their TF code adds ``l2 * sum(w ** 2)`` over every
  trainable variable to the loss, a gradient term of ``2 * l2 * w``; enastool gives SGD
  ``weight_decay = 2 * l2`` (torch's ``weight_decay = l2`` would be half the authors'
  decay) on every trainable parameter, batch-norm scales and shifts and the classifier bias
  included, as they do (``parameter_groups``; the search loop uses the same optimiser). The
  decay term is added after gradient clipping; in the authors' runs their clipping never
  took effect (reference sec. 6), so their decay was never clipped either.
- Gradient clipping is really applied (``clip_grad_norm_`` at ``config.grad_clip``; 0 = off),
  unlike the authors' code, which computed the clipped gradients and then ignored them.
- The auxiliary head is trained like every other parameter; its loss weight is
  ``config.aux_weight``.
- Training loss/accuracy in the logs are running means over the log interval, measured on
  rank 0's shard; the test figures cover the whole test set on every rank.
- A step never waits for the device: loss and correct counts accumulate as device tensors and
  are read (``.item()``) only when a log line is due. Each step emits a ``tick`` event (its
  number, a plain int) so that a progress bar moves every step without a sync.

Resume is exact: the checkpoint holds the network, the optimizer, the loader's position and
generator, every global generator (seeded from the run seed at the start, Python's and NumPy's
included, so the checkpoints of an interrupted and an uninterrupted run are the same bytes),
the sums of the log interval in progress, and the counters. Before anything is restored the
checkpoint is checked against the run (``enastool.checkpoints``): its kind and format, the
architecture, the data shape, and that every tensor fits the network built from the config.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..checkpoints import check_checkpoint, resume_fix
from ..data import Augment, DeviceLoader, load_dataset
from ..encoding.spaces import IMAGES, data_kind
from ..errors import EnasError
from ..runs import BEST_CHECKPOINT as BEST
from ..runs import LAST_CHECKPOINT as LAST
from ..runs import RunEvents, capture_rng_state, restore_rng_state, seed_generators
from . import distributed
from .device import autocast, needs_grad_scaler, resolve_placement
from .evaluate import (
    ARCH_FILE, CHECKPOINT_VERSION, EVAL_BATCH_MULTIPLIER, RUN_KIND, arch_record, build_network,
    evaluate_network, image_data_record, network_output, parse_arch_record,
)
from .schedule import CosineWarmRestarts, set_lr

RANK_SEED_STRIDE = 1_000_003  # keeps (rank, step) reseeds of different ranks apart

Callback = Callable[[dict], None]


@dataclass
class Progress:
    """The counters a checkpoint restores. ``epoch`` is the epoch in progress (0-based)."""

    epoch: int = 0
    step: int = 0  # optimizer steps taken since the start of the run
    best_accuracy: float = -1.0  # -1: not evaluated yet
    best_epoch: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "Progress":
        return cls(**{name: data[name] for name in cls().to_dict()})


class RunningMeter:
    """Sums of loss, correct and examples (images, tokens) kept on the device between log lines.

    The rate (``per_s`` of :meth:`read`) counts only the examples this process timed: a resumed
    interval restores the sums (so the means cover the whole interval) but not the clock, and
    dividing the restored count by the seconds since the resume gave rates 10x too high."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.images = 0
        self.timed = 0  # images added since the clock started
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, correct: torch.Tensor | None, images: int) -> None:
        """``loss`` is the mean over ``images`` examples; ``correct`` None: no accuracy (text)."""
        self.loss_sum += loss.double() * images
        if correct is not None:
            self.correct += correct
        self.images += images
        self.timed += images

    def state_dict(self) -> dict:
        """The sums, for a checkpoint (a resumed run's next record then covers the whole
        interval; the clock restarts)."""
        return {"loss_sum": self.loss_sum, "correct": self.correct, "images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.reset()
        self.loss_sum = state["loss_sum"].to(self.device)
        self.correct = state["correct"].to(self.device)
        self.images = int(state["images"])

    def read(self) -> dict:
        """Means since the last reset (this is the one host-device sync of a log interval), and
        ``per_s``: the images timed in this process per second."""
        seconds = max(time.perf_counter() - self.started, 1e-9)
        images = max(self.images, 1)
        return {
            "loss": self.loss_sum.item() / images,
            "acc": self.correct.item() / images,
            "seconds": seconds,
            "per_s": self.timed / seconds,
        }


# d/dw of l2 * w**2: the authors' loss term l2 * sum(w**2) is a weight decay of 2 * l2.
L2_GRADIENT_FACTOR = 2.0


def parameter_groups(model: torch.nn.Module, l2: float) -> list[dict]:
    """One group: every trainable parameter, with the weight decay of the authors' ``l2``
    flag (``2 * l2``, see the module docstring)."""
    params = [param for param in model.parameters() if param.requires_grad]
    return [{"params": params, "weight_decay": L2_GRADIENT_FACTOR * l2}]


def sgd_optimizer(model: torch.nn.Module | list[dict], config) -> torch.optim.SGD:
    """SGD with the config's momentum, Nesterov and L2 (the authors' meaning, on every
    parameter: ``parameter_groups``), starting at ``lr_max`` (the schedule sets the rate
    before every step). ``model`` may be a list of parameter groups with their own weight decay
    instead. Parameters whose gradient is None in a step are skipped entirely: no decay, no
    momentum."""
    groups = parameter_groups(model, config.l2) if isinstance(model, torch.nn.Module) else model
    return torch.optim.SGD(
        groups,
        lr=config.lr_max,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,  # torch refuses Nesterov without momentum
    )


class FinalTrainer(RunEvents):
    """Builds everything a final-training run needs and runs its epochs."""

    multi_process = True  # runs under torchrun, one process per device

    def __init__(self, arch, config, run, *, callback: Callback | None, interrupt):
        """``arch`` None means the config's own ``arch`` text (a resumed run knows its arch)."""
        if arch is None:
            if not config.arch:
                raise EnasError("train_final: no architecture given and the config has no 'arch'")
            arch = parse_arch_record(f"{config.space} {config.arch}", "config arch")
        elif config.arch and arch_record(arch) != f"{config.space} {config.arch}":
            # A resumed run trains the architecture it started with (config.json's arch).
            raise EnasError(
                f"the architecture given is another architecture than the run's ({config.space} "
                f"{config.arch[:30]}...); resume without SOURCE, or with the run's arch.txt"
            )
        self.arch = arch
        self.config = config
        self.run = run
        self.callback = callback
        self.interrupt = interrupt
        self.dist, self.device = distributed.init_distributed(config.device)
        self.placement = resolve_placement(config, self.device)
        self.dtype = self.placement.dtype
        self.channels_last = self.placement.channels_last
        self.compiled = self.placement.compile
        # Everything that can fail on the user's input (data, network, batch size) is built
        # here, so a caller can build first and create the run directory only afterwards.
        self._build()

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        config = self.config
        splits = load_dataset(config.dataset, config.data_dir, purpose="final")
        self.info = splits.info
        # The test split moves to the device once (uint8: 4x smaller than normalised floats).
        self.test_images = splits.test.images.to(self.device)
        self.test_labels = splits.test.labels.to(self.device)
        # Different ranks get different dropout / drop-path masks; DDP overwrites the initial
        # weights of ranks > 0 with rank 0's, so the model still starts equal everywhere.
        seed_generators(config.seed + self.dist.rank)
        model = build_network(self.arch, config, self.info.channels, self.info.num_classes)
        self.model = self.placement.prepare(model)
        self.loader = self._train_loader(splits.train)
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise EnasError(
                f"--batch-size {config.batch_size} x {self.dist.world_size} process(es) is larger "
                f"than the {splits.train.num_examples} training images of {config.dataset}; lower it"
            )
        self.optimizer = sgd_optimizer(self.model, config)
        self.schedule = CosineWarmRestarts.from_config(config)
        # Loss scaling only for float16; disabled it passes everything through unchanged.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=needs_grad_scaler(self.dtype))
        # Evaluation uses the bare module: DDP's forward is a collective, and ranks score
        # test shards of unequal length. Training steps go through DDP when there is one.
        self.eval_model = torch.compile(self.model) if self.compiled else self.model
        wrapped = distributed.wrap_ddp(self.model, self.device)
        if wrapped is self.model:
            self.step_model = self.eval_model
        else:
            self.step_model = torch.compile(wrapped) if self.compiled else wrapped
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.progress = Progress()
        self.interval = RunningMeter(self.device)  # the log interval in progress
        self.last_test: dict | None = None  # the latest test-set figures
        self.last_saved_step: int | None = None  # step of the newest last.pt

    def _train_loader(self, train) -> DeviceLoader:
        """The training loader. Every rank draws the same global batch of batch_size x world_size
        images from the same seed and keeps its own slice (see distributed.shard_batch)."""
        config, info = self.config, self.info
        images, labels = train
        augment = Augment(pad=config.augment_pad, flip=config.augment_flip, cutout=config.cutout)
        return DeviceLoader(
            images,
            labels,
            batch_size=config.batch_size * self.dist.world_size,
            device=self.device,
            mean=info.mean,
            std=info.std,
            train=True,
            augment=augment,
            drop_last=True,  # equal batch counts on every rank and equal steps per epoch
            seed=config.seed,
            channels_last=self.channels_last,
        )

    # ------------------------------------------------------------------ events and I/O
    def _emit(self, event: dict) -> None:
        if self.dist.is_main and self.callback is not None:
            self.callback(event)

    def _log(self, record: dict) -> None:
        if self.dist.is_main:
            self.run.log(record)

    def _checkpoint_state(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "kind": RUN_KIND,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "loader": self.loader.state_dict(),
            "rng": capture_rng_state(),
            "progress": self.progress.to_dict(),
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "best_accuracy": self.progress.best_accuracy,
            "meters": {"interval": self.interval.state_dict()},
            "arch": arch_record(self.arch),
            "network": self._network(),
            "data": image_data_record(self.info),
        }

    def _network(self) -> dict:
        return {"in_channels": self.info.channels, "num_classes": self.info.num_classes}

    def _save(self, name: str) -> None:
        if not self.dist.is_main:
            return
        if name == LAST and self.last_saved_step == self.progress.step:
            return  # already written at this step (epoch end followed by an interrupt)
        self.run.save_checkpoint(name, self._checkpoint_state())
        if name == LAST:
            self.last_saved_step = self.progress.step
        self._emit({"kind": "checkpoint", "name": name, "epoch": self.progress.epoch,
                    "step": self.progress.step})

    def _restore(self) -> None:
        if not self.run.has_checkpoint(LAST):
            # Stopped before its first checkpoint: start over, keeping nothing from that try.
            if self.dist.is_main:
                self.run.truncate_after(0)
            self._write_arch()
            return
        state = self.run.load_checkpoint(LAST)
        # What this trainer writes is what it needs back, but for "data" (the normalisation,
        # kept for export): recomputed from the data set here, and older checkpoints lack it.
        template = {key: value for key, value in self._checkpoint_state().items() if key != "data"}
        check_checkpoint(
            state, self.run.checkpoint_path(LAST), kind=RUN_KIND, version=CHECKPOINT_VERSION,
            expected={
                "arch": (arch_record(self.arch), "it was trained on another architecture; resume "
                         "with the architecture of the run (its arch.txt)"),
                "network": (self._network(), "it was trained on another data set; resume with the run's own"),
            },
            # The live optimizer checks its moments.
            template={**template, "optimizer": self.optimizer},
            fix=resume_fix(LAST),
        )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["loader"])
        self.progress = Progress.from_dict(state["progress"])
        self.interval.load_state_dict(state["meters"]["interval"])
        restore_rng_state(state["rng"])
        if self.dist.rank > 0:  # the checkpoint holds rank 0's generators: move off them
            torch.manual_seed(self.config.seed + self.dist.rank * RANK_SEED_STRIDE + self.progress.step)
        # A crash between a log line and the next checkpoint leaves lines from the future.
        if self.dist.is_main:
            self.run.truncate_after(self.progress.step)

    def _write_arch(self) -> None:
        """arch.txt, recorded in run.json: a run whose arch.txt is changed is not resumed."""
        if self.dist.is_main:
            self.run.record_file(ARCH_FILE, arch_record(self.arch) + "\n")

    # ------------------------------------------------------------------ the loop
    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.dtype):
            logits, aux_logits = network_output(self.step_model(x))
            loss = F.cross_entropy(logits.float(), y)
            if aux_logits is not None and self.config.aux_weight > 0:
                loss = loss + self.config.aux_weight * F.cross_entropy(aux_logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), (logits.detach().argmax(dim=1) == y).sum()

    def _set_lr(self, epoch_float: float) -> float:
        lr = self.schedule.lr_at(epoch_float)
        set_lr(self.optimizer, lr)
        return lr

    def _evaluate(self) -> dict:
        distributed.broadcast_buffers(self.model)  # every rank scores with the checkpoint's statistics
        return evaluate_network(
            self.eval_model,
            self.test_images,
            self.test_labels,
            self.config.batch_size * EVAL_BATCH_MULTIPLIER,
            self.device,
            mean=self.info.mean,
            std=self.info.std,
            channels_last=self.channels_last,
            dtype=self.dtype,
            dist_info=self.dist,
        )

    def _run_epoch(self) -> bool:
        """Train the rest of the epoch in progress; False when interrupted part-way."""
        config, progress = self.config, self.progress
        set_drop_path = getattr(self.model, "set_drop_path_progress", None)
        position = progress.step - progress.epoch * self.steps_per_epoch
        for index, (x, y) in enumerate(self.loader, start=position):
            epoch_float = progress.epoch + index / self.steps_per_epoch
            lr = self._set_lr(epoch_float)
            if set_drop_path is not None:  # the drop-path ramp, linear in the step
                set_drop_path(epoch_float / config.epochs)
            x, y = distributed.shard_batch(x, self.dist), distributed.shard_batch(y, self.dist)
            loss, correct = self._train_step(x, y)
            self.interval.add(loss, correct, y.shape[0])
            progress.step += 1
            self._emit({"kind": "tick", "step": progress.step})  # moves a progress bar; no sync
            if progress.step % config.log_every == 0:
                self._log_step(lr)
            last_of_epoch = index + 1 == self.steps_per_epoch
            if not last_of_epoch and self._interrupted():
                return False
        return True

    def _log_step(self, lr: float) -> None:
        meter = self.interval
        reading = meter.read()
        record = {
            "kind": "step",
            "step": self.progress.step,
            "epoch": self.progress.step / self.steps_per_epoch,
            "loss": reading["loss"],
            "acc": reading["acc"],
            "lr": lr,
            "images_per_s": reading["per_s"] * self.dist.world_size,
        }
        self._log(record)
        self._emit(record)
        meter.reset()

    def _end_epoch(self) -> None:
        """Evaluate when due, keep the best weights, write the epoch's record and last.pt.

        Every epoch gets a record (and an event: the epochs bar moves every epoch); the test
        figures are in the records of the epochs evaluated (every ``eval_every`` and the last)."""
        config, progress = self.config, self.progress
        progress.epoch += 1
        record = {"kind": "epoch", "epoch": progress.epoch, "step": progress.step}
        improved = False
        due = progress.epoch % max(config.eval_every, 1) == 0 or progress.epoch == config.epochs
        if due:
            result = self.last_test = self._evaluate()
            improved = result["accuracy"] > progress.best_accuracy
            if improved:
                progress.best_accuracy = result["accuracy"]
                progress.best_epoch = progress.epoch
            record.update({
                "test_accuracy": result["accuracy"],
                "test_loss": result["loss"],
                "test_images": result["images"],
                "best_accuracy": progress.best_accuracy,
            })
        self._log(record)
        self._emit(record)
        if improved:
            self._save(BEST)
        if progress.epoch % config.checkpoint_every == 0 or progress.epoch == config.epochs:
            self._save(LAST)

    def train(self, resume: bool) -> dict:
        config = self.config
        if self.dist.is_main and self.run is None:
            raise ValueError("FinalTrainer.train: rank 0 needs a RunDir (set .run)")
        if resume:
            self._restore()
        else:
            self._write_arch()
        self._emit({
            "kind": "start",
            "epochs": config.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": config.epochs * self.steps_per_epoch,
            "start_epoch": self.progress.epoch,
            "start_step": self.progress.step,
            **self.placement.describe(),
            "world_size": self.dist.world_size,
            "params": sum(p.numel() for p in self.params),
        })
        started = time.perf_counter()
        while self.progress.epoch < config.epochs:
            if not self._run_epoch():
                self._save(LAST)
                return self._result(interrupted=True, started=started)
            self._end_epoch()
            if self._interrupted() and self.progress.epoch < config.epochs:
                self._save(LAST)
                return self._result(interrupted=True, started=started)
        if self.last_test is None:  # resumed a run that had already finished
            self.last_test = self._evaluate()
        result = self._result(interrupted=False, started=started)
        self._emit({"kind": "done", **result})
        if self.dist.is_main and not self.run.finished():  # resuming a finished run adds nothing
            self._log({"kind": "done", **result})
        return result

    def _result(self, *, interrupted: bool, started: float) -> dict:
        test = self.last_test or {}
        return {
            "interrupted": interrupted,
            "test_accuracy": test.get("accuracy"),
            "test_loss": test.get("loss"),
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "best_accuracy": self.progress.best_accuracy,
            "best_epoch": self.progress.best_epoch,
            "seconds": time.perf_counter() - started,
        }


# The final trainer of each data kind (``enastool.encoding.spaces.DATA_KINDS``); each has the
# constructor signature and ``train(resume)`` of FinalTrainer. The text entry (``lm.LMTrainer``)
# is added by ``enastool.train``'s __init__: lm imports this module's helpers.
FINAL_TRAINERS: dict[str, type] = {IMAGES: FinalTrainer}


def final_trainer_class(space: str) -> type:
    """The final trainer class of ``space``'s data kind (its ``multi_process`` says whether it
    runs under torchrun)."""
    kind = data_kind(space)
    try:
        return FINAL_TRAINERS[kind]
    except KeyError:
        raise EnasError(f"train-final: no final trainer for {kind} (space {space}) yet") from None


def build_final_trainer(arch, config, run, *, callback: Callback | None = None, interrupt=None):
    """The final trainer of ``config.space``'s data kind, built (data, network) and ready to
    ``train(resume)``; ``run`` may be set afterwards (see FinalTrainer)."""
    cls = final_trainer_class(config.space)
    return cls(arch, config, run, callback=callback, interrupt=interrupt)


def train_final(arch, config, run, *, resume: bool = False, callback: Callback | None = None,
                interrupt=None) -> dict:
    """Train ``arch`` from scratch with ``config``; returns the final metrics.

    ``arch`` None means the config's own ``arch`` text. ``run`` is the RunDir (on ranks > 0 of a torchrun job it may be None, or opened read-only:
    only rank 0 writes). ``callback(event)`` receives progress events on rank 0: ``start``,
    ``tick`` (every step: its number only, for a progress bar), ``step`` (every ``log_every``
    steps), ``epoch`` (every epoch; test figures when evaluated), ``checkpoint``, ``done``. ``interrupt`` is anything with an
    ``interrupted`` attribute (a GracefulInterrupt): when it turns true the current step ends,
    last.pt is written and the result carries ``"interrupted": True``. ``resume=True`` continues
    from last.pt exactly: same next batch, same learning rate, same random state.
    """
    trainer = build_final_trainer(arch, config, run, callback=callback, interrupt=interrupt)
    return trainer.train(resume)
