"""The durable job store: inference jobs and their states in one SQLite file.

Every state change is committed with a full sync before the method returns, so whatever the
caller reports to the ground survives `kill -9` and power loss (WAL mode, `synchronous=FULL`).

Protection against upsets (UpsetLocation.JOB_STORE):
- Every record carries a CRC-32 over all its fields and a second copy of them (`copy`, the
  fields' canonical JSON, which the CRC also covers). Each read checks them: when two of the
  three parts (fields, copy, CRC) agree the third is repaired (corrected); otherwise the record
  is set aside in table `damaged_jobs`, reported uncorrectable once, and `RecordCorrupt` raised
  for that job from then on (failure JOB_RECORD_CORRUPT). Listing and counting skip it.
- At open, and at each `verify()`, SQLite's integrity check runs and every record is read.
  Damage is mended in place when it can be (records restored, indexes rebuilt); otherwise the
  file is rebuilt from every record that can still be read, the damaged file kept beside it
  (`jobs.sqlite3.damaged-<n>`) for the ground. The same happens when an operation meets
  corruption; that operation fails with `StoreCorrupt`, the next ones work.

Losses: each record counts the losses of its compute that the job may have caused (its worker
lost under it, or the payload process dead while it ran: `count_loss`, `recover`); at a limit
the job fails, so that a poison job cannot loop across restarts of the payload.

Fault injection: `record_sites(job_id)` and `corrupt_record(site, mutate)` change one stored
field of a record without its checksums; damage to the file itself (pages) is injected by
writing the file, and found by the next `verify()` (which reads it from disk) or open.

The modules, each built on those before it:
- job: the Job, its states and the limits of its fields; errors: the store's errors
- record: a record's fields, their canonical form, the vote of fields, copy and CRC
- sqlite_file: the store's files, connections, SQLite's integrity check, corruption
- schema: tables, indexes, the SQL of records, schema versions and their migration
- salvage: reading what a damaged file still holds
- record_access: the connection, its lock and transactions, checked record reads and writes
- mending: checks of the whole store, records repaired, indexes or the file rebuilt
- job_store: JobStore, the API the payload uses
"""

from flight.jobs.store.errors import (
    InvalidTransition,
    JobStoreError,
    RecordCorrupt,
    StoreCorrupt,
    UnknownJob,
)
from flight.jobs.store.job import (
    ACTIVE_STATES,
    FINAL_STATES,
    MAX_JOB_ID,
    MAX_PRIORITY,
    SHA256_LEN,
    Job,
    JobState,
)
from flight.jobs.store.job_store import PAYLOAD_LOST, JobStore, LossLimit
from flight.jobs.store.mending import SWEEP_BATCH, StoreCheck
from flight.jobs.store.record import (
    FAULT_COLUMNS,
    RecordSite,
    Verdict,
    check_record,
    decode_fields,
    encode_fields,
)
from flight.jobs.store.salvage import SALVAGE_PROBES
from flight.jobs.store.schema import NEXT_RUNNABLE_SQL as _NEXT_RUNNABLE_SQL
from flight.jobs.store.schema import SCHEMA_VERSION
from flight.jobs.store.sqlite_file import (
    DAMAGED_SUFFIX,
    JOBS_DB_FILE,
    REBUILD_SUFFIX,
    SALVAGE_SUFFIX,
)

__all__ = [
    "ACTIVE_STATES",
    "DAMAGED_SUFFIX",
    "FAULT_COLUMNS",
    "FINAL_STATES",
    "JOBS_DB_FILE",
    "MAX_JOB_ID",
    "MAX_PRIORITY",
    "PAYLOAD_LOST",
    "REBUILD_SUFFIX",
    "SALVAGE_PROBES",
    "SALVAGE_SUFFIX",
    "SCHEMA_VERSION",
    "SHA256_LEN",
    "SWEEP_BATCH",
    "_NEXT_RUNNABLE_SQL",
    "InvalidTransition",
    "Job",
    "JobState",
    "JobStore",
    "JobStoreError",
    "LossLimit",
    "RecordCorrupt",
    "RecordSite",
    "StoreCheck",
    "StoreCorrupt",
    "UnknownJob",
    "Verdict",
    "check_record",
    "decode_fields",
    "encode_fields",
]
