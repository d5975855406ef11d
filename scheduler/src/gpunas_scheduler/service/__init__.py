"""Use cases of the scheduler: they depend on the domain and on the ports in ``ports``."""
