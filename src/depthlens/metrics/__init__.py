"""depthlens.metrics."""
