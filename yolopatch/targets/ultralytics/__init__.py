"""ultralytics: see target.py."""
