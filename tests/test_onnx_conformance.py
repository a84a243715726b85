"""ONNX's conformance suite on minidl's backend (minidl.onnx.backend): the node test cases
onnx generates for the operators minidl imports, and the model tests shipped in the onnx
wheel that need no download.

Included: every case whose name starts with one of INCLUDED_OPS (anchored: `relu` does not
pull in `leakyrelu` or `prelu`, `reduce_sum` does not pull in `reduce_sum_square`). Excluded:
EXCLUDED below, each with its reason. Outputs are compared by onnx's runner (values within
its tolerances, dtypes and shapes exact).

Counted with onnx 1.23.2: 457 node cases match INCLUDED_OPS; 303 run and pass, 154 are
excluded (100 `_expanded`, 22 dtypes, 12 1-D/3-D pooling, 9 ReduceSumSquare, 3 empty-set
max/min, 3 GatherElements, 2 sequence/optional, 1 each: dilated average pooling, uint8 max
pooling, MaxPool Indices with padding). The 61 model tests of MODEL_TESTS pass.
"""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx.backend.test  # noqa: E402

from minidl.onnx import backend  # noqa: E402

INCLUDED_OPS = [
    "abs",
    "add",
    "averagepool",
    "batchnorm",
    "clip",
    "concat",
    "constant",
    "constant_pad",
    "conv",
    "convtranspose",
    "div",
    "dropout",
    "elu",
    "erf",
    "exp",
    "expand",
    "flatten",
    "gather",
    "gelu",
    "gemm",
    "globalaveragepool",
    "globalmaxpool",
    "identity",
    "instancenorm",
    "layer_normalization",
    "leakyrelu",
    "log",
    "logsoftmax",
    "matmul",
    "max",
    "maxpool",
    "min",
    "mul",
    "neg",
    "pow",
    "prelu",
    "reduce_max",
    "reduce_mean",
    "reduce_min",
    "reduce_sum",
    "relu",
    "reshape",
    "shape",
    "sigmoid",
    "slice",
    "softmax",
    "sqrt",
    "reciprocal",
    "squeeze",
    "sub",
    "tanh",
    "transpose",
    "unsqueeze",
    "where",
]

# (regex over test names, reason)
EXCLUDED = [
    (r"_expanded", "function expansions built from ops outside the list (CastLike, Less, ...)"),
    (
        r"^test_\w+_u?int(2|4)(_|$)|uint(16|32|64)|float16|FLOAT16|bfloat16",
        "dtype minidl does not have (uint16/32/64, float16, bfloat16, int2/int4)",
    ),
    (r"^test_(averagepool|maxpool)_(1d|3d)_", "1-D and 3-D pooling: minidl pools 2-D images"),
    (r"^test_averagepool_2d_dilations", "dilated average pooling: not in minidl's avg_pool2d"),
    (r"^test_maxpool_2d_uint8", "integer max pooling: minidl pools float32/float64"),
    (r"^test_maxpool_with_argmax_2d_precomputed_pads", "MaxPool's Indices output with padding"),
    (r"^test_reduce_(max|min)_empty_set", "max/min of an empty set (minidl raises, as PyTorch)"),
    (r"^test_identity_(sequence|opt)", "sequence and optional types"),
    (r"^test_gather_elements|^test_gathernd", "GatherElements/GatherND: other operators"),
    (r"^test_reduce_sum_square", "ReduceSumSquare: another operator"),
    (r"^test_constantofshape", "ConstantOfShape: another operator"),
    (r"^test_convtranspose_(1d|3d)", "1-D and 3-D ConvTranspose: minidl's runs on 2-D images"),
    (
        r"^test_(convinteger|matmulinteger|maxunpool)",
        "ConvInteger/MatMulInteger/MaxUnpool: other operators",
    ),
]

MODEL_TESTS = [
    # Model tests in the wheel (kind "pytorch-converted", "pytorch-operator", "simple").
    "test_single_relu_model",
    "test_BatchNorm1d_3d_input_eval",
    "test_BatchNorm2d_eval",
    "test_BatchNorm2d_momentum_eval",
    "test_Conv2d",
    "test_Conv2d_depthwise",
    "test_Conv2d_depthwise_padded",
    "test_Conv2d_depthwise_strided",
    "test_Conv2d_depthwise_with_multiplier",
    "test_Conv2d_dilated",
    "test_Conv2d_groups",
    "test_Conv2d_groups_thnn",
    "test_Conv2d_no_bias",
    "test_Conv2d_padding",
    "test_Conv2d_strided",
    "test_AvgPool2d",
    "test_AvgPool2d_stride",
    "test_MaxPool2d",
    "test_ELU",
    "test_LeakyReLU",
    "test_LeakyReLU_with_negval",
    "test_Linear",
    "test_Linear_no_bias",
    "test_PReLU_1d",
    "test_PReLU_1d_multiparam",
    "test_PReLU_2d",
    "test_PReLU_2d_multiparam",
    "test_ReLU",
    "test_Sigmoid",
    "test_Softmax",
    "test_Tanh",
    "test_ConstantPad2d",
    "test_ZeroPad2d",
    "test_log_softmax_dim3",
    "test_log_softmax_lastdim",
    "test_softmax_functional_dim3",
    "test_softmax_lastdim",
    "test_operator_add_broadcast",
    "test_operator_add_size1_broadcast",
    "test_operator_add_size1_right_broadcast",
    "test_operator_add_size1_singleton_broadcast",
    "test_operator_addconstant",
    "test_operator_addmm",
    "test_operator_basic",
    "test_operator_clip",
    "test_operator_concat2",
    "test_operator_conv",
    "test_operator_exp",
    "test_operator_flatten",
    "test_operator_max",
    "test_operator_min",
    "test_operator_mm",
    "test_operator_params",
    "test_operator_permute2",
    "test_operator_pow",
    "test_operator_reduced_mean",
    "test_operator_reduced_mean_keepdim",
    "test_operator_reduced_sum",
    "test_operator_reduced_sum_keepdim",
    "test_operator_sqrt",
    "test_operator_view",
]


def _suite():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx's case generators warn about their own casts
        suite = onnx.backend.test.BackendTest(backend, __name__)
    ops = "|".join(INCLUDED_OPS)
    # The op name must end the prefix: "relu" then "_" or the end, never "leakyrelu".
    suite.include(rf"^test_({ops})(_[a-z0-9_A-Z]*)?_cpu$")
    suite.include(rf"^({'|'.join(MODEL_TESTS)})_cpu$")
    for pattern, _reason in EXCLUDED:
        suite.exclude(pattern)
    # A listed op followed by "_" can still begin a longer op's name ("reduce_sum" +
    # "_square"): EXCLUDED names those families explicitly.
    return suite


globals().update(_suite().test_cases)
