"""Output-perturbation defenses, one per module, each a thin Keras layer, reachable by name.

>>> import keras_dcp
>>> keras_dcp.defenses.defense_names()
['none', 'dcp', 'dcp-edgetpu', 'dcp-keyed', 'mad', 'am', 'rs', 'rounding', 'topk', 'toplabel']
"""

from keras_dcp.defenses.base import OutputDefense
from keras_dcp.defenses.deception import DeceptionLayer
from keras_dcp.defenses.edgetpu import EdgeTPUDeception
from keras_dcp.defenses.keyed import KeyedDeception, calibrate_energy_threshold, calibrate_threshold
from keras_dcp.defenses.mad import MAD
from keras_dcp.defenses.misinformation import AdaptiveMisinformation
from keras_dcp.defenses.registry import (
    DEFENSES,
    build_defense,
    defense_class,
    defense_defaults,
    defense_names,
    describe,
    parse_spec,
    register_defense,
)
from keras_dcp.defenses.reverse_sigmoid import ReverseSigmoid
from keras_dcp.defenses.rounding import Rounding
from keras_dcp.defenses.second_model import SecondModelDefense
from keras_dcp.defenses.top_k import TopK
from keras_dcp.defenses.top_label import TopLabel

__all__ = [
    "AdaptiveMisinformation",
    "DEFENSES",
    "DeceptionLayer",
    "EdgeTPUDeception",
    "KeyedDeception",
    "MAD",
    "OutputDefense",
    "ReverseSigmoid",
    "Rounding",
    "SecondModelDefense",
    "TopK",
    "TopLabel",
    "build_defense",
    "calibrate_energy_threshold",
    "calibrate_threshold",
    "defense_class",
    "defense_defaults",
    "defense_names",
    "describe",
    "parse_spec",
    "register_defense",
]
