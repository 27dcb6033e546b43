"""Hostile-input and crash audits, run as modules: `python -m physai.audit.inputs` (malformed
observations, tampered checkpoints) and `python -m physai.audit.collect_kills` (SIGKILLs of
`physai collect`, each followed by a plain-LeRobot read)."""
