"""A stand-in for hub_sdk, for tests only: ultralytics 8.1 imports hub_sdk.config at module level."""
