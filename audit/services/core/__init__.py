"""What every analysis stands on: one tracked run and one result key (``runs``), the cache of loaded model
versions (``handles``), predictions (``predict``), reference datasets (``datasets``) and the model registry."""
