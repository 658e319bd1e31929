"""The built-in builder and measurement: told what to build, they never look a target up themselves."""
