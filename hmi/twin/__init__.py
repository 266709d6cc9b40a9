"""Digital-twin models on the tag bus: derived tags, residuals, diagnoses and advisories (docs/twin.md)."""
