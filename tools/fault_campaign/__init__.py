"""Fault-injection campaign: seeded trials of each fault model against the real payload code.

Every trial injects one fault (flight/protection/faults.py) into one target of a payload built
in a temporary directory (the model registry, the session cache and executor, the model guard,
the scrubber, the upload store, the uplink receive chain), lets the payload do what it does in
flight, and classifies what came out: masked, detected and corrected, detected and
uncorrectable, or silent data corruption (SDC). The report is Markdown with a PNG chart; the
same seed gives the same classification table.

Modules: `outcomes` (classes, targets, classification rules), `sdc_bound`, `models`, `payload`
(the payload under test and its trials: jobs go through flight/compute/job_compute.py),
`output_faults` and `strike_points` (where its faults strike), `job_store`, `uplink`,
`abft_comparison`, `campaign` (the runner), `report`, `chart`, `cli`.

CLI:
    python -m tools.fault_campaign --trials N --seed S --out DIR [--model cnn|mlp] [--only T ...]
"""

from __future__ import annotations

from flight.jobs.runner import result_file_name
from tools.fault_campaign.abft_comparison import (
    ABFT_CALIBRATION_INPUTS,
    ABFT_KINDS,
    ABFT_LARGE_CHANGE,
    ABFT_SECTION,
    AbftResult,
    AbftRow,
    run_abft,
)
from tools.fault_campaign.campaign import (
    PAYLOAD_TARGETS,
    CampaignConfig,
    CampaignResult,
    TrialFunction,
    model_facts,
    quiet_payload_logs,
    run_campaign,
    scratch_parent,
    trial_rng,
)
from tools.fault_campaign.chart import ABFT_DETECTED_COLOUR, COLOURS, draw_chart
from tools.fault_campaign.cli import main
from tools.fault_campaign.job_store import STORE_CLOCK_S, JobStoreTrials
from tools.fault_campaign.models import MODELS, SMALL_MLP_WIDTHS, CampaignModel
from tools.fault_campaign.outcomes import (
    FLAG_COLUMNS,
    PROTECTIONS,
    SCRUB_ONLY,
    STORE_FILE,
    STORE_READ,
    STORE_REOPEN,
    TARGET_TITLES,
    CampaignError,
    Cell,
    Outcome,
    Target,
    TrialResult,
    classify,
    classify_frame,
    job_outcome,
    same_outputs,
)
from tools.fault_campaign.output_faults import OutputFaults
from tools.fault_campaign.payload import INPUT_FILE, MODEL_NAME, RESULT_JOB_ID, Payload
from tools.fault_campaign.report import (
    CHART_NAME,
    REPORT_NAME,
    TARGET_METHODS,
    TARGET_TRIALS,
    Verdict,
    abft_section,
    classification_tables,
    coverage_of,
    render_report,
    verdicts,
    write_report,
)
from tools.fault_campaign.sdc_bound import CONFIDENCE, sdc_upper_bound
from tools.fault_campaign.strike_points import StrikeHook, StrikingExecutor, no_strike
from tools.fault_campaign.uplink import IDLE_SEQUENCE, UPLOAD_CHUNK, Uplink

__all__ = [
    "ABFT_CALIBRATION_INPUTS",
    "ABFT_DETECTED_COLOUR",
    "ABFT_KINDS",
    "ABFT_LARGE_CHANGE",
    "ABFT_SECTION",
    "CHART_NAME",
    "COLOURS",
    "CONFIDENCE",
    "FLAG_COLUMNS",
    "IDLE_SEQUENCE",
    "INPUT_FILE",
    "MODELS",
    "MODEL_NAME",
    "PAYLOAD_TARGETS",
    "PROTECTIONS",
    "REPORT_NAME",
    "RESULT_JOB_ID",
    "SCRUB_ONLY",
    "SMALL_MLP_WIDTHS",
    "STORE_CLOCK_S",
    "STORE_FILE",
    "STORE_READ",
    "STORE_REOPEN",
    "TARGET_METHODS",
    "TARGET_TITLES",
    "TARGET_TRIALS",
    "UPLOAD_CHUNK",
    "AbftResult",
    "AbftRow",
    "CampaignConfig",
    "CampaignError",
    "CampaignModel",
    "CampaignResult",
    "Cell",
    "JobStoreTrials",
    "Outcome",
    "OutputFaults",
    "Payload",
    "StrikeHook",
    "StrikingExecutor",
    "Target",
    "TrialFunction",
    "TrialResult",
    "Uplink",
    "Verdict",
    "abft_section",
    "classification_tables",
    "classify",
    "classify_frame",
    "coverage_of",
    "draw_chart",
    "job_outcome",
    "main",
    "model_facts",
    "no_strike",
    "quiet_payload_logs",
    "render_report",
    "result_file_name",
    "run_abft",
    "run_campaign",
    "same_outputs",
    "scratch_parent",
    "sdc_upper_bound",
    "trial_rng",
    "verdicts",
    "write_report",
]
