"""The search strategies behind one small interface (``strategy.Strategy``).

The search loop asks a strategy for the child of each shared-weight step (``child``), the
logits of that step (``logits``), whether an update is due after an epoch's steps
(``update_due(epoch, done)``) and, while one is, to make it (``update(task)``: the task gives
rewards and scores with the shared weights, see ``tasks``), and the candidates that derive
scores (``propose``). Each update is one resumable unit: the loop checkpoints between them.

- ``enas`` (Pham et al.): children sampled from the controller (no grad). After the
  shared-weight steps of an epoch, ``controller_updates`` REINFORCE updates, each averaging
  ``controller_samples`` sampled architectures. Reward = the task's validation figure of the
  child on the next validation minibatch with the shared weights (accuracy; rnn: 80 /
  perplexity) + ``entropy_weight`` x the entropy of its decisions (the authors put the
  entropy bonus into the reward). The baseline is an exponential moving
  average of the rewards, updated after every sample (decay ``baseline_decay``); each
  sample's advantage is taken against the baseline *before* its own reward enters it, so it
  stays unbiased. The baseline starts at the first reward rather than at the authors' 0,
  whose first few hundred advantages are all positive and reinforce whatever was sampled.
  Loss = mean over the samples of ``-log_prob x advantage + skip_weight x skip_penalty``;
  Adam (``controller_lr``, betas (``controller_beta1``, 0.999), eps ``controller_eps``).
- ``random`` (random search with weight sharing, Li and Talwalkar): uniform children.
- ``oneshot`` (Bender et al.): every path of the supernet is a candidate in every step; each
  node's paths are dropped with the fan-in-scaled rate ``r ** (1 / k)`` (k paths into the
  node), r ramped linearly from 0 to ``oneshot_drop_max`` over the first
  ``oneshot_drop_ramp`` of the epochs, at least one path kept per node; dropped paths do not
  run. No child architecture. See ``enastool.nn.supernet`` for what the paper does and what
  enastool does.

- ``nao`` (Luo et al., NAO-WS; its own module, ``nao.py``): children drawn uniformly from a
  pool that an encoder-predictor-decoder improves at evaluation points.

random and oneshot propose uniformly sampled candidates to derive; enas samples them from the
trained controller; nao ranks the pool it scored last. Every random number a strategy draws
comes from its own generator, whose state is part of :meth:`Strategy.state_dict`, so a
resumed search draws the same children.

The controller runs on the CPU whatever device the supernet uses: it is a 64-unit LSTM that
emits one token at a time, so on a GPU every token would be a kernel launch, and the
architecture has to reach the host anyway to pick the supernet's modules.
"""

from __future__ import annotations

import random

import torch

from ..encoding.macro import MacroArch
from ..encoding.spaces import Arch
from ..encoding.textio import format_record
from ..nn.supernet import draw_kept_paths
from .controller import build_controller
from .nao import NaoStrategy
from .strategy import Strategy, random_state, set_random_state
from .tasks import uniform_arch

CONTROLLER_DEVICE = torch.device("cpu")
# One-shot masks pick modules, so they are host data: drawn on the CPU whatever the device.
MASK_DEVICE = torch.device("cpu")
ADAM_BETA2 = 0.999  # the authors' (and Adam's default) second-moment decay

class EnasStrategy(Strategy):
    """Children from the controller; REINFORCE updates of the controller between epochs."""

    name = "enas"

    def __init__(self, config, device: torch.device):
        super().__init__(config, device)
        self.controller = build_controller(config).to(CONTROLLER_DEVICE)
        self.optimizer = torch.optim.Adam(
            self.controller.parameters(),
            lr=config.controller_lr,
            betas=(config.controller_beta1, ADAM_BETA2),
            eps=config.controller_eps,
        )
        self.generator = torch.Generator(CONTROLLER_DEVICE).manual_seed(config.seed)
        self.baseline: float | None = None  # set by the first reward
        self.updates_per_epoch = config.controller_updates

    def child(self) -> Arch:
        with torch.no_grad():
            return self.controller.sample(self.generator).arch

    def update(self, task) -> dict:
        config = self.config
        samples = [self.controller.sample(self.generator) for _ in range(config.controller_samples)]
        # One host read per update: every reward is computed on the device first.
        qualities = torch.stack([task.reward(s.arch).float() for s in samples]).tolist()
        entropies = [s.entropy.item() for s in samples]  # CPU tensors: no device sync
        rewards = [q + config.entropy_weight * e for q, e in zip(qualities, entropies)]
        loss = torch.zeros((), device=CONTROLLER_DEVICE)
        for sample, reward in zip(samples, rewards):
            if self.baseline is None:
                self.baseline = reward
            advantage = reward - self.baseline
            self.baseline = config.baseline_decay * self.baseline + (1 - config.baseline_decay) * reward
            loss = loss - sample.log_prob * advantage + config.skip_weight * sample.skip_penalty
        loss = loss / len(samples)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        best = max(range(len(samples)), key=rewards.__getitem__)
        figures = {
            "reward": _mean(rewards),
            **task.reward_figures(qualities),
            "baseline": self.baseline,
            "entropy": _mean(entropies),
            "controller_loss": loss.item(),
            "arch": format_record(samples[best].arch),
        }
        if config.space == MacroArch.space:
            figures["skip_rate"] = _mean([s.arch.skip_density for s in samples])
            figures["skip_penalty"] = _mean([s.skip_penalty.item() for s in samples])
        return figures

    def propose(self, count: int, seed: int) -> list[Arch]:
        generator = torch.Generator(CONTROLLER_DEVICE).manual_seed(seed)
        with torch.no_grad():
            return [self.controller.sample(generator).arch for _ in range(count)]

    def state_dict(self) -> dict:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "baseline": self.baseline,
        }

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "generator" in state:
            self.generator.set_state(state["generator"].cpu())
        self.baseline = state.get("baseline")


class RandomStrategy(Strategy):
    """Uniform children: random search with weight sharing."""

    name = "random"

    def __init__(self, config, device: torch.device):
        super().__init__(config, device)
        self.rng = random.Random(config.seed)

    def child(self) -> Arch:
        return uniform_arch(self.config, self.rng)

    def state_dict(self) -> dict:
        return {"rng": random_state(self.rng)}

    def load_state_dict(self, state: dict) -> None:
        set_random_state(self.rng, state["rng"])


class OneShotStrategy(Strategy):
    """Kept paths drawn by path dropout (Bender et al.); candidates are sampled uniformly.

    Every step draws, on the host, the paths each node of the supernet keeps
    (``draw_kept_paths``); the supernet runs only those, so dropped paths get no gradient,
    no weight decay and no momentum step. The masks come from a CPU generator owned by the
    strategy (seeded by ``seed``), whose state is in :meth:`state_dict`: a resumed search
    draws the same masks.
    """

    name = "oneshot"

    def __init__(self, config, device: torch.device):
        super().__init__(config, device)
        self.generator = torch.Generator(MASK_DEVICE).manual_seed(config.seed)

    def drop_rate(self, epoch: float) -> float:
        """r: linear from 0 to oneshot_drop_max over the first oneshot_drop_ramp of the epochs.

        A node with k incoming paths drops each with probability r ** (1 / k)."""
        ramp_epochs = self.config.oneshot_drop_ramp * self.config.epochs
        return self.config.oneshot_drop_max * min(1.0, epoch / ramp_epochs)

    def child(self) -> None:
        return None

    def logits(self, supernet, x, child, epoch: float) -> torch.Tensor:
        kept = draw_kept_paths(supernet.oneshot_fan_ins(), self.drop_rate(epoch), self.generator)
        return supernet.forward_oneshot(x, kept)

    def step_figures(self, epoch: float) -> dict:
        return {"drop_rate": self.drop_rate(epoch)}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (EnasStrategy, RandomStrategy, OneShotStrategy, NaoStrategy)
}


def build_strategy(config, device: torch.device) -> Strategy:
    return STRATEGIES[config.strategy](config, device)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
