"""Running stages: lifecycle (claim, lease, finish), runners, the scheduler, executors."""
