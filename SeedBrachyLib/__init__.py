"""SeedBrachyLib: the engine of the SeedBrachy 3D Slicer extension (I-125 seed brachytherapy).

A plain Python package: TG-43U1 dose, structures and DVH, planning, post-implant
verification. It never imports ``slicer`` except in the MRML bridge.
Research use only: not for clinical decisions.
"""

__version__ = "0.1.0"

RESEARCH_NOTICE = "SeedBrachy is a research tool: not for clinical use."
