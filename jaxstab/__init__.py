"""jaxstab: weight initialization and training stability of deep MLPs, as plain JAX.

Pure functions over plain pytrees: PRNG-keyed initializers, a scanned MLP,
stable losses, optax clipping transforms that report what they did, per-layer
diagnostics and mean-field theory.
"""

from jaxstab import compile_cache as compile_cache
from jaxstab import devices as devices
from jaxstab import diagnostics as diagnostics
from jaxstab import layouts as layouts
from jaxstab import probe as probe
from jaxstab import theory as theory
from jaxstab._activations import ACTIVATIONS as ACTIVATIONS
from jaxstab._activations import Activation as Activation
from jaxstab._activations import get_activation as get_activation
from jaxstab._clipping import ClipState as ClipState
from jaxstab._clipping import SkipState as SkipState
from jaxstab._clipping import adaptive_clip as adaptive_clip
from jaxstab._clipping import clip_by_global_norm as clip_by_global_norm
from jaxstab._clipping import clip_by_layer_norm as clip_by_layer_norm
from jaxstab._clipping import find_clip_state as find_clip_state
from jaxstab._clipping import find_clip_states as find_clip_states
from jaxstab._clipping import skip_nonfinite as skip_nonfinite
from jaxstab._initializers import INITIALIZERS as INITIALIZERS
from jaxstab._initializers import calculate_gain as calculate_gain
from jaxstab._initializers import compute_fans as compute_fans
from jaxstab._initializers import constant as constant
from jaxstab._initializers import get_initializer as get_initializer
from jaxstab._initializers import glorot_normal as glorot_normal
from jaxstab._initializers import glorot_uniform as glorot_uniform
from jaxstab._initializers import he_normal as he_normal
from jaxstab._initializers import he_uniform as he_uniform
from jaxstab._initializers import kaiming_normal as kaiming_normal
from jaxstab._initializers import kaiming_uniform as kaiming_uniform
from jaxstab._initializers import lecun_normal as lecun_normal
from jaxstab._initializers import lecun_uniform as lecun_uniform
from jaxstab._initializers import normal as normal
from jaxstab._initializers import orthogonal as orthogonal
from jaxstab._initializers import torch_linear as torch_linear
from jaxstab._initializers import variance_scaling as variance_scaling
from jaxstab._initializers import xavier_normal as xavier_normal
from jaxstab._initializers import xavier_uniform as xavier_uniform
from jaxstab._initializers import zeros as zeros
from jaxstab._losses import accuracy as accuracy
from jaxstab._losses import log_softmax as log_softmax
from jaxstab._losses import softmax as softmax
from jaxstab._losses import softmax_cross_entropy as softmax_cross_entropy
from jaxstab._lsuv import lsuv as lsuv
from jaxstab._mlp import SPLIT_MAX_LEN as SPLIT_MAX_LEN
from jaxstab._mlp import apply_mlp as apply_mlp
from jaxstab._mlp import init_mlp as init_mlp
from jaxstab._mlp import merge_stacks as merge_stacks
from jaxstab._mlp import mlp_sizes as mlp_sizes
from jaxstab._mlp import split_stacks as split_stacks
from jaxstab._train import make_train_step as make_train_step
from jaxstab.devices import set_cpu_devices as set_cpu_devices
from jaxstab.layouts import Layout as Layout
from jaxstab.reinit import reinit as reinit
from jaxstab.theory import critical as critical

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "SPLIT_MAX_LEN",
    "Activation",
    "ClipState",
    "Layout",
    "SkipState",
    "accuracy",
    "adaptive_clip",
    "apply_mlp",
    "calculate_gain",
    "clip_by_global_norm",
    "clip_by_layer_norm",
    "compile_cache",
    "compute_fans",
    "devices",
    "diagnostics",
    "probe",
    "constant",
    "critical",
    "find_clip_state",
    "find_clip_states",
    "get_activation",
    "get_initializer",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "init_mlp",
    "layouts",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "log_softmax",
    "lsuv",
    "make_train_step",
    "merge_stacks",
    "mlp_sizes",
    "normal",
    "set_cpu_devices",
    "orthogonal",
    "reinit",
    "skip_nonfinite",
    "theory",
    "softmax",
    "softmax_cross_entropy",
    "split_stacks",
    "torch_linear",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]
