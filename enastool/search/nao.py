"""NAO-WS as a search strategy: a pool of architectures that NAO's encoder-predictor-decoder
improves, judged by the shared weights (Luo et al. 2018; reference sec. 9).

- **Pool**: ``nao_pool`` distinct architectures drawn uniformly at the start (distinct up to the
  space's symmetry; the authors' random start may repeat one).
- **Shared weights**: every training step runs an architecture drawn uniformly from the pool.
- **Evaluation points**: after every ``nao_eval_every`` epochs and after the last epoch, every
  pool member is scored with the shared weights (eval mode, batch-statistics BN, no grad) on
  ONE fixed batch of ``nao_score_examples`` validation examples (the authors: 500 images),
  drawn once from the run seed (``task.score_batch``). The pool is sorted by score, written to
  ``pool.jsonl`` and summarised in metrics.jsonl. After the last evaluation point the search
  ends: that scored pool is what derive ranks.
- **After every other evaluation point**: the EPD (``epd``) trains ``nao_epd_epochs`` epochs on
  the scored pool (its weights carry over from round to round, its Adam starts afresh, as the
  authors'), reports the predictor's pairwise accuracy and the decoder's Hamming distance on the
  held-out 10%, then generates from the ``nao_top`` best with eta = 1, 2, ... up to
  ``nao_max_eta`` until ``nao_new`` new architectures exist (valid, distinct, not in the pool);
  they replace as many of the worst.

Every step of that is one update unit of the search loop (``strategy.Strategy``), so that an
interrupt anywhere, in the middle of EPD training or of generation included, saves a checkpoint
that resumes exactly: scoring ``SCORE_CHUNK`` pool members; ``EPD_EPOCHS_PER_UPDATE`` epochs of
EPD training (the last one also evaluates the held-out part); one eta round; the replacement.
The state (``state_dict``) holds the pool, the scored pool, the scores so far, the stage, the
EPD trainer (the EPD's weights, Adam, its generator, its data) and the generation's progress,
as tensors, numbers, strings and lists, and always in the same shapes for one configuration,
so that ``enastool.checkpoints`` checks every part of it against what the run builds.

The run directory's ``pool.jsonl`` holds one JSON line per pool member per evaluation point:
``evaluation`` (1, 2, ...), ``epoch`` (epochs done), ``rank`` (1 = best), ``score``,
``generation`` (0: the random start; k: generated after evaluation point k) and ``arch`` (the
record text). It is rewritten whole (atomically) at each evaluation point, and on every start
or resume it is cut back to the evaluation points the restored state has reached, so a hard
stop after an evaluation point leaves no duplicate lines behind.

Choices where the reference is silent or the authors' code differs:

- One fixed scoring batch for the whole run: the authors' ``next(iter(valid_queue))`` draws a
  fresh random batch of 500 for every architecture, so two members' scores are read on
  different images; a fixed batch makes every score of a run compare, across evaluation
  points too. The batch is drawn from the validation split without replacement.
- The EPD runs on the supernet's device (CPU runs stay bit-exact); its random draws come from
  CPU generators (``epd``), so a GPU run's state loads anywhere.
- No drop path in the search supernet (the authors' NAO supernet applies keep 0.9): enastool's
  search supernets have none for any strategy (``loop``), so that every strategy trains the
  same network; drop path is a final-training setting.
- Replacement keeps the pool's size: when generation ends (eta at ``nao_max_eta``) with fewer
  than ``nao_new`` new architectures, only that many of the worst are replaced.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import torch

from ..atomic import write_text_atomic
from ..encoding.textio import format_record
from ..encoding.tokens import build_token_scheme
from ..errors import EnasError
from .epd import EPD, EPDGenerator, EPDSettings, EPDTrainer
from .strategy import Strategy, random_state, set_random_state
from .tasks import ARCH_SIZES, uniform_arch

POOL_FILE = "pool.jsonl"
# Stages of the work after an evaluation point; each update() is one unit of one stage.
IDLE, SCORE, TRAIN, GENERATE, REPLACE = "idle", "score", "epd", "generate", "replace"
STAGES = (IDLE, SCORE, TRAIN, GENERATE, REPLACE)
SCORE_CHUNK = 25  # pool members scored per update unit (an interrupt waits for at most this many)
EPD_EPOCHS_PER_UPDATE = 10  # EPD training epochs per update unit
RANDOM_START = 0  # ``generation`` of the members of the random start
DRAWS_PER_MEMBER = 100  # uniform draws allowed per distinct member of the random start
SCORE_SEED_OFFSET = 2  # the scoring batch's draw, apart from the other streams of the run seed
ROUND_SEED_STRIDE = 1_000_003  # EPD round seeds: run seed x stride + evaluation point


class NaoStrategy(Strategy):
    """NAO-WS: children from a pool that the EPD improves at evaluation points."""

    name = "nao"
    ranking_note = "the pool scored at the last evaluation point, by its shared-weight scores"

    def __init__(self, config, device: torch.device):
        super().__init__(config, device)
        self.scheme = build_token_scheme(config)
        self.settings = EPDSettings(epochs=config.nao_epd_epochs, top=config.nao_top,
                                    new_archs=config.nao_new, max_eta=config.nao_max_eta)
        self.size = config.nao_pool
        self.rng = random.Random(config.seed)  # the random start, then every child
        self._set_pool(self._random_start(), torch.full((self.size,), RANDOM_START, dtype=torch.long))
        with torch.random.fork_rng(devices=[]):  # the EPD's initial weights, from the run seed
            torch.manual_seed(config.seed)
            self.model = EPD(self.scheme, self.settings)
        self.model.to(device)
        # Scored pool: the pool at the last evaluation point, best first.
        self.scored = self.pool.clone()
        self.scored_generation = self.generation.clone()
        self.scores = torch.full((self.size,), math.nan, dtype=torch.float64)
        self.pending = torch.full((self.size,), math.nan, dtype=torch.float64)  # this evaluation's
        self.pending_count = 0
        self.stage = IDLE
        self.evaluations = 0  # evaluation points done (scored, sorted and written)
        self.rounds = 0  # EPD training rounds done
        # The trainer and generator of the latest round; before the first, placeholders of the
        # same shapes, so that a fresh strategy's state is the template of every later one.
        placeholder = [0.0] * self.size
        self.trainer = EPDTrainer(self.model, self.pool_archs, placeholder, seed=config.seed)
        self.generator = EPDGenerator(self.model, self.pool_archs, placeholder)
        self.run = None
        self._score_data: list | None = None

    # ------------------------------------------------------------------ the pool
    def _random_start(self) -> torch.Tensor:
        """``nao_pool`` distinct uniform architectures as tokens (P, L)."""
        seen: dict = {}
        for _ in range(DRAWS_PER_MEMBER * self.size):
            arch = uniform_arch(self.config, self.rng)
            seen.setdefault(arch.canonical(), arch)
            if len(seen) == self.size:
                return self._tokens(list(seen.values()))
        field, _, _, noun = ARCH_SIZES[self.config.space]
        raise EnasError(
            f"nao_pool = {self.size}: the {self.config.space} space of {getattr(self.config, field)} "
            f"{noun} gave only {len(seen)} distinct architectures in {DRAWS_PER_MEMBER * self.size} "
            "draws; lower nao_pool or enlarge the architectures"
        )

    def _tokens(self, archs: list) -> torch.Tensor:
        rows = [self.scheme.encode(a) for a in archs]
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), self.scheme.length)

    def _archs(self, tokens: torch.Tensor) -> list:
        return [self.scheme.decode(row) for row in tokens.tolist()]

    def _set_pool(self, pool: torch.Tensor, generation: torch.Tensor) -> None:
        self.pool, self.generation = pool, generation
        self.pool_archs = self._archs(pool)  # decoded once: a child is drawn every step

    def evaluation_point(self, epochs_done: int) -> int:
        """The evaluation point (1, 2, ...) that follows ``epochs_done`` epochs; 0 when none
        does. Points follow every ``nao_eval_every`` epochs, and the last epoch."""
        every = self.config.nao_eval_every
        if epochs_done % every == 0:
            return epochs_done // every
        return epochs_done // every + 1 if epochs_done == self.config.epochs else 0

    def evaluation_epoch(self, point: int) -> int:
        """Epochs done at evaluation point ``point`` (1-based)."""
        return min(point * self.config.nao_eval_every, self.config.epochs)

    # ------------------------------------------------------------------ the loop's interface
    def prepare(self, task) -> None:
        examples = self.config.nao_score_examples
        try:
            self._score_data = task.score_batch(examples, self.config.seed + SCORE_SEED_OFFSET)
        except NotImplementedError:
            raise EnasError(
                f"strategy nao scores its pool on one fixed validation batch, which the "
                f"{self.config.space} search task does not give yet; use another strategy"
            ) from None
        except EnasError as e:
            raise EnasError(f"nao_score_examples = {examples}: {e}; lower it") from None

    def attach(self, run) -> None:
        self.run = run
        lines = self._pool_lines()
        kept = [line for line in lines if line[0] <= self.evaluations]
        if len(kept) != len(lines):
            write_text_atomic(run.file(POOL_FILE), "".join(text for _, text in kept))

    def child(self):
        return self.pool_archs[self.rng.randrange(self.size)]

    def update_due(self, epoch: int, done: int) -> bool:
        if self.stage != IDLE:
            return True
        return self.evaluation_point(epoch + 1) > self.evaluations

    def update(self, task) -> dict:
        if self.stage in (IDLE, SCORE):
            return self._score(task)
        if self.stage == TRAIN:
            return self._train()
        if self.stage == GENERATE:
            return self._generate()
        return self._replace()

    # ------------------------------------------------------------------ the units
    def _score(self, task) -> dict:
        if self.stage == IDLE:  # a new evaluation point
            self.stage = SCORE
            self.pending.fill_(math.nan)
            self.pending_count = 0
        first = self.pending_count
        archs = self.pool_archs[first : first + SCORE_CHUNK]
        results = task.scores(archs, self._score_data)
        scores = torch.tensor([r["score"] for r in results], dtype=torch.float64)
        self.pending[first : first + len(archs)] = scores
        self.pending_count += len(archs)
        if self.pending_count < self.size:
            return {"update": f"score {self.pending_count}/{self.size}", "scored": self.pending_count}
        return self._end_evaluation(task)

    def _end_evaluation(self, task) -> dict:
        pending = self.pending.tolist()
        order = sorted(range(self.size), key=lambda i: -pending[i])  # stable: ties keep pool order
        index = torch.tensor(order)
        self.scored, self.scores = self.pool[index], self.pending[index].clone()
        self.scored_generation = self.generation[index]
        self.evaluations += 1
        epoch = self.evaluation_epoch(self.evaluations)
        self._write_pool(epoch)
        scores = self.scores.tolist()
        record = {
            "update": f"evaluation {self.evaluations}",
            "evaluation": self.evaluations,
            "pool_mean": sum(scores) / len(scores),
            "pool_max": scores[0],
            "pool_min": scores[-1],
            **task.reward_figures(scores),
            "arch": format_record(self.scheme.decode(self.scored[0].tolist())),
        }
        previous = self.evaluations - 1  # the round that generated the newest members
        generations = self.scored_generation.tolist()
        latest = [s for s, g in zip(scores, generations) if g == previous] if previous != RANDOM_START else []
        if latest:  # how the architectures generated after the previous evaluation point fare
            record["new_mean"] = sum(latest) / len(latest)
            record["new_count"] = len(latest)
        if epoch < self.config.epochs:
            self.trainer = EPDTrainer(self.model, self._archs(self.scored), scores,
                                      seed=self.config.seed * ROUND_SEED_STRIDE + self.evaluations)
            self.stage = TRAIN
        else:
            self.stage = IDLE  # the end of the search: this scored pool is the ranking
        return record

    def _train(self) -> dict:
        trainer = self.trainer
        last = trainer.train(EPD_EPOCHS_PER_UPDATE)[-1]
        record = {
            "update": f"epd {trainer.epoch}/{self.settings.epochs}",
            "epd_epoch": trainer.epoch,
            "epd_loss": last["loss"],
            "epd_mse": last["mse"],
            "epd_nll": last["nll"],
        }
        if trainer.done:
            record.update(trainer.evaluate())  # pairwise_accuracy, hamming, holdout
            self.rounds += 1
            self.generator = EPDGenerator(self.model, self._archs(self.scored), self.scores.tolist())
            self.stage = GENERATE
        return record

    def _generate(self) -> dict:
        figures = self.generator.step()
        if self.generator.done:
            self.stage = REPLACE
        return {"update": f"eta {figures['eta']:g}", **figures}

    def _replace(self) -> dict:
        found = self.generator.found
        keep = self.size - len(found)
        new = torch.tensor(found, dtype=torch.long).reshape(len(found), self.scheme.length)
        born = torch.full((len(found),), self.evaluations, dtype=torch.long)
        self._set_pool(torch.cat([self.scored[:keep], new]), torch.cat([self.scored_generation[:keep], born]))
        self.stage = IDLE
        return {"update": "replace", "replaced": len(found), "eta_rounds": self.generator.rounds}

    # ------------------------------------------------------------------ pool.jsonl
    def _pool_lines(self) -> list[tuple[int, str]]:
        """(evaluation, line) of every line of pool.jsonl; EnasError for a damaged one."""
        path = self.run.file(POOL_FILE)
        if not path.exists():
            return []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise EnasError(f"{path}: cannot read the pool file ({e}); delete it to start it afresh") from None
        lines = []
        for number, line in enumerate(text.splitlines(keepends=True), start=1):
            try:
                evaluation = json.loads(line)["evaluation"]
            except (ValueError, TypeError, KeyError, RecursionError):
                evaluation = None
            if not isinstance(evaluation, int) or isinstance(evaluation, bool):
                raise EnasError(
                    f"{path}: line {number} is not a pool record (the file is damaged); delete the "
                    "file to start it afresh from the next evaluation point"
                )
            lines.append((evaluation, line if line.endswith("\n") else line + "\n"))
        return lines

    def _write_pool(self, epoch: int) -> None:
        if self.run is None:
            return
        kept = [text for evaluation, text in self._pool_lines() if evaluation < self.evaluations]
        rows = zip(self.scored.tolist(), self.scores.tolist(), self.scored_generation.tolist())
        for rank, (tokens, score, generation) in enumerate(rows, start=1):
            kept.append(json.dumps({
                "evaluation": self.evaluations, "epoch": epoch, "rank": rank, "score": score,
                "generation": generation, "arch": format_record(self.scheme.decode(tokens)),
            }) + "\n")
        write_text_atomic(self.run.file(POOL_FILE), "".join(kept))

    # ------------------------------------------------------------------ derive
    def ranking(self) -> list[tuple[Any, float]]:
        if self.evaluations == 0:
            raise EnasError(
                f"no pool has been scored yet: nao scores its pool first after epoch "
                f"{self.evaluation_epoch(1)}; wait for that epoch to end, or resume the run"
            )
        return list(zip(self._archs(self.scored), self.scores.tolist()))

    def predict(self, archs: list) -> list[float]:
        if self.rounds == 0:
            raise EnasError(
                "the predictor is untrained: nao trains it after each evaluation point but the last "
                f"(the first after epoch {self.evaluation_epoch(1)}), and none has been trained yet"
            )
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self.model.predict(self.model.tokens_of(archs)).tolist()
        finally:
            self.model.train(was_training)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        generator = self.generator.state_dict()
        # New architectures found so far: their count varies, so a list (checked as numbers).
        generator["found"] = generator["found"].tolist()
        return {
            "rng": random_state(self.rng),
            "stage": self.stage,
            "evaluations": self.evaluations,
            "rounds": self.rounds,
            "pool": self.pool,
            "generation": self.generation,
            "scored": self.scored,
            "scored_generation": self.scored_generation,
            "scores": self.scores,
            "pending": self.pending,
            "pending_count": self.pending_count,
            "trainer": self.trainer.state_dict(),
            "generator": generator,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["stage"] not in STAGES:
            raise EnasError(f"nao state: unknown stage {state['stage'][:40]!r}; put the run's own checkpoint back")
        set_random_state(self.rng, state["rng"])
        self.stage = state["stage"]
        self.evaluations = int(state["evaluations"])
        self.rounds = int(state["rounds"])
        self._set_pool(state["pool"].cpu().clone(), state["generation"].cpu().clone())
        self.scored = state["scored"].cpu().clone()
        self.scored_generation = state["scored_generation"].cpu().clone()
        self.scores = state["scores"].cpu().clone()
        self.pending = state["pending"].cpu().clone()
        self.pending_count = int(state["pending_count"])
        self.trainer.load_state_dict(state["trainer"])  # the EPD's weights too
        generator = dict(state["generator"])
        generator["found"] = torch.tensor(generator["found"], dtype=torch.long).reshape(-1, self.scheme.length)
        self.generator.load_state_dict(generator)
