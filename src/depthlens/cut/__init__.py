"""depthlens.cut."""
