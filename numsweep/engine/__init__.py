"""The NumPy training engine: networks, losses, schedules, optimizers, data and training.

- ``spec``: TrialSpec (a trial's parameters), TrialResult, CurvePoint
- ``data``: datasets (CIFAR-10, Fashion-MNIST, .npz) and normalised splits
- ``layers``: the reference layers (forward/backward pairs, allocating)
- ``losses``: the data losses with a trial axis (and each one's reference), the L2 term
- ``networks``: the reference MLP, patchify ConvNet and three-layer ConvNet (gradient-checked)
- ``build``: a spec's network (``build_network``) and its layer shapes (``network_shape``)
- ``fused``: the trained networks: K trials of one structure along a trial axis (K = 1 alone)
- ``pertrial``: per-trial values broadcast against trial-stacked arrays
- ``optimizers``: the update rules for K trials (per-trial hyperparameters) and the update
- ``initializers``: weight initialisation
- ``schedules``: learning-rate schedules; ``batch_schedules``: batch sizes and the sampler
- ``augment``: flips, translations, cutout
- ``streams``: the two random streams (the data stream, each trial's own)
- ``runplan``: a run's lengths (n_s, updates, curve points, periods, evaluation chunk)
- ``inputs``: the split as a network's inputs (``Prepared``) and each update's batch
- ``evaluation``: every trial of a fused network measured on a whole set
- ``group``: the one training loop, for K specs (fused trials) or one
- ``train``: one spec in, one result out (a group of one)
- ``slots``: slot groups (continuous batching): a freed slot refilled at once by a feed,
  each trial at its own update count (``train_slots``)
- ``pbt``: population-based training inside one fused group (``train_population``):
  exploit = row copies in the fused arrays, explore = edits of the per-trial values
- ``range_test``: learning-rate and batch-size range tests on the same loop
- ``checkpoint``: a group's training state saved and resumed; kept weights (``.npz``)
- ``workspace``: reused scratch arrays
- ``backend``: the array module (NumPy or CuPy) and the ``device`` parameter's checks
- ``sizing``: how many trials fit in a group, and a network's memory
- ``pace``: how fast a group of each size trains here, per trial (sizes groups)
- ``gradcheck``: numerical gradient checks
"""

from numsweep.engine.data import DataError, Dataset, Split, load_dataset, make_split
from numsweep.engine.group import group_key, groupable, train_group
from numsweep.engine.pbt import (
    Bound,
    ExploitEvent,
    PBTSettings,
    PopulationResult,
    lineage_changes,
    lineage_root,
    train_population,
)
from numsweep.engine.sizing import max_group_size
from numsweep.engine.slots import Feed, SlotStats, SlotTrial, train_slots
from numsweep.engine.spec import CurvePoint, SpecError, TrialResult, TrialSpec, parameter_names
from numsweep.engine.train import train

__all__ = [
    "Bound",
    "CurvePoint",
    "DataError",
    "Dataset",
    "ExploitEvent",
    "Feed",
    "PBTSettings",
    "PopulationResult",
    "SlotStats",
    "SlotTrial",
    "SpecError",
    "Split",
    "TrialResult",
    "TrialSpec",
    "group_key",
    "groupable",
    "lineage_changes",
    "lineage_root",
    "load_dataset",
    "make_split",
    "max_group_size",
    "parameter_names",
    "train",
    "train_group",
    "train_population",
    "train_slots",
]
