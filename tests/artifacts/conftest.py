"""Fixtures for artifacts tests (shared with tests/track)."""
from tests._shared.artifact_fixtures import (  # noqa: F401 - fixtures
    _fresh_process_defaults,
    data_dir,
    moto_endpoint,
    s3_registry_url,
)
