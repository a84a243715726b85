"""Optimizers (SGD, Adam, AdamW, Adamax, NAdam, RAdam, RMSprop, Adagrad, Adadelta, Rprop, ASGD,
Adafactor, LBFGS, SparseAdam); in `lr_scheduler`, learning-rate schedules; in `swa_utils`,
model averaging (SWA, EMA). Names, defaults and update rules follow torch.optim."""

from minidl.optim import lr_scheduler, swa_utils
from minidl.optim.adadelta import Adadelta
from minidl.optim.adafactor import Adafactor
from minidl.optim.adagrad import Adagrad
from minidl.optim.adam import Adam, AdamW
from minidl.optim.adamax import Adamax
from minidl.optim.asgd import ASGD
from minidl.optim.lbfgs import LBFGS
from minidl.optim.nadam import NAdam
from minidl.optim.optimizer import Optimizer
from minidl.optim.radam import RAdam
from minidl.optim.rmsprop import RMSprop
from minidl.optim.rprop import Rprop
from minidl.optim.sgd import SGD
from minidl.optim.sparse_adam import SparseAdam

__all__ = ["ASGD", "LBFGS", "SGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax",
           "NAdam", "Optimizer", "RAdam", "RMSprop", "Rprop", "SparseAdam", "lr_scheduler",
           "swa_utils"]
