"""The init workflow: phases, the init rollout, join, delivery, rolling a master, guards, locks."""
