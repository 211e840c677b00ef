"""depthlens.arch."""
