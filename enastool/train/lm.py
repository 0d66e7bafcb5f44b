"""Final training and evaluation of a recurrent cell's language model (space rnn, reference sec. 8).

``LMTrainer`` has the constructor and ``train(resume)`` of ``FinalTrainer`` (same events, run
directory, last.pt / best.pt, interrupts and exact resume); it is the final trainer of the
text data kind. The recipe is the authors' corrected code (google-research ``enas_lm``,
``fixed.py`` / ``fixed_lib.py``):

- plain SGD (the config's ``momentum``, 0 in the presets) at ``lr_max`` (the rnn presets set
  ``lr_min = lr_max``: a constant 20), times ``seq_len / bptt`` for each random-length window;
  the gradient norm clipped at ``grad_clip`` (0.25);
- loss = cross-entropy + ``l2 * sum(w^2)`` over every weight (embedding included) +
  ``alpha * mean(out^2)`` + ``beta * mean((out_t+1 - out_t)^2)``; no SGD weight decay on top;
- the network's variational dropouts at the config's ``drop_*`` rates (``RecurrentNet``);
- the hidden state is carried from window to window (detached) and zeroed when the training
  stream starts a new pass, as the reference's ``reset_batch_states``;
- NT-ASGD (AWD-LSTM's non-monotonically triggered averaging, as the reference): after each
  validation, if averaging has not started, there are more than ``nonmono`` earlier
  validations and this perplexity is worse than the best of all of them but the last
  ``nonmono``, averaging starts: from the next step on, every step updates a running mean of
  the weights, and every later validation (and the test, and ``evaluate``) uses that mean.
  SGD itself goes on with the raw weights.
- validation every ``eval_every`` epochs on the whole valid split, ``batch_size`` streams,
  windows of ``bptt``, the state carried from a zero start (the reference's ``eval_valid``);
  the test perplexity once, at the end, with ``test_batch_size`` streams (the reference: 1,
  which with the state carried makes the window length irrelevant) on the whole test split.
  best.pt is the epoch with the best *validation* perplexity (the test split is read once).

Where this differs from the reference, and why:

- An epoch is ``nominal_windows`` training windows (``(L - 1) // bptt``, the reference's
  ``num_train_batches``), taken from the endless random-length stream, so every epoch has the
  same number of steps (progress bars, resume, the schedule) and ``epochs`` of them are the
  reference's step budget. The reference validates when the stream's pass ends instead; a
  pass is about 4 % longer (random windows average 0.96 bptt), so validations come a little
  more often here, and the hidden-state reset stays tied to the pass, as there.
- torchrun is refused: the reference trains the language model on one device, and splitting
  its batch of parallel streams across processes would change what each stream sees.

Resume is exact (bit for bit on the CPU): the checkpoint holds the weights, the optimiser, the
stream position (its lengths are rebuilt from the seed), the hidden state, the running mean
and its count, the validation history, the random generators, the loss sums of the current
log interval and the counters.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from ..data import TextBatches, load_corpus
from ..data.streams import fixed_schedule
from ..checkpoints import check_checkpoint, resume_fix
from ..data.text import Corpus
from ..errors import EnasError
from ..nn.counting import count_params
from ..nn.recurrent import DropRates, LMOutput, RecurrentNet, activation_penalty, cell_step
from ..runs import BEST_CHECKPOINT as BEST
from ..runs import LAST_CHECKPOINT as LAST
from ..runs import RunDir, RunEvents, capture_rng_state, restore_rng_state, seed_generators
from . import distributed
from .device import autocast, autocast_dtype, needs_grad_scaler, resolve_device, use_compile
from .evaluate import (
    ARCH_FILE, CHECKPOINT_VERSION, RUN_KIND, arch_record, final_checkpoint_name,
    parse_arch_record,
)
from .schedule import CosineWarmRestarts, set_lr
from .trainer import RunningMeter, sgd_optimizer

# math.exp overflows past ~709.78: a loss beyond this reports an infinite perplexity.
MAX_LOG_PERPLEXITY = 700.0

Callback = Callable[[dict], None]


# ---------------------------------------------------------------------------- shared helpers
# What every reader of an rnn final checkpoint needs (evaluate checks it before any use).
HEADER_TEMPLATE = {"arch": "", "network": {"vocab_size": 0, "corpus_digest": ""}, "epoch": 0, "model": {}}


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy per token), inf where that overflows (NaN stays NaN)."""
    return math.exp(loss) if not loss > MAX_LOG_PERPLEXITY else math.inf


def drop_rates(config) -> DropRates:
    """The ``drop_*`` settings of a config as the networks' DropRates."""
    return DropRates(
        words=config.drop_words, embedding=config.drop_embedding, inputs=config.drop_inputs,
        hidden=config.drop_hidden, output=config.drop_output, weights=config.drop_weights,
    )


def token_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``[batch, time, vocab]`` logits against ``[batch, time]`` targets, in
    float32 whatever the autocast dtype."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction=reduction)


def text_batches(corpus: Corpus, split: str, batch_size: int, bptt: int, device, **options) -> TextBatches:
    """TextBatches over one split, with errors that name the data set, the split and the fix."""
    try:
        return TextBatches(corpus.split(split), batch_size, bptt, device, **options)
    except EnasError as error:
        raise EnasError(f"{corpus.info.name} {split} split: {error}") from None


@torch.no_grad()
def evaluate_lm(
    forward: Callable[[torch.Tensor, torch.Tensor | None], LMOutput],
    windows: Iterable,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
) -> dict:
    """Mean cross-entropy per token, perplexity and token count of ``forward`` over ``windows``.

    ``forward(x, state)`` runs one window (state None: zeros); each window's final state goes
    on to the next, from a zero start (the final network's valid and test evaluation, as the
    reference's). Every target is counted once, so a short last window weighs by its tokens.
    One host read, at the end.
    """
    total = torch.zeros((), dtype=torch.float64, device=device)
    tokens, state = 0, None
    for window in windows:
        with autocast(device, dtype):
            output = forward(window.x, state)
        total += token_loss(output.logits, window.y, reduction="sum").double()
        tokens += window.y.numel()
        state = output.state
    loss = total.item() / tokens if tokens else math.nan
    return {"loss": loss, "perplexity": perplexity(loss), "tokens": tokens}


def build_lm(arch, config, vocab_size: int) -> RecurrentNet:
    """The final network of ``arch`` at the config's size, dropout and initial range."""
    return RecurrentNet(arch, vocab_size, hidden=config.hidden_size, drop=drop_rates(config),
                        init_range=config.init_range)


class WeightAverage:
    """The running mean of a list of parameters (NT-ASGD): ``update`` after each step."""

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        self.count = 0
        self.means: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self) -> None:
        """mean += (w - mean) / n, the reference's ``mu * v + (1 - mu) * avg`` with mu = 1/n."""
        self.count += 1
        if self.count == 1:
            self.means = [p.detach().clone() for p in self.params]
            return
        for mean, param in zip(self.means, self.params):
            mean.lerp_(param.detach(), 1.0 / self.count)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The parameters hold the means inside the block and their own values after it."""
        if self.count == 0:  # nothing averaged yet: the weights are their own mean
            yield
            return
        with torch.no_grad():
            backup = [p.detach().clone() for p in self.params]
            for param, mean in zip(self.params, self.means):
                param.copy_(mean)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, saved in zip(self.params, backup):
                    param.copy_(saved)

    def state_dict(self) -> dict:
        return {"count": self.count, "means": list(self.means)}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state["count"])
        self.means = [m.to(p.device) for m, p in zip(state["means"], self.params)]


def averaging_due(history: list[float], ppl: float, nonmono: int) -> bool:
    """NT-ASGD's trigger: more than ``nonmono`` earlier validations, and ``ppl`` worse than the
    best of them all but the last ``nonmono`` (AWD-LSTM's and the reference's condition)."""
    return len(history) > nonmono and ppl > min(history[:-nonmono])


def check_single_process(space: str) -> None:
    """EnasError under torchrun (WORLD_SIZE > 1): language models train in one process."""
    launched = distributed.env_info()
    if launched.enabled:
        raise EnasError(
            f"train-final: {space} language models train in one process, but WORLD_SIZE="
            f"{launched.world_size} says torchrun started {launched.world_size}; run it without torchrun"
        )


@dataclass
class Progress:
    """The counters a checkpoint restores. ``epoch`` is the epoch in progress (0-based)."""

    epoch: int = 0
    step: int = 0  # optimizer steps taken since the start of the run
    best_valid_ppl: float = math.inf  # inf: not validated yet
    best_epoch: int = 0
    valid_history: list[float] = field(default_factory=list)  # every validation, in order
    averaging_epoch: int = 0  # the epoch after which NT-ASGD averaging started (0: not yet)

    def to_dict(self) -> dict:
        return {**self.__dict__, "valid_history": list(self.valid_history)}

    @classmethod
    def from_dict(cls, data: dict) -> "Progress":
        return cls(**{name: data[name] for name in cls().to_dict()})


def check_corpus(state: dict, corpus: Corpus, where: str) -> None:
    """EnasError when ``corpus`` is not the one the checkpoint's network was trained on."""
    network = state.get("network", {})
    if network.get("corpus_digest") != corpus.info.digest:
        raise EnasError(
            f"{where}: the network was trained on a corpus with digest "
            f"{str(network.get('corpus_digest'))[:16]}, {corpus.info.name} here has "
            f"{corpus.info.digest[:16]} ({corpus.info.source}); use the corpus it was trained on"
        )


# ---------------------------------------------------------------------------- final training
class LMTrainer(RunEvents):
    """Builds everything a final training of a recurrent cell needs and runs its epochs."""

    multi_process = False  # one process: torchrun is refused (module docstring)

    def __init__(self, arch, config, run, *, callback: Callback | None, interrupt):
        """``arch`` None means the config's own ``arch`` text (a resumed run knows its arch)."""
        if arch is None:
            if not config.arch:
                raise EnasError("train_final: no architecture given and the config has no 'arch'")
            arch = parse_arch_record(f"{config.space} {config.arch}", "config arch")
        check_single_process(config.space)
        self.arch = arch
        self.config = config
        self.run = run
        self.callback = callback
        self.interrupt = interrupt
        self.device = resolve_device(config.device)
        self.dtype = autocast_dtype(config, self.device)
        self.compiled = use_compile(config, self.device)
        # Everything that can fail on the user's input (data, network, batch sizes) is built
        # here, so that a caller can build first and create the run directory afterwards.
        self._build()

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        config, device = self.config, self.device
        corpus = load_corpus(config.dataset, config.data_dir)
        self.corpus_info = corpus.info
        self.train_stream = text_batches(corpus, "train", config.batch_size, config.bptt, device,
                                         random_length=True, seed=config.seed)
        self.valid_stream = text_batches(corpus, "valid", config.batch_size, config.bptt, device)
        self.test_stream = text_batches(corpus, "test", config.test_batch_size, config.bptt, device)
        self.steps_per_epoch = self.train_stream.nominal_windows
        if self.steps_per_epoch == 0:
            raise EnasError(
                f"--batch-size {config.batch_size} and --bptt {config.bptt} leave no full window in the "
                f"{corpus.info.tokens['train']} training tokens of {config.dataset}; lower them"
            )
        seed_generators(config.seed)
        self.model = build_lm(self.arch, config, corpus.info.vocab_size).to(device)
        if self.compiled:  # the time step, compiled once for this cell (see enastool.nn.recurrent)
            self.model.step = torch.compile(cell_step)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # The weight decay is in the loss (l2 * sum(w^2)), as the reference: none in SGD.
        self.optimizer = sgd_optimizer([{"params": self.params, "weight_decay": 0.0}], config)
        self.schedule = CosineWarmRestarts.from_config(config)
        self.scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(self.dtype))
        self.progress = Progress()
        self.hidden = self._zero_state()  # the state carried between training windows (float32)
        self.average: WeightAverage | None = None  # NT-ASGD, once triggered
        self.meter = RunningMeter(device)  # the training loss of the current log interval
        self.last_test: dict | None = None
        self.last_saved_step: int | None = None

    # ------------------------------------------------------------------ events and I/O
    def _checkpoint_state(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "kind": RUN_KIND,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_stream": self.train_stream.state_dict(),
            "hidden": self.hidden,
            "average": None if self.average is None else self.average.state_dict(),
            "meter": self.meter.state_dict(),
            "rng": capture_rng_state(),
            "progress": self.progress.to_dict(),
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "test": dict(self.last_test) if self.last_test else None,
            "arch": arch_record(self.arch),
            "network": self._network(),
        }

    def _save(self, name: str) -> None:
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
            self.run.truncate_after(0)
            self._write_arch()
            return
        state = self.run.load_checkpoint(LAST)
        average = state.get("average")
        check_checkpoint(
            state, self.run.checkpoint_path(LAST), kind=RUN_KIND, version=CHECKPOINT_VERSION,
            expected={
                "arch": (arch_record(self.arch), "it was trained on another architecture; resume "
                         "with the architecture of the run (its arch.txt)"),
                "network": (self._network(), "it was trained on another corpus; resume with the "
                            "corpus it was trained on"),
            },
            # What this trainer writes is what it needs back; the live optimizer checks its moments.
            template={
                **self._checkpoint_state(),
                "optimizer": self.optimizer,
                "average": (None if average is None
                            else {"count": 0, "means": [torch.zeros_like(p) for p in self.params]}),
                "test": {} if isinstance(state.get("test"), dict) else None,
            },
            fix=resume_fix(LAST),
        )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.train_stream.load_state_dict(state["train_stream"])
        self.hidden = state["hidden"].to(self.device)
        if state["average"] is not None:
            self.average = WeightAverage(self.params)
            self.average.load_state_dict(state["average"])
        self.meter.load_state_dict(state["meter"])
        self.progress = Progress.from_dict(state["progress"])
        self.last_test = state.get("test")
        restore_rng_state(state["rng"])
        self.last_saved_step = self.progress.step
        # A crash between a log line and the next checkpoint leaves lines from the future.
        self.run.truncate_after(self.progress.step)

    def _write_arch(self) -> None:
        """arch.txt, recorded in run.json: a run whose arch.txt is changed is not resumed."""
        self.run.record_file(ARCH_FILE, arch_record(self.arch) + "\n")

    def _network(self) -> dict:
        return {"vocab_size": self.corpus_info.vocab_size, "corpus_digest": self.corpus_info.digest}

    def _zero_state(self) -> torch.Tensor:
        return torch.zeros(self.config.batch_size, self.config.hidden_size, device=self.device)

    # ------------------------------------------------------------------ the loop
    def _train_step(self, window) -> torch.Tensor:
        config = self.config
        with autocast(self.device, self.dtype):
            output = self.model(window.x, state=self.hidden)
            loss = token_loss(output.logits, window.y)
            total = (loss + config.l2 * self.model.l2_penalty()
                     + activation_penalty(output.outputs.float(), config.alpha, config.beta))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.hidden = output.state.detach().float()
        return loss.detach()

    def _run_epoch(self) -> bool:
        """Train the rest of the epoch in progress; False when interrupted part-way."""
        config, progress = self.config, self.progress
        position = progress.step - progress.epoch * self.steps_per_epoch
        for index in range(position, self.steps_per_epoch):
            if self.train_stream.at_epoch_start:
                self.hidden = self._zero_state()  # a new pass over the training streams
            window = self.train_stream.next_window()
            lr = self.schedule.lr_at(progress.epoch + index / self.steps_per_epoch)
            set_lr(self.optimizer, lr * window.seq_len / config.bptt)
            loss = self._train_step(window)
            if self.average is not None:
                self.average.update()
            self.meter.add(loss, None, window.y.numel())
            progress.step += 1
            self._emit({"kind": "tick", "step": progress.step})  # moves a progress bar; no sync
            if progress.step % config.log_every == 0:
                self._log_step(lr)
            last_of_epoch = index + 1 == self.steps_per_epoch
            if not last_of_epoch and self._interrupted():
                return False
        return True

    def _log_step(self, lr: float) -> None:
        meter = self.meter
        reading = meter.read()
        self._record({
            "kind": "step",
            "step": self.progress.step,
            "epoch": self.progress.step / self.steps_per_epoch,
            "loss": reading["loss"],
            "ppl": perplexity(reading["loss"]),
            "lr": lr,
            "tokens_per_s": reading["per_s"],  # the tokens timed since this process started
        })
        meter.reset()

    def _evaluate(self, stream: TextBatches) -> dict:
        """Perplexity on ``stream``'s split with the weights NT-ASGD reports (the running mean
        once averaging has started), the state carried from zeros, in eval mode."""
        averaged = self.average is not None and self.average.count > 0
        self.model.eval()
        try:
            with self.average.swapped_in() if averaged else nullcontext():
                result = evaluate_lm(
                    lambda x, state: self.model(x, state=state), _one_pass(stream),
                    device=self.device, dtype=self.dtype,
                )
        finally:
            self.model.train()
        return {**result, "averaged": averaged}

    def _end_epoch(self) -> None:
        """Validate when due (and trigger NT-ASGD), test after the last epoch, save.

        Every epoch gets a record (and an event: the epochs bar moves every epoch); the
        validation figures are in the records of the epochs validated (every ``eval_every`` and
        the last), the test figures in the last one's."""
        config, progress = self.config, self.progress
        progress.epoch += 1
        final = progress.epoch == config.epochs
        record = {"kind": "epoch", "epoch": progress.epoch, "step": progress.step}
        improved = False
        if progress.epoch % config.eval_every == 0 or final:
            result = self._evaluate(self.valid_stream)
            ppl = result["perplexity"]
            history = progress.valid_history
            record.update({
                "valid_ppl": ppl,
                "valid_loss": result["loss"],
                "valid_tokens": result["tokens"],
                "averaged": result["averaged"],
            })
            if self.average is None and averaging_due(history, ppl, config.nonmono):
                self.average = WeightAverage(self.params)  # from the next step on
                progress.averaging_epoch = progress.epoch
                record["averaging_starts"] = True
            history.append(ppl)
            improved = ppl < progress.best_valid_ppl
            if improved:
                progress.best_valid_ppl, progress.best_epoch = ppl, progress.epoch
            record["best_valid_ppl"] = progress.best_valid_ppl
            if final:
                self.last_test = self._test()
                record.update(self.last_test)
        self._record(record)
        if improved:
            self._save(BEST)
        if progress.epoch % config.checkpoint_every == 0 or final:
            self._save(LAST)

    def _test(self) -> dict:
        result = self._evaluate(self.test_stream)
        return {"test_ppl": result["perplexity"], "test_loss": result["loss"], "test_tokens": result["tokens"]}

    def train(self, resume: bool) -> dict:
        config = self.config
        if self.run is None:
            raise ValueError("LMTrainer.train: needs a RunDir (set .run)")
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
            "device": str(self.device),
            "dtype": str(self.dtype or torch.float32).replace("torch.", ""),
            "compile": self.compiled,
            "world_size": 1,
            "params": count_params(self.model),
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
        if self.last_test is None:  # a run that ended before this version tested at the end
            self.last_test = self._test()
        result = self._result(interrupted=False, started=started)
        self._emit({"kind": "done", **result})
        if not self.run.finished():  # resuming a finished run adds no second record
            self.run.log({"kind": "done", **result})
        return result

    def _result(self, *, interrupted: bool, started: float) -> dict:
        test = self.last_test or {}
        best = self.progress.best_valid_ppl
        return {
            "interrupted": interrupted,
            "test_ppl": test.get("test_ppl"),
            "test_loss": test.get("test_loss"),
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "best_valid_ppl": best if math.isfinite(best) else None,
            "best_epoch": self.progress.best_epoch,
            "averaging_epoch": self.progress.averaging_epoch,
            "seconds": time.perf_counter() - started,
        }


def _one_pass(stream: TextBatches) -> Iterator:
    """Every window of one pass over a fixed-length (evaluation) stream, from its start; the
    stream's own position is left alone."""
    schedule = fixed_schedule(stream.stream_len, stream.bptt, stream.drop_last)
    return (stream.window(start, length) for start, length in schedule)


# ---------------------------------------------------------------------------- evaluation
def load_lm_checkpoint(run: RunDir, name: str, corpus: Corpus | None = None):
    """(network in eval mode on the CPU, arch, state) of checkpoint ``name`` of an rnn final run
    trained on ``corpus``; the network holds the weights NT-ASGD reports (the running mean
    once it has started). Without ``corpus`` (``enastool.load_run``: no data needed) the
    vocabulary size is the checkpoint's and no corpus is checked."""
    path = run.path / name
    state = run.load_checkpoint(name)
    check_checkpoint(state, path, kind=RUN_KIND, version=CHECKPOINT_VERSION, template=HEADER_TEMPLATE)
    if corpus is not None:
        check_corpus(state, corpus, str(path))
    vocab_size = corpus.info.vocab_size if corpus is not None else int(state["network"]["vocab_size"])
    arch = parse_arch_record(state["arch"], str(path))
    arch_path = run.path / ARCH_FILE
    if arch_path.exists() and parse_arch_record(arch_path.read_text(), str(arch_path)) != arch:
        raise EnasError(f"{arch_path} does not match the architecture stored in {path}")
    model = build_lm(arch, run.config, vocab_size)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0]
        raise EnasError(f"{path}: weights do not fit the network ({first_line})") from None
    average = state.get("average")
    if average is not None and int(average["count"]) > 0:
        with torch.no_grad():
            for param, mean in zip(model.parameters(), average["means"]):
                param.copy_(mean)
    return model.eval(), arch, state


def evaluate_text_run(
    run: RunDir,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    checkpoint: str | None = None,
    tta: bool = False,
    batch_size: int | None = None,
    device: str = "auto",
) -> dict:
    """Perplexity, loss, parameter and token counts of an rnn final run's network on a split.

    ``split`` "test" (default streams: the run's ``test_batch_size``, the reference's 1) or
    "valid" (the run's ``batch_size``, as training validated); ``batch_size`` overrides either.
    The state is carried from a zero start through the whole split, windows of ``bptt``.
    """
    config = run.config
    if tta:
        raise EnasError(f"--tta averages mirrored images; {run.path} is an rnn run: drop --tta")
    if split not in ("test", "valid"):
        raise EnasError(f"split {split!r}: expected test or valid")
    name = final_checkpoint_name(run, checkpoint)
    dataset = dataset or config.dataset
    corpus = load_corpus(dataset, data_dir if data_dir is not None else config.data_dir)
    model, arch, state = load_lm_checkpoint(run, name, corpus)
    device = resolve_device(device)
    streams = batch_size or (config.test_batch_size if split == "test" else config.batch_size)
    stream = text_batches(corpus, split, streams, config.bptt, device)
    model = model.to(device)
    result = evaluate_lm(lambda x, s: model(x, state=s), _one_pass(stream), device=device,
                         dtype=autocast_dtype(config, device))
    average = state.get("average")
    return {
        "perplexity": result["perplexity"],
        "loss": result["loss"],
        "params": count_params(model),
        "tokens": result["tokens"],
        "run": str(run.path),
        "checkpoint": name,
        "epoch": int(state.get("epoch", 0)),
        "dataset": dataset,
        "split": split,
        "batch_size": streams,
        "averaged": average is not None and int(average["count"]) > 0,
        "arch": arch_record(arch),
    }
