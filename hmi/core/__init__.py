"""The domain core: tags, samples, quality, the tag bus and ring buffers.

Pure Python and numpy. Imports nothing else of ours and no Qt, so every other part
(and every test) can use it headless.
"""
