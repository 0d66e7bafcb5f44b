"""The enastool command-line application (installed as the package enastool_cli)."""
