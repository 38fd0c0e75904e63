"""The Markdown report: the targets' verdicts, the method and table of each target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flight.compute.job_compute import MAX_RERUNS
from flight.jobs.redundancy import Redundancy
from flight.protection.faults import FaultModel
from tools.fault_campaign.abft_comparison import (
    ABFT_CALIBRATION_INPUTS,
    ABFT_KINDS,
    ABFT_LARGE_CHANGE,
    ABFT_SECTION,
)
from tools.fault_campaign.campaign import CampaignResult
from tools.fault_campaign.chart import draw_chart
from tools.fault_campaign.outcomes import (
    FLAG_COLUMNS,
    SCRUB_ONLY,
    STORE_FILE,
    STORE_READ,
    STORE_REOPEN,
    TARGET_TITLES,
    Cell,
    Outcome,
    Target,
)
from tools.fault_campaign.sdc_bound import CONFIDENCE, sdc_upper_bound
from tools.fault_campaign.uplink import Uplink

REPORT_NAME = "fault_campaign.md"
CHART_NAME = "fault_campaign.png"
# The targets of the issue: 0 SDC under scrubbing and TMR in this many trials per fault model.
TARGET_TRIALS = 10_000


TARGET_METHODS = {
    Target.WEIGHTS: (
        "A fault in one weight tensor the session computes from (picked in proportion to its "
        "size, `FaultInjector`, FAULT_INJECT's path), striking before the job's first run or "
        "between two of its runs. The job runs as the job runner runs it: runs, the model "
        "guard's `result_suspect`, up to {reruns} reruns; its accepted outputs are compared "
        "with the reference session's bit for bit. One full-speed scrub pass follows. In the "
        "row *{scrub}* the fault is followed by the scrub pass only, and the weights after it "
        "are compared with the fault-free ones (weights still wrong after a pass that reported "
        "nothing would be SDC). In mode ABFT the job runs the model's form with checksums, on "
        "weights of its own, and the fault goes there."
    ),
    Target.INPUTS: (
        "A fault in the job's input array after it was loaded and its CRC-32 taken, before the "
        "first run or between two runs; a rerun (after the check, or ABFT's after a failed "
        "checksum) first restores the input in place from the file's octets, checked against "
        "their SHA-256 again."
    ),
    Target.OUTPUTS: (
        "A fault in one output tensor of one of the job's runs (any of them, uniformly), through "
        "a session wrapper; the executor votes and the accept loop runs as above. In mode ABFT "
        "the run's outputs include the checksum residual, which the draw may hit; a fault in "
        "the model's outputs strikes after the checked layers, where no checksum sees it."
    ),
    Target.JOB_STORE: (
        "Four jobs (queued, running, succeeded, failed) in a job store; a fault in one stored "
        "field of one record (`JobStore.corrupt_record`: fields in proportion to their octets, "
        "the record's CRC and copy included), then that job read back (*{read}*) or the store "
        "closed and opened again (*{reopen}*); or a fault anywhere in the database file's "
        "octets, then the store opened (*{file}*). Every job the store gives back is compared "
        "with what was committed; a job refused (set aside as corrupt) is detected and "
        "uncorrectable. A fault SQLite cannot store (a NaN in a NOT NULL real) is drawn again."
    ),
    Target.RESULT_FILES: (
        "A fault in a stored result file (FAULT_INJECT's path), then the check the file "
        "service makes before a download (`UploadStore.intact`). A refused download is "
        "detected and uncorrectable: the job must run again."
    ),
    Target.UPLINK: (
        "A FILE_UPLOAD_CHUNK TC (1 to {chunk} octets of data) in a TC frame, as a CLTU "
        "followed by an idle sequence, corrupted on the line and fed to a fresh "
        "`UplinkReceiver`. A rejected frame is detected, and corrected by COP-1's "
        "retransmission; a frame accepted after BCH corrections is corrected; SDC is an "
        "accepted frame with other packets."
    ),
}


def _percent(rate: float) -> str:
    return f"{100 * rate:.3f} %"


def _table(cells: list[Cell], flag: str | None) -> list[str]:
    head = ["Fault model", "Protection", *(o.value for o in Outcome), "Trials", "SDC rate"]
    head.append(f"SDC {CONFIDENCE:.0%} upper bound")
    if flag is not None:
        head.append(flag)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        n, sdc = cell.trials, cell.counts[Outcome.SDC]
        row = [cell.fault.name, cell.protection, *(str(cell.counts[o]) for o in Outcome)]
        row += [str(n), _percent(sdc / n), _percent(sdc_upper_bound(sdc, n))]
        if flag is not None:
            row.append(f"{cell.flagged}/{n}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


@dataclass(frozen=True, slots=True)
class Verdict:
    """A target of the issue: what it asks, what was measured, pass/fail/not shown."""

    claim: str
    measured: str
    status: str


def verdicts(result: CampaignResult) -> list[Verdict]:
    """The issue's two targets against the measured cells."""
    claim = (
        f"With scrubbing and TMR: 0 silent data corruptions in {TARGET_TRIALS:,} trials over "
        "weights and outputs, for every fault model"
    )
    tmr = [
        c
        for c in result.cells
        if c.target in (Target.WEIGHTS, Target.OUTPUTS) and c.protection == Redundancy.TMR.name
    ]
    first: Verdict
    if {c.target for c in tmr} != {Target.WEIGHTS, Target.OUTPUTS}:
        first = Verdict(claim, "weights and outputs were not both run", "not measured")
    else:
        measured = "; ".join(
            f"{c.fault.name} {c.target.value}: {c.counts[Outcome.SDC]}/{c.trials} SDC" for c in tmr
        )
        if any(c.counts[Outcome.SDC] for c in tmr):
            status = "FAIL"
        elif min(c.trials for c in tmr) < TARGET_TRIALS:
            status = f"not shown (fewer than {TARGET_TRIALS:,} trials per cell)"
        else:
            status = "PASS"
        first = Verdict(claim, measured, status)
    claim = "Every weight fault detected within one scrub period"
    weights = result.of(Target.WEIGHTS)
    if not weights:
        return [first, Verdict(claim, "weights were not run", "not measured")]
    found = sum(c.flagged for c in weights)
    total = sum(c.trials for c in weights)
    measured = (
        f"{found}/{total} weight faults found by the job's checks or by the first full scrub "
        "pass after them (every row, every fault model)"
    )
    return [first, Verdict(claim, measured, "PASS" if found == total else "FAIL")]


def classification_tables(result: CampaignResult) -> list[str]:
    """The per-target tables: a function of the seed, the model and the trials only."""
    lines: list[str] = []
    for target in Target:
        cells = result.of(target)
        if not cells:
            continue
        method = TARGET_METHODS[target].format(
            reruns=MAX_RERUNS,
            scrub=SCRUB_ONLY,
            chunk=Uplink().max_chunk,
            read=STORE_READ,
            reopen=STORE_REOPEN,
            file=STORE_FILE,
        )
        lines += [f"## {TARGET_TITLES[target]}", "", method, ""]
        lines += _table(cells, FLAG_COLUMNS.get(target))
        lines.append("")
        if result.notes.get(target):
            lines += [
                "Errors of other types than the layer's own got out of the code under test "
                "(counted above as detected, uncorrectable; the payload would not handle them): "
                + "; ".join(result.notes[target])
                + ".",
                "",
            ]
    return lines


def abft_section(result: CampaignResult) -> list[str]:
    """ABFT's coverage beside TMR's, by fault model and kind of fault."""
    if result.abft is None:
        return []
    lines = ["## ABFT next to TMR", ""]
    found = result.abft
    if found.unavailable:
        return [*lines, f"ABFT coverage is not available: {found.unavailable}.", ""]
    lines += [
        f"`flight/protection/abft/` checks {found.layers} layers of the model "
        f"({found.skipped} skipped); its threshold, {found.threshold:.3g}, is "
        f"{found.margin:g} times the largest residual of {ABFT_CALIBRATION_INPUTS} fault-free "
        "random inputs. Its own coverage functions inject a compute fault into a checked "
        "layer's output (layers drawn by their multiply-adds) or a fault into a checked layer's "
        "weights, and run the model once. Coverage is the detected share of the faults that "
        "were not masked. The last two columns are the same share in the rows above of the job "
        "modes TMR and ABFT, run through the payload: replica outputs beside compute faults, "
        "weight buffers beside weight faults (there the weights' CRC-32, checked before a "
        "result is accepted, finds them in both modes: the three TMR runs read the same "
        "weights, so their vote alone could not). A replica-output fault strikes after the "
        "checked layers, which is why job mode ABFT misses it.",
        "",
        f"| Fault model | Faults in | Trials | ABFT masked | ABFT detected | ABFT SDC | SDC with "
        f"output change > {ABFT_LARGE_CHANGE:g} | ABFT coverage | TMR coverage | "
        "Job mode ABFT coverage |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells = {(c.target, c.fault, c.protection): c for c in result.cells}
    for row in found.rows:
        target = Target.OUTPUTS if row.kind == ABFT_KINDS[0] else Target.WEIGHTS
        tmr = cells.get((target, row.fault, Redundancy.TMR.name))
        job = cells.get((target, row.fault, Redundancy.ABFT.name))
        lines.append(
            f"| {row.fault.name} | {row.kind} | {row.trials} | {row.masked} | {row.detected} | "
            f"{row.sdc} | {row.sdc_large} | {row.coverage:.2%} | {coverage_of(tmr)} | "
            f"{coverage_of(job)} |"
        )
    return [*lines, ""]


def render_report(result: CampaignResult, chart: str = CHART_NAME) -> str:
    """The Markdown report."""
    ran = [t.value for t in Target if result.of(t)]
    if result.abft is not None:
        ran.append(ABFT_SECTION)
    only = "" if len(ran) == len(Target) + 1 else f" --only {' '.join(ran)}"
    command = (
        f"python -m tools.fault_campaign --trials {result.trials} --seed {result.seed} "
        f"--model {result.model.name}{only} --out DIR"
    )
    lines = [
        "# Fault-injection campaign",
        "",
        f"Made by `{command}`; the same seed gives the same tables.",
        "",
        f"- Seed: {result.seed}; trials per cell: {result.trials:,}; "
        f"{sum(c.trials for c in result.cells):,} trials in all.",
        f"- Model: {result.model.description}; {result.model_facts}.",
        "- Payload: the real flight code in a temporary directory (model registry with two "
        "copies, session cache on the CPU provider with one intra-op thread, executor, model "
        "guard, scrubber, upload store, uplink receive chain); each job goes through the job "
        "runner's own compute, `JobCompute` in `flight/compute/job_compute.py` (prepare, "
        "run, accept).",
        f"- Fault models (`flight/protection/faults.py`): {', '.join(m.name for m in FaultModel)}"
        " (one bit; 2 to 4 bits of one 32-bit word; a whole word replaced; 2 to 16 words of "
        "one row replaced).",
        f"- Run time: {result.seconds:.0f} s on this machine (not part of the tables).",
        "",
        "## Targets",
        "",
        "| Target | Measured | Result |",
        "|---|---|---|",
    ]
    for verdict in verdicts(result):
        lines.append(f"| {verdict.claim} | {verdict.measured} | {verdict.status} |")
    if result.weight_octets:
        pass_ms = 1000 * result.weight_octets / result.scrub_rate_octets_s
        lines += [
            "",
            f"A scrub pass reads every loaded weight: at the scrubber's default rate "
            f"({result.scrub_rate_octets_s / 1e6:.0f} MB/s) this model's "
            f"{result.weight_octets:,} octets take {pass_ms:.1f} ms of a "
            f"{result.scrub_period_s:.0f} s period, so a weight fault the job's checks miss is "
            f"found at most one period and one pass ({result.scrub_period_s + pass_ms / 1000:.3f}"
            " s) after it strikes.",
        ]
    lines += ["", f"![Classification of every cell]({chart})", ""]
    lines += abft_section(result)
    lines += classification_tables(result)
    lines += [
        "## How a trial runs",
        "",
        "- Each trial draws its fault from a generator seeded by (seed, target, fault model, "
        "protection, trial number) and starts from a clean payload: weights a fault left are "
        "restored, a result file rewritten, a frame sent to a fresh receiver.",
        "- The payload's monotonic clock is frozen: the known answer recorded at registration "
        "counts as fresh, as for a job in a stream, so a job's check is the input CRC and (DMR, "
        "TMR) the weights' CRC-32; the known answer runs only after a session was reloaded. "
        "This keeps the classes independent of how fast the trials go.",
        "- Masked: the delivered result is bit for bit the fault-free one and no check fired. "
        "Detected, corrected: the same, after a check fired. Detected, uncorrectable: a check "
        "refused the result (the job failed, the download was refused). SDC: a result other "
        "than the fault-free one was delivered.",
        f"- SDC upper bound: one-sided Clopper-Pearson at {CONFIDENCE:.0%} (about 3/N when no "
        "SDC was seen).",
        "",
    ]
    return "\n".join(lines)


def coverage_of(cell: Cell | None) -> str:
    """Detected share of the faults a cell did not mask, as the ABFT table shows it."""
    if cell is None:
        return "not run"
    detected = cell.counts[Outcome.CORRECTED] + cell.counts[Outcome.UNCORRECTABLE]
    unmasked = detected + cell.counts[Outcome.SDC]
    return f"{detected / unmasked:.2%}" if unmasked else "all masked"


def write_report(result: CampaignResult, out: Path) -> tuple[Path, Path]:
    """Write DIR/fault_campaign.md and DIR/fault_campaign.png; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    report, chart = out / REPORT_NAME, out / CHART_NAME
    draw_chart(result, chart)
    report.write_text(render_report(result, CHART_NAME), encoding="utf-8")
    return report, chart
