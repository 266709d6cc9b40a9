"""Everything Qt: the window process. Nothing outside hmi/ui imports PySide6, pyqtgraph or vtk."""
