"""A command whose reports the downlink lost is settled without the operator (issue 18): the
payload took it (its CLCW says so) but no report came, so groundsw asks the payload for its
stored copy (ST[15], EVENTS store) and shows the real outcome and the reply, never "no
answer"."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from groundsw.send_command import run_command
from hil.bench import Bench
from telemetry_defs.loader import default_dictionary
from tests.harness import open_test_api

pytestmark = pytest.mark.hil

D = default_dictionary()


def test_reports_lost_on_the_downlink_come_back_from_the_store(
    make_bench: Callable[..., Bench],
) -> None:
    bench = make_bench(baud=115200)
    command = D.command("LINK_SEQUENCE_REPORT")
    with open_test_api(bench.ground_port) as api:
        lines: list[str] = []
        # The command goes up; everything coming down for the next 2 s is lost.
        bench.link.cut(2.0, ("downlink",))
        elapsed = run_command(
            api.session, D, command, command.encode({"reset": False}), 5.0, lines.append
        )
    text = "\n".join(lines)
    print("\n" + text)
    assert "asking the payload for its stored copy" in text
    stages = [
        line.split()[0] for line in lines[1:] if not line.lstrip().startswith(("no", "reply"))
    ]
    assert stages.count("completed") == 1 and stages.count("accepted") == 1, text
    # The reply too: the EVENTS store keeps every packet addressed to a command's sender.
    assert "LINK_SEQUENCE_COUNTERS" in text
    assert elapsed > 5.0
