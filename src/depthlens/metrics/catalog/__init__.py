"""The metric records, one module per family (see :mod:`depthlens.metrics.registry`)."""
