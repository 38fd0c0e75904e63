"""Orbit-aware planning of jobs: when to release each on board so that its result is on the
ground by its deadline, by the power and thermal limits and the passes (planner.py), and the
simulated day that predicts a plan and judges the naive one by the same model (evaluate.py).
Pure: no I/O, no clock. Only orbit_windows.py asks the orbit package for passes and eclipses;
the rest works on plain intervals (orbit.Interval), so that a test can give it any sky.
docs/planning.md.

For a simulated-day comparison:

    windows = orbit_windows(tle, station, start, start + 86400)      # or windows_of(timeline, ...)
    comparison = compare(jobs, windows, PowerModel(...), ThermalLimit(...), LinkModel(...),
                         PlanSettings(start, time_scale=k))
    comparison.plan.releases        # what to schedule on board (orbit time; bench: OrbitClock)
    comparison.planned, comparison.naive    # Evaluation: by_deadline, min_soc_pct, ...
"""
