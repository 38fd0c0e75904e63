"""The station's pass log: contacts with what each carried, and the ledger of the jobs'
results, kept across a re-open."""

from __future__ import annotations

from pathlib import Path

from groundsw.station.pass_log import PASS_LOG_FILE, PassLog


def test_contacts_are_numbered_and_keep_what_they_carried(tmp_path: Path) -> None:
    with PassLog(tmp_path / PASS_LOG_FILE) as log:
        first = log.begin_contact(100.0)
        log.add_result(first, 168)
        log.add_result(first, 132)
        log.update_contact(first, los=103.5, commands_sent=12, packets=90, open_gaps=0)
        second = log.begin_contact(130.0)
    with PassLog(tmp_path / PASS_LOG_FILE) as log:
        a, b = log.contacts()
        assert log.contacts(1) == [b]
    assert (first, second) == (1, 2)
    assert (a.results, a.result_octets, a.commands_sent, a.packets) == (2, 300, 12, 90)
    assert a.duration_s == 3.5 and a.open_gaps == 0
    assert b.los is None and b.duration_s is None and b.open_gaps is None


def test_the_ledger_wants_a_succeeded_jobs_result_until_it_is_fetched(tmp_path: Path) -> None:
    with PassLog(tmp_path / PASS_LOG_FILE) as log:
        log.note_job(1, "RUNNING", final=False)
        log.note_job(2, "FAILED", final=True, finished=50.0)
        log.note_job(3, "SUCCEEDED", final=True, finished=60.0)
        assert [r.job_id for r in log.wanted()] == [3]
        assert log.unsettled() == [1] and log.highest_job() == 3
        log.note_job(1, "SUCCEEDED", final=True, finished=70.0)
        log.note_run(1, "cnn-a", 1, "image-00.npy")
        log.note_result(1, "job-1.npy", 168, "ab" * 32)
        log.fetched(1, tmp_path / "job-1.npy", at=80.0, contact=4)
        log.fetch_failed(3, "FILE_DOWNLOAD failed: NO_SUCH_FILE")
        # Heard of again (a later job list): what was fetched stays.
        log.note_job(1, "SUCCEEDED", final=True)
    with PassLog(tmp_path / PASS_LOG_FILE) as log:
        one, three = log.job(1), log.job(3)
        assert log.job(9) is None
        assert [r.job_id for r in log.wanted()] == [3]
    assert one is not None and three is not None
    assert (one.path, one.contact, one.finished, one.size) == (
        str(tmp_path / "job-1.npy"),
        4,
        70.0,
        168,
    )
    assert (one.model, one.version, one.input) == ("cnn-a", 1, "image-00.npy")
    assert not one.wanted and three.wanted
    assert three.failures == 1 and three.last_error == "FILE_DOWNLOAD failed: NO_SUCH_FILE"
