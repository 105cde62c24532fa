"""The shipped training configs (YAML), installed with the package so that the Python API finds
`configs/<name>.yaml` from any working directory."""
