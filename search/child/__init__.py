"""The trial's child process: the only code of memfront that imports torch or a YOLO package.

:mod:`search.child.trainer` is started by the supervisor as ``python -m search.child.trainer``, never
imported by the search's side; it runs the framework's child module (:mod:`search.child.yolov5_train`,
:mod:`search.child.ultralytics_train`). Each framework's adaptations live in one module
(:mod:`search.child.compat` for yolov5, with the environment every child gets;
:mod:`search.child.ultralytics_compat`). This package's ``__init__`` stays empty: what the child
imports is counted in every trial's memory.
"""
