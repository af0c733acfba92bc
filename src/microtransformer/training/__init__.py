"""Training: schedule, checkpoints, DDP helpers and the :class:`Trainer`.

Import the submodules directly (``from microtransformer.training.trainer
import Trainer``); this package file stays light so importing the schedule
does not import torch.
"""
