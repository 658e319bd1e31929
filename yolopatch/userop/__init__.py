"""Users' own modules: read (source), roles, learned (learn), recorded (record), adapted (adapter)."""
