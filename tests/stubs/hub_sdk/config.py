"""The two addresses ultralytics 8.1 reads from hub_sdk.config; never contacted in tests."""

HUB_API_ROOT = "https://api.ultralytics.com"
HUB_WEB_ROOT = "https://hub.ultralytics.com"
