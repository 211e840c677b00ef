"""depthlens.causal."""
