"""Fixtures for track tests (shared with tests/artifacts)."""
from tests._shared.artifact_fixtures import (  # noqa: F401 - fixtures
    _fresh_process_defaults,
    data_dir,
    moto_endpoint,
    s3_registry_url,
)
