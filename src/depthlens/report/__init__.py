"""depthlens.report."""
