"""The built-in synthetic case end to end (``seedbrachy demo``, ``make demo``) and its Slicer scene.

Production code never imports this package (a test checks it).
"""
