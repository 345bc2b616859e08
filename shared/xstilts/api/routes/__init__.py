"""One router per resource: experiments, tasks, health."""
