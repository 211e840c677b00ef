"""depthlens.cli."""
