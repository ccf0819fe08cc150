"""Fixtures of the launch tests: the real engines (tests/_shared/engines.py)."""
from tests._shared.engines import (  # noqa: F401 - fixtures
    docker_engine,
    docker_image,
    slurm_cluster,
    sshd_localhost,
)
