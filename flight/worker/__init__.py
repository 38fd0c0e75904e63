"""Supervised worker processes: what computes runs apart from the process that owns the link.

The payload's `Supervisor` (supervisor.py) starts a worker (`python -m flight.worker`), calls it
and restarts it when it crashes, hangs, runs out of memory or overruns a call. The worker
(serve.py) serves requests with a handler table its factory builds; it knows nothing of jobs or
onnxruntime, and the supervisor nothing of what the requests mean.

    protocol.py    the messages, lanes          connection.py  the authenticated socket
    serve.py       the worker's serving loop    supervisor.py  the payload's side
    config.py      how a worker is started      calls.py       the calls pending, by lane
    events.py      starts, losses, counters
    limits.py      memory, cores, nice          losses.py      why a worker was lost
    backoff.py     when to start again          errors.py      what a caller is told
"""
