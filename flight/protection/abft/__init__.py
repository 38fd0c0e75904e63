"""Algorithm-based fault tolerance (ABFT): checksums of Conv, Gemm and MatMul nodes added to a
model as an ONNX graph transformation, so that they run on any provider.

By linearity, a sum of a layer's outputs equals the layer applied to a sum of its inputs: each
checked layer's output sums are compared, inside the model, with the layer applied to its
input's sums, and the model gains one output, `abft_residual`, which a run must keep under a
calibrated threshold. The original outputs stay bit for bit what the original model gives.

One job a module:
  checked_model      what the transformation gives (AbftModel, CheckedLayer, SkippedNode) and
                     AbftError
  graph_info         what it reads of a model: constants, producers, readers, inferred shapes
  layer_analysis     which layers can be checked: Conv geometry, folded affine nodes, residual
                     Adds
  conv_checksums     the checksum nodes of a convolution (spatial blocks over channel groups)
  matmul_checksums   the checksum nodes of a Gemm or MatMul
  check_builder      the check nodes' names and constants, and the residual they feed
  transform          add_checksums: the analysis and the checks put together, in graph order
  threshold          the run-time check, and the threshold's calibration
  fault_trials       fault injection into a checked model, and each fault's outcome
  coverage_report    the trials of a fault model and their tally
"""

from flight.protection.abft.checked_model import (
    RESIDUAL_OUTPUT,
    AbftError,
    AbftModel,
    CheckedLayer,
    Runner,
    RunnerFactory,
    SkippedNode,
)
from flight.protection.abft.coverage_report import CoverageReport, Outcome, Trial
from flight.protection.abft.fault_trials import (
    FAULT_INPUT,
    fault_coverage,
    injection_runner,
    weight_fault_coverage,
    with_fault_input,
)
from flight.protection.abft.threshold import (
    DEFAULT_MARGIN,
    Calibration,
    calibrate,
    check,
    largest,
    random_feeds,
)
from flight.protection.abft.transform import DEFAULT_GROUPS, DEFAULT_MIN_POSITIONS, add_checksums

__all__ = [
    "DEFAULT_GROUPS",
    "DEFAULT_MARGIN",
    "DEFAULT_MIN_POSITIONS",
    "FAULT_INPUT",
    "RESIDUAL_OUTPUT",
    "AbftError",
    "AbftModel",
    "Calibration",
    "CheckedLayer",
    "CoverageReport",
    "Outcome",
    "Runner",
    "RunnerFactory",
    "SkippedNode",
    "Trial",
    "add_checksums",
    "calibrate",
    "check",
    "fault_coverage",
    "injection_runner",
    "largest",
    "random_feeds",
    "weight_fault_coverage",
    "with_fault_input",
]
