"""depthlens.evaluate."""
