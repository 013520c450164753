"""The outputs layer (pipelines/__init__.py; docs/DESIGN.md, "Layers")."""
