"""OpenFlow: the pipeline (pure data) and the os-ken L2-learning app."""
