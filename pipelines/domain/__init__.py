"""The domain layer (pipelines/__init__.py; docs/DESIGN.md, "Layers")."""
