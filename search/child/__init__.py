"""The trial's child process: the only code of memfront that imports torch and yolov5.

:mod:`search.child.trainer` is started by the supervisor as ``python -m search.child.trainer``, never
imported by the search's side; :mod:`search.child.compat` holds every adaptation of yolov5 7.0.14 to
today's stack (the supervisor imports it for the child's environment only). This package's
``__init__`` stays empty: what the child imports is counted in every trial's memory.
"""
