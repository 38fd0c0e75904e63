"""What runs where the compute is: a job's input checked, its model's runs with their redundancy,
and the checks of the model before its result is accepted. The payload process hands jobs over
and records what comes back; this side never touches the job store or the link."""
