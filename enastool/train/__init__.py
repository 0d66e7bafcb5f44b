"""Final training and evaluation: images (``trainer``, ``evaluate``) and language models (``lm``).

The registries of final trainers and evaluators by data kind live in ``trainer`` and
``evaluate``; the language-model entries are added here, because ``lm`` builds on helpers of
both modules and so cannot be imported by them. Any import of a module of this package runs
this first, so the registries are always complete.
"""

from ..encoding.spaces import TEXT
from .evaluate import FINAL_EVALUATORS
from .lm import LMTrainer, evaluate_text_run
from .trainer import FINAL_TRAINERS

FINAL_TRAINERS[TEXT] = LMTrainer
FINAL_EVALUATORS[TEXT] = evaluate_text_run
