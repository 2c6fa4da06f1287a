"""`superscalar bench`: measured numbers as JSON, never timed tests."""
