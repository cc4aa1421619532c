"""Training of DeepJet and DeepCSV taggers, clean or adversarial.

    from advcalib.training import TrainConfig, JetSample, fit, split_sample
"""

from __future__ import annotations

from advcalib.training.config import TrainConfig, parse_epsilon_per_flavour
from advcalib.training.loop import fit, train_epoch
from advcalib.training.sample import JetSample, split_sample

__all__ = ["JetSample", "TrainConfig", "fit", "parse_epsilon_per_flavour", "split_sample", "train_epoch"]
