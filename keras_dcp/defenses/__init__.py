"""Output-perturbation defenses, one per module, each a thin Keras layer."""

from keras_dcp.defenses.base import OutputDefense
from keras_dcp.defenses.deception import DeceptionLayer
from keras_dcp.defenses.reverse_sigmoid import ReverseSigmoid
from keras_dcp.defenses.rounding import Rounding
from keras_dcp.defenses.top_k import TopK
from keras_dcp.defenses.top_label import TopLabel

__all__ = ["DeceptionLayer", "OutputDefense", "ReverseSigmoid", "Rounding", "TopK", "TopLabel"]
