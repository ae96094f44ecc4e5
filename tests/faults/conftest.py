from tests.integration.platform.conftest import clock, db_url, store  # noqa: F401
