"""Running stages: lifecycle (claim, lease, finish), runners, orchestration, executors."""
